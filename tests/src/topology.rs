//! A switch namespace holding one bridge per segment, and node namespaces
//! wired to the bridges by veth pairs: the shape of a real gateway pair's
//! network, small enough to build in a fraction of a second.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::netns::{Netns, sweep_stale, unique_stem};

/// Linux interface names are at most 15 bytes (IFNAMSIZ minus the NUL).
const IFNAME_MAX: usize = 15;

/// What to build: pure data, checked by [`TopologySpec::validate`] before
/// anything touches the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopologySpec {
    pub bridges: Vec<String>,
    pub nodes: Vec<NodeSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub ports: Vec<PortSpec>,
    /// IPv4 and IPv6 forwarding on: a gateway.
    pub forwarding: bool,
    /// Default gateways (one per address family at most).
    pub default_routes: Vec<String>,
}

/// One veth: `ifname` in the node, `<node>-<ifname>` in the switch on `bridge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub ifname: String,
    pub bridge: String,
    /// `address/prefix`, IPv4 or IPv6.
    pub addresses: Vec<String>,
}

impl TopologySpec {
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn bridge(mut self, name: &str) -> Self {
        self.bridges.push(name.to_owned());
        self
    }

    #[must_use]
    pub fn node(mut self, node: NodeSpec) -> Self {
        self.nodes.push(node);
        self
    }

    /// Names fit the kernel's limits and every port's bridge exists.
    pub fn validate(&self) -> Result<()> {
        let mut bridges = BTreeSet::new();
        for bridge in &self.bridges {
            check_ifname(bridge, "bridge")?;
            if !bridges.insert(bridge.as_str()) {
                return Err(invalid(format!("bridge {bridge} declared twice")));
            }
        }
        let mut nodes = BTreeSet::new();
        let mut switch_ports = BTreeSet::new();
        for node in &self.nodes {
            check_node_name(&node.name)?;
            if !nodes.insert(node.name.as_str()) {
                return Err(invalid(format!("node {} declared twice", node.name)));
            }
            let mut ifnames = BTreeSet::new();
            for port in &node.ports {
                check_ifname(&port.ifname, &format!("{} port", node.name))?;
                if !ifnames.insert(port.ifname.as_str()) {
                    return Err(invalid(format!(
                        "{}: port {} twice",
                        node.name, port.ifname
                    )));
                }
                if !bridges.contains(port.bridge.as_str()) {
                    return Err(invalid(format!(
                        "{} {}: no bridge {}",
                        node.name, port.ifname, port.bridge
                    )));
                }
                let switch_port = switch_port_name(&node.name, &port.ifname);
                check_ifname(&switch_port, "switch-side port")?;
                if !switch_ports.insert(switch_port.clone()) {
                    return Err(invalid(format!("switch-side port {switch_port} twice")));
                }
                if let Some(address) = port.addresses.iter().find(|a| !a.contains('/')) {
                    return Err(invalid(format!(
                        "{} {}: address {address} has no /prefix",
                        node.name, port.ifname
                    )));
                }
            }
        }
        Ok(())
    }
}

impl NodeSpec {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ports: Vec::new(),
            forwarding: false,
            default_routes: Vec::new(),
        }
    }

    #[must_use]
    pub fn port(mut self, ifname: &str, bridge: &str, addresses: &[&str]) -> Self {
        self.ports.push(PortSpec {
            ifname: ifname.to_owned(),
            bridge: bridge.to_owned(),
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
        });
        self
    }

    #[must_use]
    pub fn forwarding(mut self) -> Self {
        self.forwarding = true;
        self
    }

    #[must_use]
    pub fn default_via(mut self, gateway: &str) -> Self {
        self.default_routes.push(gateway.to_owned());
        self
    }
}

/// The built topology; dropping it deletes every namespace (and so every
/// veth and bridge) it made.
#[derive(Debug)]
pub struct Topology {
    stem: String,
    switch: Netns,
    nodes: Vec<(String, Netns)>,
}

impl Topology {
    /// Builds `spec` in namespaces `<prefix>-<pid>-<n>-{sw,<node>}`, after
    /// sweeping what dead runs with the same prefix left behind.
    pub fn build(prefix: &str, spec: &TopologySpec) -> Result<Self> {
        spec.validate()?;
        match sweep_stale(prefix) {
            Ok(swept) if !swept.is_empty() => {
                eprintln!("carp-tests: deleted stale namespaces {}", swept.join(" "));
            }
            Ok(_) => {}
            // Leftovers only cost memory; they must not fail this run.
            Err(error) => eprintln!("carp-tests: sweeping stale namespaces: {error}"),
        }
        let stem = unique_stem(prefix);
        let switch = Netns::create(format!("{stem}-sw"))?;
        // The switch is layer 2 only: without IPv6 its bridges send no router
        // solicitations or MLD reports into the segments under test.
        switch.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        switch.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        for bridge in &spec.bridges {
            // No multicast snooping: the bridge floods CARP's 224.0.0.18 and
            // ff02::12 to every port, as a dumb switch would, without relying
            // on an MLD querier that the lab does not have.
            switch.ip([
                "link",
                "add",
                bridge,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ])?;
            switch.link_up(bridge)?;
        }
        let mut topology = Self {
            stem,
            switch,
            nodes: Vec::new(),
        };
        for node in &spec.nodes {
            topology.add_node(node)?;
        }
        Ok(topology)
    }

