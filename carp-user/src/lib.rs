//! carpd: CARP (Common Address Redundancy Protocol) for Linux gateways.
//!
//! Pure protocol logic (`wire`, `fsm`, `groups`) does no I/O and takes time as
//! an argument; `daemon` wires it to tokio, the XDP `dataplane` and the `net`
//! side effects.

pub mod api;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod fsm;
pub mod groups;
pub mod hooks;
pub mod metrics;
pub mod net;
pub mod sync;
pub mod track;
pub mod wire;
