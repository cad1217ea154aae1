//! State sync between carpd peers (the pfsync role): conntrack entries
//! replicated over an authenticated protocol on the sync link.

pub mod bulk;
pub mod conntrack;
pub mod flow;
pub mod freshness;
pub mod service;
pub mod wire;

pub use flow::{Flow, FlowKey, L4, TcpInfo, Tuple};
