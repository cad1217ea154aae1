//! State sync between carpd peers (the pfsync role): conntrack entries
//! replicated over an authenticated protocol on the sync link.

pub mod conntrack;
pub mod flow;

pub use flow::{Flow, FlowKey, L4, TcpInfo, Tuple};
