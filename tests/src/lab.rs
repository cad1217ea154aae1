//! The lab: a gateway pair between a client and a server, the topology of
//! `cargo xtask lab` and of the namespace scenarios.
//!
//! ```text
//!   client 10.0.1.100 ── outside ──┬── gw1 eth-out 10.0.1.2 ─┐    VIP 10.0.1.1, fd00:1::1 (vhid 1)
//!                                  └── gw2 eth-out 10.0.1.3 ─┤
//!                     sync (10.0.3.0/24) ── eth-sync of both ─┤
//!   server 10.0.2.100 ── inside ───┬── gw1 eth-in  10.0.2.2 ─┤    VIP 10.0.2.1 (vhid 2)
//!                                  └── gw2 eth-in  10.0.2.3 ─┘
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::carpd::Carpd;
use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::status::{CarpState, Status};
use crate::topology::{NodeSpec, Topology, TopologySpec};

pub const LAB_BRIDGES: [&str; 3] = ["outside", "inside", "sync"];

/// Shared by both gateways' configs.
const PASS: &str = "lab-secret";
const METRICS_PORT: u16 = 9117;

/// One gateway of the pair and its addresses (with prefix length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gateway {
    pub name: &'static str,
    pub outside: &'static str,
    pub outside6: &'static str,
    pub inside: &'static str,
    pub sync: &'static str,
    /// gw1 wins elections: its advskew is lower.
    pub advskew: u8,
}

pub const GATEWAYS: [Gateway; 2] = [
    Gateway {
        name: "gw1",
        outside: "10.0.1.2/24",
        outside6: "fd00:1::2/64",
        inside: "10.0.2.2/24",
        sync: "10.0.3.2/24",
        advskew: 0,
    },
    Gateway {
        name: "gw2",
        outside: "10.0.1.3/24",
        outside6: "fd00:1::3/64",
        inside: "10.0.2.3/24",
        sync: "10.0.3.3/24",
        advskew: 100,
    },
];

/// One carp interface, configured alike on both gateways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VhidSpec {
    pub name: &'static str,
    pub carpdev: &'static str,
    pub vhid: u8,
    pub addresses: &'static [&'static str],
}

pub const VHIDS: [VhidSpec; 2] = [
    VhidSpec {
        name: "carp0",
        carpdev: "eth-out",
        vhid: 1,
        addresses: &["10.0.1.1/24", "fd00:1::1/64"],
    },
    VhidSpec {
        name: "carp1",
        carpdev: "eth-in",
        vhid: 2,
        addresses: &["10.0.2.1/24"],
    },
];

/// An end host behind a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabHost {
    pub name: &'static str,
    pub ifname: &'static str,
    pub bridge: &'static str,
    pub address: &'static str,
    /// Its default gateway: a VIP.
    pub gateway: &'static str,
}

pub const CLIENT: LabHost = LabHost {
    name: "client",
    ifname: "eth0",
    bridge: "outside",
    address: "10.0.1.100/24",
    gateway: "10.0.1.1",
};

pub const SERVER: LabHost = LabHost {
    name: "server",
    ifname: "eth0",
    bridge: "inside",
    address: "10.0.2.100/24",
    gateway: "10.0.2.1",
};

/// The lab's network, ready to build.
#[derive(Debug)]
pub struct Lab {
    topology: Topology,
}

impl Lab {
    pub fn spec() -> TopologySpec {
        let mut spec = TopologySpec::new();
        for bridge in LAB_BRIDGES {
            spec = spec.bridge(bridge);
        }
        for gw in &GATEWAYS {
            spec = spec.node(
                NodeSpec::new(gw.name)
                    .forwarding()
                    .port("eth-out", "outside", &[gw.outside, gw.outside6])
                    .port("eth-in", "inside", &[gw.inside])
                    .port("eth-sync", "sync", &[gw.sync]),
            );
        }
        for host in [CLIENT, SERVER] {
            spec = spec.node(
                NodeSpec::new(host.name)
                    .port(host.ifname, host.bridge, &[host.address])
                    .default_via(host.gateway),
            );
        }
        spec
    }

