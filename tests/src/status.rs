//! What `carpctl status --json` says, read leniently: only the fields the
//! tests and the lab look at are required, so carpd can add fields freely.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Status {
    pub interfaces: Vec<InterfaceStatus>,
    /// Interface groups and their demote counters.
    #[serde(default)]
    pub groups: Vec<GroupStatus>,
    /// The `[[track]]` connectivity checks.
    #[serde(default)]
    pub trackers: Vec<TrackerStatus>,
    #[serde(default)]
    pub hooks: HookCounters,
    /// The boot interlock; absent (an older carpd) reads as not ready.
    #[serde(default)]
    pub boot: BootStatus,
    /// State sync, when configured.
    #[serde(default)]
    pub sync: Option<Box<carp::sync::service::SyncStatus>>,
}

/// A group, its demote counter and who contributes to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GroupStatus {
    pub name: String,
    pub demote: u32,
    #[serde(default)]
    pub contributions: Vec<Contribution>,
    /// The carp interfaces in the group.
    #[serde(default)]
    pub members: Vec<String>,
}

/// One source's share of a group's counter: "admin", "boot",
/// "carp0:carpdev", "carp0:send-errors", "track:<name>".
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Contribution {
    pub source: String,
    pub value: u32,
    #[serde(default)]
    pub for_seconds: u64,
}

/// One tracker and what it has seen.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TrackerStatus {
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub demote: u32,
    pub state: TrackerState,
    #[serde(default)]
    pub checks: u64,
    #[serde(default)]
    pub failed_checks: u64,
    #[serde(default)]
    pub last_failure: Option<String>,
}

/// A tracker's verdict; a state this kit does not know is kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum TrackerState {
    Up,
    Down,
    /// No verdict yet.
    Unknown,
    Other(String),
}

impl From<String> for TrackerState {
    fn from(state: String) -> Self {
        match state.as_str() {
            "up" => Self::Up,
            "down" => Self::Down,
            "unknown" => Self::Unknown,
            _ => Self::Other(state),
        }
    }
}

impl fmt::Display for TrackerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Unknown => "unknown",
            Self::Other(state) => state,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct HookCounters {
    #[serde(default)]
    pub runs: u64,
    #[serde(default)]
    pub failures: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct BootStatus {
    #[serde(default)]
    pub ready: bool,
    /// What readiness still waits for ("tracker <name>"), while not ready.
    #[serde(default)]
    pub waiting_for: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    pub vhid: u8,
    pub state: CarpState,
    #[serde(default)]
    pub carpdev: String,
    #[serde(default)]
    pub advbase: u8,
    #[serde(default)]
    pub advskew: u8,
    #[serde(default)]
    pub demote: u8,
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Its interface groups, `carp` included.
    #[serde(default)]
    pub groups: Vec<String>,
    /// `carpctl down`: out of elections until `carpctl up`.
    #[serde(default)]
    pub admin_down: bool,
    #[serde(default)]
    pub counters: Counters,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Counters {
    #[serde(default)]
    pub adverts_received: u64,
    #[serde(default)]
    pub adverts_sent: u64,
    #[serde(default)]
    pub transitions: u64,
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
}

/// carp(4)'s states. A state this kit does not know is kept verbatim rather
/// than failing the parse.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(from = "String")]
pub enum CarpState {
    Init,
    Backup,
    Master,
    Other(String),
}

impl From<String> for CarpState {
    fn from(state: String) -> Self {
        match state.as_str() {
            "INIT" => Self::Init,
            "BACKUP" => Self::Backup,
            "MASTER" => Self::Master,
            _ => Self::Other(state),
        }
    }
}

impl fmt::Display for CarpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Init => "INIT",
            Self::Backup => "BACKUP",
            Self::Master => "MASTER",
            Self::Other(state) => state,
        };
        // `pad` so tables can align states with `{:<7}`.
        f.pad(name)
    }
}

impl Status {
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    pub fn interface(&self, name: &str) -> Option<&InterfaceStatus> {
        self.interfaces.iter().find(|iface| iface.name == name)
    }

    pub fn by_vhid(&self, vhid: u8) -> Option<&InterfaceStatus> {
        self.interfaces.iter().find(|iface| iface.vhid == vhid)
    }

    pub fn group(&self, name: &str) -> Option<&GroupStatus> {
        self.groups.iter().find(|group| group.name == name)
    }

    /// Group `name`'s demote counter; 0 for a group carpd does not list.
    pub fn demote_of(&self, name: &str) -> u32 {
        self.group(name).map_or(0, |group| group.demote)
    }

