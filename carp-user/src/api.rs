//! The control socket: newline-delimited JSON requests and responses between
//! `carpctl` and `carpd` over a Unix socket. The status model here is also
//! what `/metrics` renders, so both views always agree.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest request or response line accepted, so a client cannot make either
/// side buffer without bound.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// A request from carpctl.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    /// Groups, counters and contributions (`carpctl group`).
    Groups,
    /// Moves a group's admin contribution: `by` > 0 demotes, < 0 promotes.
    Demote {
        group: String,
        by: i64,
    },
    /// `carpctl set IFACE advskew N`.
    SetAdvskew {
        interface: String,
        advskew: u8,
    },
    /// `carpctl set IFACE state master|backup`.
    SetState {
        interface: String,
        state: String,
    },
    /// `carpctl down IFACE`: bow out and stay in INIT.
    Down {
        interface: String,
    },
    /// `carpctl up IFACE`: take part in elections again.
    Up {
        interface: String,
    },
    /// `carpctl detach`: exit without a transition, leaving the pinned
    /// dataplane to the next carpd (a hitless restart).
    Detach,
}

/// carpd's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(Status),
    Groups {
        groups: Vec<GroupStatus>,
    },
    /// A change was made; what it did, for the operator.
    Done {
        message: String,
    },
    Error {
        message: String,
    },
}

/// Everything `carpctl status` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub interfaces: Vec<InterfaceStatus>,
    /// Drops the XDP program could not tie to a configured vhid, per carpdev.
    #[serde(default)]
    pub carpdevs: Vec<CarpdevStatus>,
    #[serde(default)]
    pub groups: Vec<GroupStatus>,
    #[serde(default)]
    pub trackers: Vec<TrackerStatus>,
    #[serde(default)]
    pub hooks: HookCounters,
    #[serde(default)]
    pub boot: BootStatus,
    /// Conntrack state sync, when configured.
    #[serde(default)]
    pub sync: Option<Box<crate::sync::service::SyncStatus>>,
}

/// A group, its counter and who contributes to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    pub name: String,
    pub demote: u32,
    pub contributions: Vec<ContributionStatus>,
    /// The carp interfaces in the group.
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributionStatus {
    pub source: String,
    pub value: u32,
    /// Whole seconds since it last changed.
    pub for_seconds: u64,
}

/// One `[[track]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerStatus {
    pub name: String,
    pub kind: String,
    pub group: String,
    pub demote: u32,
    /// "up", "down" or "unknown" (no verdict yet).
    pub state: String,
    pub checks: u64,
    pub failed_checks: u64,
    /// Latency of the last check, in microseconds.
    pub last_latency_us: u64,
    /// Why the last check failed, if it did.
    pub last_failure: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookCounters {
    pub runs: u64,
    pub failures: u64,
}

/// The boot interlock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootStatus {
    pub ready: bool,
    /// What readiness still waits for, while not ready.
    pub waiting_for: Vec<String>,
}

/// One carp interface (one vhid).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    pub vhid: u8,
    pub carpdev: String,
    /// "INIT", "BACKUP" or "MASTER".
    pub state: String,
    pub advbase: u8,
    pub advskew: u8,
    pub demote: u8,
    pub addresses: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Administratively down (`carpctl down`).
    #[serde(default)]
    pub admin_down: bool,
    pub counters: Counters,
}

/// Per-vhid counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub adverts_received: u64,
    pub adverts_sent: u64,
    pub transitions: u64,
    pub send_errors: u64,
    /// Drops by reason (OpenBSD carpstats names), XDP and agent side together.
    pub drops: BTreeMap<String, u64>,
    /// Frames for the VIPs or the virtual MAC by XDP verdict: owned
    /// (passed), notowned and agentstale (dropped), claim (reported).
    #[serde(default)]
    pub frames: BTreeMap<String, u64>,
    /// Times another MAC than the virtual one claimed a VIP while we owned it.
    #[serde(default)]
    pub vip_conflicts: u64,
    /// The last such claim, e.g. "192.0.2.1 claimed by 02:00:00:00:00:66".
    #[serde(default)]
    pub last_conflict: Option<String>,
}

/// A carpdev and the drops on it that belong to no configured vhid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarpdevStatus {
    pub name: String,
    pub drops: BTreeMap<String, u64>,
}

/// Errors of a control-socket call, as carpctl shows them.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot connect to {path}: {source} (is carpd running?)")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: carpd closed the connection without an answer")]
    NoAnswer { path: String },
    #[error("{path}: unreadable answer from carpd: {source}")]
    Decode {
        path: String,
        source: serde_json::Error,
    },
}

/// One blocking request/response round trip (for carpctl).
pub fn call(path: &Path, request: &Request, timeout: Duration) -> Result<Response, CallError> {
    let shown = path.display().to_string();
    let io = |source| CallError::Io {
        path: shown.clone(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(|source| CallError::Connect {
        path: shown.clone(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(request).map_err(|source| CallError::Decode {
        path: shown.clone(),
        source,
    })?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut reader = BufReader::new(stream.take_limit());
    let mut answer = String::new();
    reader.read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
        return Err(CallError::NoAnswer { path: shown });
    }
    serde_json::from_str(&answer).map_err(|source| CallError::Decode {
        path: shown,
        source,
    })
}

trait TakeLimit: Sized + std::io::Read {
    fn take_limit(self) -> std::io::Take<Self> {
        self.take(MAX_LINE_BYTES as u64)
    }
}
impl TakeLimit for UnixStream {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_form_is_stable() {
        assert_eq!(
            serde_json::to_string(&Request::Status).ok().as_deref(),
            Some(r#"{"cmd":"status"}"#)
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
        let demote = Request::Demote {
            group: "carp".into(),
            by: -50,
        };
        assert_eq!(
            serde_json::to_string(&demote).ok().as_deref(),
            Some(r#"{"cmd":"demote","group":"carp","by":-50}"#)
        );
        assert_eq!(
            serde_json::from_str::<Request>(
                r#"{"cmd":"set_advskew","interface":"carp0","advskew":100}"#
            )
            .ok(),
            Some(Request::SetAdvskew {
                interface: "carp0".into(),
                advskew: 100
            })
        );
        assert!(
            serde_json::from_str::<Request>(
                r#"{"cmd":"set_advskew","interface":"carp0","advskew":300}"#
            )
            .is_err(),
            "advskew is a byte"
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"down"}"#).is_err());
    }

    #[test]
    fn status_round_trips_through_json() {
        let mut drops = BTreeMap::new();
        drops.insert("badauth".to_owned(), 2);
        let status = Status {
            interfaces: vec![InterfaceStatus {
                name: "carp0".into(),
                vhid: 1,
                carpdev: "eth0".into(),
                state: "MASTER".into(),
                advbase: 1,
                advskew: 0,
                demote: 0,
                addresses: vec!["192.0.2.1/24".into()],
                groups: vec!["carp".into()],
                admin_down: false,
                counters: Counters {
                    adverts_sent: 5,
                    drops,
                    ..Counters::default()
                },
            }],
            ..Status::default()
        };
        let text = serde_json::to_string(&Response::Status(status.clone())).unwrap_or_default();
        let back: Response = serde_json::from_str(&text).unwrap_or(Response::Error {
            message: text.clone(),
        });
        assert_eq!(back, Response::Status(status));
    }
}
