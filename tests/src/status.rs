//! What `carpctl status --json` says, read leniently: only the fields the
//! tests and the lab look at are required, so carpd can add fields freely.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Status {
    pub interfaces: Vec<InterfaceStatus>,
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
    fn a_missing_state_is_an_error() {
        assert!(Status::parse(r#"{"interfaces":[{"name":"carp0","vhid":1}]}"#).is_err());
    }

    #[test]
    fn states_pad_for_tables() {
        assert_eq!(format!("{:<7}|", CarpState::Init), "INIT   |");
        assert_eq!(format!("{:<7}|", CarpState::Master), "MASTER |");
    }
}