    /// Builds the lab in namespaces `<prefix>-<pid>-<n>-{sw,gw1,gw2,client,server}`.
    pub fn build(prefix: &str) -> Result<Self> {
        Ok(Self {
            topology: Topology::build(prefix, &Self::spec())?,
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn gateway(&self, name: &str) -> Result<&Netns> {
        if GATEWAYS.iter().any(|gw| gw.name == name) {
            self.topology.node(name)
        } else {
            Err(Error::Topology(format!("no gateway {name}")))
        }
    }

    pub fn client(&self) -> Result<&Netns> {
        self.topology.node(CLIENT.name)
    }

    pub fn server(&self) -> Result<&Netns> {
        self.topology.node(SERVER.name)
    }

    /// Writes `<dir>/<gw>.toml` and starts carpd on `gateway` with its
    /// control socket `<dir>/<gw>.sock` and its log `<dir>/<gw>.log`.
    pub fn start_carpd(&self, gateway: &Gateway, dir: &Path) -> Result<Carpd> {
        let config = dir.join(format!("{}.toml", gateway.name));
        let socket = dir.join(format!("{}.sock", gateway.name));
        let log = dir.join(format!("{}.log", gateway.name));
        fs::write(&config, carpd_config(gateway, &socket)).map_err(|source| Error::Io {
            what: format!("write {}", config.display()),
            source,
        })?;
        Carpd::start(
            self.gateway(gateway.name)?,
            gateway.name,
            &config,
            &socket,
            &log,
        )
    }

    /// carpd on every gateway, in [`GATEWAYS`] order.
    pub fn start_all_carpd(&self, dir: &Path) -> Result<Vec<Carpd>> {
        GATEWAYS
            .iter()
            .map(|gw| self.start_carpd(gw, dir))
            .collect()
    }
}

/// carpd's TOML config for `gateway`: both vhids, preempt on, metrics on
/// the sync address.
pub fn carpd_config(gateway: &Gateway, control_socket: &Path) -> String {
    let sync_ip = gateway.sync.split('/').next().unwrap_or(gateway.sync);
    let vhids: Vec<String> = VHIDS
        .iter()
        .map(|vhid| {
            let addresses: Vec<String> = vhid.addresses.iter().map(|a| toml_string(a)).collect();
            format!(
                "\n[[carp]]\nname = {}\ncarpdev = {}\nvhid = {}\npass = {}\nadvbase = 1\nadvskew = {}\naddresses = [{}]\n",
                toml_string(vhid.name),
                toml_string(vhid.carpdev),
                vhid.vhid,
                toml_string(PASS),
                gateway.advskew,
                addresses.join(", "),
            )
        })
        .collect();
    format!(
        "preempt = true\ncontrol_socket = {}\nmetrics_listen = {}\n{}",
        toml_string(&control_socket.to_string_lossy()),
        toml_string(&format!("{sync_ip}:{METRICS_PORT}")),
        vhids.concat(),
    )
}

/// A TOML basic string. JSON's string escapes are a subset of TOML's, so
/// `serde_json` quotes it correctly.
fn toml_string(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

/// For each lab vhid (and any other a node reports), the nodes that say
/// they are MASTER of it: healthy is exactly one per vhid.
pub fn masters_by_vhid(statuses: &[(&str, &Status)]) -> BTreeMap<u8, Vec<String>> {
    let mut masters: BTreeMap<u8, Vec<String>> =
        VHIDS.iter().map(|v| (v.vhid, Vec::new())).collect();
    for (node, status) in statuses {
        for iface in &status.interfaces {
            let holders = masters.entry(iface.vhid).or_default();
            if iface.state == CarpState::Master {
                holders.push((*node).to_owned());
            }
        }
    }
    masters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_spec_is_valid() -> anyhow::Result<()> {
        let spec = Lab::spec();
        spec.validate()?;
        assert_eq!(spec.nodes.len(), 4);
        assert_eq!(spec.bridges, LAB_BRIDGES);
        Ok(())
    }

    #[test]
    fn config_follows_the_carpd_format() {
        let text = carpd_config(&GATEWAYS[1], Path::new("/tmp/lab/gw2.sock"));
        let expected_start = "preempt = true\ncontrol_socket = \"/tmp/lab/gw2.sock\"\nmetrics_listen = \"10.0.3.3:9117\"\n";
        assert!(text.starts_with(expected_start), "{text}");
        assert!(text.contains(
            "\n[[carp]]\nname = \"carp0\"\ncarpdev = \"eth-out\"\nvhid = 1\npass = \"lab-secret\"\nadvbase = 1\nadvskew = 100\naddresses = [\"10.0.1.1/24\", \"fd00:1::1/64\"]\n"
        ), "{text}");
        assert!(
            text.contains("name = \"carp1\"\ncarpdev = \"eth-in\"\nvhid = 2\n"),
            "{text}"
        );
        assert_eq!(text.matches("[[carp]]").count(), 2);
    }

    #[test]
    fn config_is_well_formed_toml() -> anyhow::Result<()> {
        let text = carpd_config(&GATEWAYS[0], Path::new("/run/carp \"lab\"/gw1.sock"));
        let config: toml::Table = toml::from_str(&text)?;
        assert_eq!(
            config["control_socket"].as_str(),
            Some("/run/carp \"lab\"/gw1.sock")
        );
        let carp = config["carp"]
            .as_array()
            .expect("[[carp]] is an array of tables");
        assert_eq!(carp.len(), 2);
        assert_eq!(carp[0]["advskew"].as_integer(), Some(0));
        assert_eq!(carp[1]["addresses"].as_array().map(Vec::len), Some(1));
        Ok(())
    }

    #[test]
    fn toml_strings_escape_quotes_and_backslashes() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    fn status(states: &[(u8, CarpState)]) -> Status {
        let interfaces: Vec<serde_json::Value> = states
            .iter()
            .map(|(vhid, state)| {
                serde_json::json!({"name": format!("carp{}", vhid - 1), "vhid": vhid, "state": state.to_string()})
            })
            .collect();
        Status::parse(&serde_json::json!({ "interfaces": interfaces }).to_string())
            .expect("test status is well formed")
    }

    #[test]
    fn masters_are_listed_per_vhid() {
        let gw1 = status(&[(1, CarpState::Master), (2, CarpState::Backup)]);
        let gw2 = status(&[(1, CarpState::Master), (2, CarpState::Backup)]);
        let masters = masters_by_vhid(&[("gw1", &gw1), ("gw2", &gw2)]);
        assert_eq!(masters[&1], ["gw1", "gw2"]);
        assert!(masters[&2].is_empty());
    }

    #[test]
    fn vhids_nobody_reports_still_appear_without_master() {
        let masters = masters_by_vhid(&[]);
        assert_eq!(masters.keys().copied().collect::<Vec<_>>(), [1, 2]);
        assert!(masters.values().all(Vec::is_empty));
    }
}
