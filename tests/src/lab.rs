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
use std::time::Duration;

use crate::bpffs::{self, BpfMount};
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
    /// Its IPv6 address and default gateway (a VIP), on segments whose vhid
    /// has an IPv6 VIP.
    pub ipv6: Option<(&'static str, &'static str)>,
}

pub const CLIENT: LabHost = LabHost {
    name: "client",
    ifname: "eth0",
    bridge: "outside",
    address: "10.0.1.100/24",
    gateway: "10.0.1.1",
    ipv6: Some(("fd00:1::100/64", "fd00:1::1")),
};

pub const SERVER: LabHost = LabHost {
    name: "server",
    ifname: "eth0",
    bridge: "inside",
    address: "10.0.2.100/24",
    gateway: "10.0.2.1",
    ipv6: None,
};

/// What a scenario may change in the lab's carpd configs; the default is
/// the lab's own (preempt on, advbase 1, each gateway's advskew, nothing else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarpdOptions {
    pub preempt: bool,
    pub advbase: u8,
    /// `None`: the gateway's own ([`Gateway::advskew`]).
    pub advskew: Option<u8>,
    /// More TOML, written after the lab's top-level keys and before its
    /// `[[carp]]` tables: top-level keys first (`boot_timeout = 3`), then
    /// tables (`[[track]]`, `[hooks]`). See [`CarpdOptions::with_toml`].
    pub extra: String,
    /// `carpd --fresh`: discard a pinned dataplane that cannot be resumed
    /// (after a SIGKILL longer ago than the master-down time, say). On by
    /// default: most scenarios restart a killed node on purpose.
    pub fresh: bool,
}

impl Default for CarpdOptions {
    fn default() -> Self {
        Self {
            preempt: true,
            advbase: 1,
            advskew: None,
            extra: String::new(),
            fresh: true,
        }
    }
}

impl CarpdOptions {
    #[must_use]
    pub fn preempt(self, preempt: bool) -> Self {
        Self { preempt, ..self }
    }

    #[must_use]
    pub fn fresh(self, fresh: bool) -> Self {
        Self { fresh, ..self }
    }

    /// Adds `toml` to [`CarpdOptions::extra`]. TOML puts a key after a table
    /// header into that table, so give top-level keys before any table
    /// (in the first call, or at the start of one).
    #[must_use]
    pub fn with_toml(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        if !self.extra.ends_with('\n') {
            self.extra.push('\n');
        }
        self
    }

    pub fn advskew_of(&self, gateway: &Gateway) -> u8 {
        self.advskew.unwrap_or(gateway.advskew)
    }

    /// How often `gateway` advertises as MASTER: advbase + advskew/256
    /// seconds (1/256 s for 0/0, as carp(4)).
    pub fn interval(&self, gateway: &Gateway) -> Duration {
        let skew_nanos = u64::from(self.advskew_of(gateway)) * 1_000_000_000 / 256;
        match (self.advbase, skew_nanos) {
            (0, 0) => Duration::from_nanos(1_000_000_000 / 256),
            (advbase, skew) => Duration::from_secs(u64::from(advbase)) + Duration::from_nanos(skew),
        }
    }

    /// How long `gateway` as BACKUP waits for a silent master: 3 intervals.
    pub fn master_down(&self, gateway: &Gateway) -> Duration {
        self.interval(gateway) * 3
    }
}

