//! carpd's configuration: TOML, validated into types the agent can trust.
//! Every error names the file, the table and the key, and says why.

mod balancing;
mod raw;
mod sync;
mod track;
mod validate;

pub use balancing::{BalanceMode, Balancing, Node};
pub use sync::{DEFAULT_SYNC_PORT, SyncConfig};

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

pub const DEFAULT_CONTROL_SOCKET: &str = "/run/carpd.sock";
/// Where the XDP program's links and maps are pinned (one directory per
/// carpd on the host), so the dataplane outlives the agent.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/carpd";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub preempt: bool,
    pub control_socket: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
    /// bpffs directory of the pinned dataplane (`DEFAULT_PIN_DIR`).
    pub pin_dir: PathBuf,
    pub carp: Vec<CarpConfig>,
    /// The boot interlock holds `carp` demoted until the node is ready, but
    /// never longer than this.
    pub boot_timeout: Duration,
    pub hooks: HooksConfig,
    pub track: Vec<TrackConfig>,
    /// `[sync]`: conntrack state sync with the peer, if configured.
    pub sync: Option<SyncConfig>,
    /// Where it came from, for messages.
    pub path: PathBuf,
}

/// One `[[carp]]` table: a carp interface with one vhid.
#[derive(Debug, Clone)]
pub struct CarpConfig {
    pub name: String,
    pub carpdev: String,
    pub vhid: u8,
    pub pass: Passphrase,
    pub advbase: u8,
    pub advskew: u8,
    pub addresses: Vec<IpNet>,
    /// `carp` first, then the configured groups.
    pub groups: Vec<String>,
    pub peer: Option<IpAddr>,
    /// Also fold the demote sum into the advertised advskew (clamped to
    /// 240): FreeBSD and pfSense never read the demote byte.
    pub freebsd_compat: bool,
    /// Several vhids sharing the addresses (carpnodes); `vhid` and
    /// `advskew` are then the first node's.
    pub balancing: Option<Balancing>,
}

impl CarpConfig {
    /// Every vhid this interface runs an election for, with its advskew.
    pub fn nodes(&self) -> Vec<Node> {
        match &self.balancing {
            Some(balancing) => balancing.nodes.clone(),
            None => vec![Node {
                vhid: self.vhid,
                advskew: self.advskew,
            }],
        }
    }
}

/// Commands run through `sh -c` on events, never waited for by the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HooksConfig {
    /// On every state transition of a carp interface.
    pub transition: Option<String>,
    /// On every change of a group's demote counter.
    pub demote: Option<String>,
    /// When another MAC than the virtual one claims a VIP we own.
    pub conflict: Option<String>,
    /// A hook still running after this is killed.
    pub timeout: Duration,
}

/// One `[[track]]` table: a connectivity check that demotes `group` by
/// `demote` while it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackConfig {
    pub name: String,
    pub kind: TrackKind,
    pub interval: Duration,
    /// A check not done within this is a failed check.
    pub timeout: Duration,
    /// Consecutive good checks that make a failing tracker good.
    pub rise: u32,
    /// Consecutive failed checks that make a good tracker fail.
    pub fall: u32,
    pub group: String,
    pub demote: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackKind {
    /// Carrier of an interface.
    Link { interface: String },
    /// ICMP echo to `target`, out of `interface` when given.
    Ping {
        target: IpAddr,
        interface: Option<String>,
    },
    /// Every carp interface of the tracker's group in the same role.
    Coherence,
    /// `command` through `sh -c`; exit status 0 is good.
    Exec { command: String },
}

impl TrackKind {
    pub const fn name(&self) -> &'static str {
        match self {
            TrackKind::Link { .. } => "link",
            TrackKind::Ping { .. } => "ping",
            TrackKind::Coherence => "coherence",
            TrackKind::Exec { .. } => "exec",
        }
    }
}

/// The shared secret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(Vec<u8>);

impl Passphrase {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A configuration error; its Display is the whole one-line message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: {location}: {message}")]
    Invalid {
        path: String,
        location: String,
        message: String,
    },
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, path)
}

/// Validates `text`; `path` is used in messages and to resolve relative `pass_file`s.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = toml::from_str(text).map_err(|error| ConfigError::Syntax {
        path: path.display().to_string(),
        message: error.to_string().trim_end().replace('\n', " "),
    })?;
    validate::validate(raw, path)
}

#[cfg(test)]
mod tests;
