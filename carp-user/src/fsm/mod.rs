//! The CARP election for one vhid: INIT / BACKUP / MASTER with OpenBSD's
//! rules (demote first, then the advertisement interval). Pure: time comes in
//! as an argument and decisions come out as an [`Output`] the caller carries out.

mod interval;
mod machine;

pub use interval::Interval;
pub use machine::{AdvertToSend, Config, Ignored, Machine, Output, PeerAdvert, State, Transition};

#[cfg(test)]
mod tests;