    fn add_node(&mut self, spec: &NodeSpec) -> Result<()> {
        // A failure below drops the guard, which deletes the namespace.
        let netns = Netns::create(format!("{}-{}", self.stem, spec.name))?;
        // Addresses usable at once: no duplicate address detection wait on
        // the link-local addresses either (carpd sends NAs and IPv6 adverts
        // from them).
        netns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        netns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        if spec.forwarding {
            netns.sysctl("net.ipv4.ip_forward", "1")?;
            netns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        }
        for port in &spec.ports {
            let switch_port = switch_port_name(&spec.name, &port.ifname);
            self.switch.ip([
                "link",
                "add",
                &switch_port,
                "type",
                "veth",
                "peer",
                "name",
                &port.ifname,
                "netns",
                netns.name(),
            ])?;
            self.switch
                .ip(["link", "set", &switch_port, "master", &port.bridge, "up"])?;
            netns.link_up(&port.ifname)?;
            for address in &port.addresses {
                let mut args = vec!["addr", "add", address.as_str(), "dev", &port.ifname];
                if is_ipv6(address) {
                    args.push("nodad");
                }
                netns.ip(args)?;
            }
        }
        for gateway in &spec.default_routes {
            let family = if is_ipv6(gateway) { "-6" } else { "-4" };
            netns.ip([family, "route", "add", "default", "via", gateway])?;
        }
        self.nodes.push((spec.name.clone(), netns));
        Ok(())
    }

    /// The `<prefix>-<pid>-<n>` all of its namespace names start with.
    pub fn stem(&self) -> &str {
        &self.stem
    }

    pub fn switch(&self) -> &Netns {
        &self.switch
    }

    pub fn node(&self, name: &str) -> Result<&Netns> {
        self.nodes
            .iter()
            .find(|(node, _)| node == name)
            .map(|(_, netns)| netns)
            .ok_or_else(|| invalid(format!("no node {name}")))
    }

    /// Every namespace of the topology, switch first.
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.switch.name())
            .chain(self.nodes.iter().map(|(_, netns)| netns.name()))
            .map(str::to_owned)
            .collect()
    }

    /// The switch-side end of `node`'s `ifname`: downing it cuts the cable at
    /// the switch, so the node itself still sees carrier until the veth
    /// reports it (for "switch port died" stories, down the node side).
    pub fn switch_port(&self, node: &str, ifname: &str) -> String {
        switch_port_name(node, ifname)
    }
}

fn switch_port_name(node: &str, ifname: &str) -> String {
    format!("{node}-{ifname}")
}

fn is_ipv6(address: &str) -> bool {
    address.contains(':')
}

fn check_ifname(name: &str, what: &str) -> Result<()> {
    if name.is_empty() || name.len() > IFNAME_MAX {
        return Err(invalid(format!(
            "{what} name {name:?} must be 1..={IFNAME_MAX} bytes"
        )));
    }
    if name.contains(['/', ' ', ':']) {
        return Err(invalid(format!("{what} name {name:?} has a / : or space")));
    }
    Ok(())
}

fn check_node_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name != "sw"
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "node name {name:?} must be lowercase letters and digits, and not \"sw\""
        )))
    }
}

fn invalid(message: String) -> Error {
    Error::Topology(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_nodes() -> TopologySpec {
        TopologySpec::new()
            .bridge("outside")
            .node(NodeSpec::new("gw1").port("eth-out", "outside", &["10.0.1.2/24"]))
            .node(NodeSpec::new("client").port("eth0", "outside", &["10.0.1.100/24"]))
    }

    fn rejection(spec: &TopologySpec) -> String {
        spec.validate()
            .expect_err("spec must be rejected")
            .to_string()
    }

    #[test]
    fn a_well_formed_spec_validates() -> anyhow::Result<()> {
        two_nodes().validate()?;
        Ok(())
    }

    #[test]
    fn ports_must_name_a_declared_bridge() {
        let spec = two_nodes().node(NodeSpec::new("gw2").port("eth-in", "inside", &[]));
        assert!(rejection(&spec).contains("no bridge inside"));
    }

    #[test]
    fn interface_names_must_fit_ifnamsiz() {
        let spec = two_nodes().bridge("a-very-long-bridge");
        assert!(rejection(&spec).contains("1..=15 bytes"));
        // The switch-side name is <node>-<ifname>, and must fit too.
        let spec = two_nodes().node(NodeSpec::new("server").port("eth-inside", "outside", &[]));
        assert!(rejection(&spec).contains("switch-side port"));
    }

    #[test]
    fn names_are_unique() {
        let spec = two_nodes().node(NodeSpec::new("gw1"));
        assert!(rejection(&spec).contains("node gw1 declared twice"));
        let spec = two_nodes().bridge("outside");
        assert!(rejection(&spec).contains("bridge outside declared twice"));
        let spec =
            TopologySpec::new()
                .bridge("b")
                .node(
                    NodeSpec::new("gw1")
                        .port("eth0", "b", &[])
                        .port("eth0", "b", &[]),
                );
        assert!(rejection(&spec).contains("port eth0 twice"));
    }

    #[test]
    fn node_names_cannot_clash_with_the_switch() {
        assert!(rejection(&two_nodes().node(NodeSpec::new("sw"))).contains("not \"sw\""));
        assert!(rejection(&two_nodes().node(NodeSpec::new("Gw-1"))).contains("lowercase"));
    }

    #[test]
    fn addresses_need_a_prefix_length() {
        let spec = two_nodes().node(NodeSpec::new("gw2").port("eth-out", "outside", &["10.0.1.3"]));
        assert!(rejection(&spec).contains("has no /prefix"));
    }
}