/// The lab's network, ready to build.
#[derive(Debug)]
pub struct Lab {
    /// Dropped before the namespaces: the pins hold XDP links on their
    /// interfaces.
    pins: Vec<(&'static str, BpfMount)>,
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
            let node = match host.ipv6 {
                Some((address6, gateway6)) => NodeSpec::new(host.name)
                    .port(host.ifname, host.bridge, &[host.address, address6])
                    .default_via(host.gateway)
                    .default_via(gateway6),
                None => NodeSpec::new(host.name)
                    .port(host.ifname, host.bridge, &[host.address])
                    .default_via(host.gateway),
            };
            spec = spec.node(node);
        }
        spec
    }

    /// Builds the lab in namespaces `<prefix>-<pid>-<n>-{sw,gw1,gw2,client,server}`.
    pub fn build(prefix: &str) -> Result<Self> {
        bpffs::sweep_stale(prefix);
        let topology = Topology::build(prefix, &Self::spec())?;
        // A veth hands frames the XDP program sends back out (XDP_TX: the
        // ARP replies of balanced interfaces) only to a peer running NAPI,
        // which GRO turns on; a physical NIC needs nothing of the kind.
        for gw in &GATEWAYS {
            for port in ["eth-out", "eth-in", "eth-sync"] {
                topology.switch().run([
                    "ethtool",
                    "-K",
                    &topology.switch_port(gw.name, port),
                    "gro",
                    "on",
                ])?;
            }
        }
        let pins_root = bpffs::pins_root(topology.stem());
        let mut pins = Vec::new();
        for gw in &GATEWAYS {
            pins.push((gw.name, BpfMount::create(&pins_root.join(gw.name))?));
        }
        let lab = Self { pins, topology };
        // Emptied as the mounts go (they drop before this runs again).
        let _ = fs::remove_dir(&pins_root);
        Ok(lab)
    }

    /// The bpffs directory gateway `name`'s carpd pins its dataplane in
    /// (the `pin_dir` of its config).
    pub fn pin_dir(&self, name: &str) -> Result<&Path> {
        self.pins
            .iter()
            .find(|(gw, _)| *gw == name)
            .map(|(_, mount)| mount.path())
            .ok_or_else(|| Error::Topology(format!("no gateway {name}")))
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
        self.start_carpd_with(gateway, dir, &CarpdOptions::default())
    }

    /// [`Lab::start_carpd`] with a scenario's options. A restart on the
    /// same `dir` rewrites the config and appends to the same log.
    pub fn start_carpd_with(
        &self,
        gateway: &Gateway,
        dir: &Path,
        options: &CarpdOptions,
    ) -> Result<Carpd> {
        let config = dir.join(format!("{}.toml", gateway.name));
        let socket = dir.join(format!("{}.sock", gateway.name));
        let log = dir.join(format!("{}.log", gateway.name));
        let text = format!(
            "pin_dir = {}\n{}",
            toml_string(&self.pin_dir(gateway.name)?.to_string_lossy()),
            carpd_config_with(gateway, &socket, options)
        );
        fs::write(&config, text).map_err(|source| Error::Io {
            what: format!("write {}", config.display()),
            source,
        })?;
        Carpd::start(
            self.gateway(gateway.name)?,
            gateway.name,
            &config,
            &socket,
            &log,
            options.fresh,
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
    carpd_config_with(gateway, control_socket, &CarpdOptions::default())
}

/// carpd's TOML config for `gateway` with a scenario's options.
pub fn carpd_config_with(
    gateway: &Gateway,
    control_socket: &Path,
    options: &CarpdOptions,
) -> String {
    let sync_ip = address_of(gateway.sync);
    let vhids: Vec<String> = VHIDS
        .iter()
        .map(|vhid| {
            let addresses: Vec<String> = vhid.addresses.iter().map(|a| toml_string(a)).collect();
            format!(
                "\n[[carp]]\nname = {}\ncarpdev = {}\nvhid = {}\npass = {}\nadvbase = {}\nadvskew = {}\naddresses = [{}]\n",
                toml_string(vhid.name),
                toml_string(vhid.carpdev),
                vhid.vhid,
                toml_string(PASS),
                options.advbase,
                options.advskew_of(gateway),
                addresses.join(", "),
            )
        })
        .collect();
    format!(
        "preempt = {}\ncontrol_socket = {}\nmetrics_listen = {}\n{}{}",
        options.preempt,
        toml_string(&control_socket.to_string_lossy()),
        toml_string(&format!("{sync_ip}:{METRICS_PORT}")),
        options.extra,
        vhids.concat(),
    )
}

/// The end host on the segment of `vhid`'s carpdev: who sees its
/// announcements and uses its VIP as gateway.
pub fn host_behind(vhid: &VhidSpec) -> Option<LabHost> {
    let spec = Lab::spec();
    let gateway = spec
        .nodes
        .iter()
        .find(|node| node.name == GATEWAYS[0].name)?;
    let port = gateway
        .ports
        .iter()
        .find(|port| port.ifname == vhid.carpdev)?;
    [CLIENT, SERVER]
        .into_iter()
        .find(|host| host.bridge == port.bridge)
}

/// carp's virtual MAC for `vhid`, as `ip` and tcpdump print it.
pub fn virtual_mac(vhid: u8) -> String {
    format!("00:00:5e:00:01:{vhid:02x}")
}

/// Where `gateway` serves `/metrics`: its sync address.
pub fn metrics_address(gateway: &Gateway) -> (&'static str, u16) {
    (address_of(gateway.sync), METRICS_PORT)
}

/// `10.0.3.2` of `10.0.3.2/24`.
pub fn address_of(with_prefix: &str) -> &str {
    with_prefix.split('/').next().unwrap_or(with_prefix)
}

/// A TOML basic string. JSON's string escapes are a subset of TOML's, so
/// `serde_json` quotes it correctly.
pub fn toml_string(value: &str) -> String {
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
    fn the_client_has_ipv6_behind_the_ipv6_vip() {
        let spec = Lab::spec();
        let client = spec
            .nodes
            .iter()
            .find(|node| node.name == CLIENT.name)
            .expect("the lab has a client");
        assert_eq!(
            client.ports[0].addresses,
            ["10.0.1.100/24", "fd00:1::100/64"]
        );
        assert_eq!(client.default_routes, ["10.0.1.1", "fd00:1::1"]);
        assert!(VHIDS[0].addresses.contains(&"fd00:1::1/64"));
    }

    #[test]
    fn options_change_preempt_advbase_and_advskew() -> anyhow::Result<()> {
        let options = CarpdOptions {
            preempt: false,
            advbase: 2,
            advskew: Some(7),
            ..CarpdOptions::default()
        };
        let text = carpd_config_with(&GATEWAYS[1], Path::new("/tmp/gw2.sock"), &options);
        assert!(text.starts_with("preempt = false\n"), "{text}");
        let config: toml::Table = toml::from_str(&text)?;
        assert_eq!(config["preempt"].as_bool(), Some(false));
        for carp in config["carp"].as_array().expect("[[carp]] tables") {
            assert_eq!(carp["advbase"].as_integer(), Some(2));
            assert_eq!(carp["advskew"].as_integer(), Some(7));
        }
        // The defaults are the lab's: what carpd_config writes.
        let socket = Path::new("/tmp/gw1.sock");
        assert_eq!(
            carpd_config_with(&GATEWAYS[0], socket, &CarpdOptions::default()),
            carpd_config(&GATEWAYS[0], socket)
        );
        Ok(())
    }

    #[test]
    fn extra_toml_goes_between_the_top_level_keys_and_the_carp_tables() -> anyhow::Result<()> {
        let options = CarpdOptions::default()
            .with_toml("boot_timeout = 3\n[[track]]\nname = \"server\"\nkind = \"ping\"\ntarget = \"10.0.2.100\"")
            .with_toml("[hooks]\ntransition = \"true\"\n");
        let text = carpd_config_with(&GATEWAYS[0], Path::new("/tmp/gw1.sock"), &options);
        let config: toml::Table = toml::from_str(&text)?;
        assert_eq!(config["boot_timeout"].as_integer(), Some(3));
        assert_eq!(config["track"][0]["target"].as_str(), Some("10.0.2.100"));
        assert_eq!(config["hooks"]["transition"].as_str(), Some("true"));
        // The lab's vhids are intact: no key of theirs went into [hooks].
        let carp = config["carp"].as_array().expect("[[carp]] tables");
        assert_eq!(carp.len(), VHIDS.len());
        assert_eq!(carp[1]["name"].as_str(), Some("carp1"));
        Ok(())
    }

    #[test]
    fn intervals_keep_the_advskew_fraction() {
        let lab = CarpdOptions::default();
        assert_eq!(lab.interval(&GATEWAYS[0]), Duration::from_secs(1));
        // advskew 100: 1 + 100/256 s, exactly.
        assert_eq!(lab.interval(&GATEWAYS[1]), Duration::from_micros(1_390_625));
        assert_eq!(
            lab.master_down(&GATEWAYS[1]),
            Duration::from_micros(4_171_875)
        );
        let fastest = CarpdOptions {
            advbase: 0,
            advskew: Some(0),
            ..lab
        };
        assert_eq!(
            fastest.interval(&GATEWAYS[1]),
            Duration::from_nanos(3_906_250)
        );
    }

    #[test]
    fn each_vhid_has_a_host_behind_it() {
        assert_eq!(host_behind(&VHIDS[0]), Some(CLIENT));
        assert_eq!(host_behind(&VHIDS[1]), Some(SERVER));
    }

    #[test]
    fn virtual_macs_are_hex() {
        assert_eq!(virtual_mac(1), "00:00:5e:00:01:01");
        assert_eq!(virtual_mac(200), "00:00:5e:00:01:c8");
    }

    #[test]
    fn metrics_listen_on_the_sync_address() {
        assert_eq!(metrics_address(&GATEWAYS[0]), ("10.0.3.2", 9117));
        assert_eq!(address_of("fd00:1::1/64"), "fd00:1::1");
        assert_eq!(address_of("10.0.1.1"), "10.0.1.1");
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
