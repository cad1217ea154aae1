//! Trackers (OpenBSD's ifstated for carpd): connectivity checks whose verdict
//! demotes an interface group while they fail, so a master that lost its
//! uplink without losing carrier gives the whole group away (field story 3).
//!
//! This module runs the checks and reports every result; the agent owns the
//! verdicts ([`Hysteresis`]) and the group demote counters, and evaluates
//! coherence trackers itself with [`Roles`], since it knows every role.

mod coherence;
pub(crate) mod exec;
mod icmp;
mod link;
mod ping;
mod runner;
mod state;

pub use coherence::{Roles, is_coherent};
pub use runner::{CheckResult, Trackers, spawn};
pub use state::Hysteresis;

/// The result of one check before the runner stamps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    ok: bool,
    /// A short reason for the log.
    detail: String,
}

impl Outcome {
    fn good(detail: String) -> Self {
        Self { ok: true, detail }
    }

    fn bad(detail: String) -> Self {
        Self { ok: false, detail }
    }
}