    pub fn tracker(&self, name: &str) -> Option<&TrackerStatus> {
        self.trackers.iter().find(|tracker| tracker.name == name)
    }
}

impl GroupStatus {
    /// What `source` adds to the counter (0 when it adds nothing: carpd
    /// lists only contributions above zero).
    pub fn contribution(&self, source: &str) -> u32 {
        self.contributions
            .iter()
            .find(|c| c.source == source)
            .map_or(0, |c| c.value)
    }

    /// `source +value` of every contribution, for messages.
    pub fn describe(&self) -> String {
        let sources: Vec<String> = self
            .contributions
            .iter()
            .map(|c| format!("{} +{}", c.source, c.value))
            .collect();
        format!(
            "{}: demote {} ({})",
            self.name,
            self.demote,
            sources.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract example from the carpctl brief.
    const CONTRACT: &str = r#"{"interfaces":[{"name":"carp0","vhid":1,"carpdev":"eth-out","state":"MASTER","advbase":1,"advskew":0,"demote":0,"addresses":["10.0.1.1/24"],"counters":{"adverts_received":3,"adverts_sent":5,"transitions":1,"drops":{"badauth":0,"loop":0}}}]}"#;

    #[test]
    fn parses_the_contract_example() -> anyhow::Result<()> {
        let status = Status::parse(CONTRACT)?;
        let carp0 = status.interface("carp0").expect("carp0 is in the example");
        assert_eq!(carp0.vhid, 1);
        assert_eq!(carp0.state, CarpState::Master);
        assert_eq!(carp0.carpdev, "eth-out");
        assert_eq!(carp0.addresses, ["10.0.1.1/24"]);
        assert_eq!(carp0.counters.adverts_sent, 5);
        assert_eq!(carp0.counters.drops.get("badauth"), Some(&0));
        assert_eq!(status.by_vhid(1), Some(carp0));
        assert_eq!(status.by_vhid(2), None);
        Ok(())
    }

    #[test]
    fn unknown_fields_and_states_are_tolerated() -> anyhow::Result<()> {
        let status = Status::parse(
            r#"{"interfaces":[{"name":"carp1","vhid":2,"state":"DISABLED","new_field":true}],"carpdevs":[]}"#,
        )?;
        assert_eq!(
            status.interfaces[0].state,
            CarpState::Other("DISABLED".into())
        );
        assert_eq!(status.interfaces[0].state.to_string(), "DISABLED");
        Ok(())
    }

    #[test]
    fn reads_groups_trackers_and_the_boot_interlock() -> anyhow::Result<()> {
        let status = Status::parse(
            r#"{"interfaces":[{"name":"carp0","vhid":1,"state":"INIT","groups":["carp","outside"],"admin_down":true}],
                "groups":[{"name":"carp","demote":129,"contributions":[{"source":"boot","value":128,"for_seconds":2},{"source":"carp0:carpdev","value":1,"for_seconds":0}],"members":["carp0"]}],
                "trackers":[{"name":"uplink","kind":"ping","group":"carp","demote":50,"state":"unknown","checks":0,"failed_checks":0,"last_latency_us":0,"last_failure":null}],
                "hooks":{"runs":3,"failures":1},
                "boot":{"ready":false,"waiting_for":["tracker uplink"]}}"#,
        )?;
        let carp0 = status.interface("carp0").expect("carp0 is listed");
        assert!(carp0.admin_down);
        assert_eq!(carp0.groups, ["carp", "outside"]);
        let carp = status.group("carp").expect("carp is listed");
        assert_eq!(status.demote_of("carp"), 129);
        assert_eq!(status.demote_of("outside"), 0);
        assert_eq!(carp.contribution("boot"), 128);
        assert_eq!(carp.contribution("admin"), 0);
        assert_eq!(
            carp.describe(),
            "carp: demote 129 (boot +128, carp0:carpdev +1)"
        );
        let uplink = status.tracker("uplink").expect("uplink is listed");
        assert_eq!(uplink.state, TrackerState::Unknown);
        assert_eq!(uplink.demote, 50);
        assert_eq!(status.hooks.failures, 1);
        assert!(!status.boot.ready);
        assert_eq!(status.boot.waiting_for, ["tracker uplink"]);
        Ok(())
    }

    #[test]
    fn a_missing_state_is_an_error() {
        assert!(Status::parse(r#"{"interfaces":[{"name":"carp0","vhid":1}]}"#).is_err());
    }

    #[test]
    fn states_pad_for_tables() {
        assert_eq!(format!("{:<7}|", CarpState::Init), "INIT   |");
        assert_eq!(format!("{:<7}|", CarpState::Master), "MASTER |");
    }
}
