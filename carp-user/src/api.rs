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
}

/// carpd's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(Status),
    Error { message: String },
}

/// Everything `carpctl status` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub interfaces: Vec<InterfaceStatus>,
    /// Drops the XDP program could not tie to a configured vhid, per carpdev.
    #[serde(default)]
    pub carpdevs: Vec<CarpdevStatus>,
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
                counters: Counters {
                    adverts_sent: 5,
                    drops,
                    ..Counters::default()
                },
            }],
            carpdevs: vec![],
        };
        let text = serde_json::to_string(&Response::Status(status.clone())).unwrap_or_default();
        let back: Response = serde_json::from_str(&text).unwrap_or(Response::Error {
            message: text.clone(),
        });
        assert_eq!(back, Response::Status(status));
    }
}
