//! `balancing` and `nodes` on a `[[carp]]` table: OpenBSD's `carpnodes`
//! with `balancing ip | ip-stealth | ip-unicast`. Several vhids share the
//! interface's addresses and each node of the cluster is MASTER of some;
//! the XDP program splits the traffic between them.

use std::fmt;

use ipnet::IpNet;

use super::ConfigError;
use super::validate::Context;
use carp_common::MAX_NODES;

/// How the shared addresses reach every node, as OpenBSD's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceMode {
    /// The VIPs resolve to a multicast MAC: every switch floods it.
    Ip,
    /// A unicast MAC that no frame ever leaves from (advertisements and
    /// ARP replies leave from the carpdev's MAC): switches never learn it
    /// and flood it.
    IpStealth,
    /// A unicast MAC the switch is configured to flood (a hub, or a static
    /// entry for every port).
    IpUnicast,
}

impl BalanceMode {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "ip" => Some(Self::Ip),
            "ip-stealth" => Some(Self::IpStealth),
            "ip-unicast" => Some(Self::IpUnicast),
            _ => None,
        }
    }

    /// The `BalanceGroup::mode` byte.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Ip => carp_common::BALANCE_IP,
            Self::IpStealth => carp_common::BALANCE_IP_STEALTH,
            Self::IpUnicast => carp_common::BALANCE_IP_UNICAST,
        }
    }
}

impl fmt::Display for BalanceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ip => "ip",
            Self::IpStealth => "ip-stealth",
            Self::IpUnicast => "ip-unicast",
        })
    }
}

/// One vhid of a balanced interface and this node's advskew for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub vhid: u8,
    pub advskew: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balancing {
    pub mode: BalanceMode,
    /// In configuration order, which every node must share: a packet's
    /// hash picks a position in this list. The first is the leader.
    pub nodes: Vec<Node>,
}

/// Validates `balancing` and `nodes` together; `vhid` and `advskew` of
/// the same table must then be absent.
pub(super) fn balancing(
    mode: Option<String>,
    nodes: Option<Vec<String>>,
    vhid_or_advskew_set: bool,
    addresses: &[IpNet],
    peer_set: bool,
    context: &Context<'_>,
) -> Result<Option<Balancing>, ConfigError> {
    let (mode, nodes) = match (mode, nodes) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(context.error("balancing needs nodes (vhid:advskew pairs)")),
        (None, Some(_)) => {
            return Err(context.error("nodes needs balancing (ip, ip-stealth or ip-unicast)"));
        }
        (Some(mode), Some(nodes)) => (mode, nodes),
    };
    let mode = BalanceMode::parse(&mode).ok_or_else(|| {
        context.error(format!(
            "balancing \"{mode}\" is not one of ip, ip-stealth, ip-unicast"
        ))
    })?;
    if vhid_or_advskew_set {
        return Err(
            context.error("vhid and advskew are set by nodes on a balanced interface; remove them")
        );
    }
    if peer_set {
        return Err(context.error("a balanced interface advertises by multicast; remove peer"));
    }
    if let Some(v6) = addresses.iter().find(|net| net.addr().is_ipv6()) {
        return Err(context.error(format!(
            "{v6}: balanced interfaces carry IPv4 addresses only"
        )));
    }
    if !(2..=MAX_NODES).contains(&nodes.len()) {
        return Err(context.error(format!(
            "nodes has {} entries, a balanced interface has 2..{MAX_NODES}",
            nodes.len()
        )));
    }
    let mut parsed: Vec<Node> = Vec::with_capacity(nodes.len());
    for text in &nodes {
        let node = node(text).ok_or_else(|| {
            context.error(format!(
                "nodes entry \"{text}\" is not vhid:advskew (vhid 1..255, advskew 0..254)"
            ))
        })?;
        if parsed.iter().any(|n| n.vhid == node.vhid) {
            return Err(context.error(format!("nodes lists vhid {} twice", node.vhid)));
        }
        parsed.push(node);
    }
    Ok(Some(Balancing {
        mode,
        nodes: parsed,
    }))
}

fn node(text: &str) -> Option<Node> {
    let (vhid, advskew) = text.split_once(':')?;
    let vhid: u8 = vhid.trim().parse().ok().filter(|v| *v >= 1)?;
    let advskew: u8 = advskew.trim().parse().ok().filter(|a| *a <= 254)?;
    Some(Node { vhid, advskew })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(
        mode: Option<&str>,
        nodes: Option<&[&str]>,
        addresses: &[&str],
    ) -> Result<Option<Balancing>, String> {
        let context = Context {
            path: Path::new("/x.toml"),
            location: "carp[0] (carp2)".into(),
        };
        let addresses: Vec<IpNet> = addresses.iter().filter_map(|a| a.parse().ok()).collect();
        balancing(
            mode.map(str::to_owned),
            nodes.map(|n| n.iter().map(|s| (*s).to_owned()).collect()),
            false,
            &addresses,
            false,
            &context,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_balanced_interface_lists_its_nodes_in_order() {
        let parsed = check(Some("ip"), Some(&["3:0", "4:100"]), &["10.0.1.50/24"]);
        assert_eq!(
            parsed,
            Ok(Some(Balancing {
                mode: BalanceMode::Ip,
                nodes: vec![
                    Node {
                        vhid: 3,
                        advskew: 0
                    },
                    Node {
                        vhid: 4,
                        advskew: 100
                    }
                ],
            }))
        );
        assert_eq!(check(None, None, &[]), Ok(None));
        for (mode, byte) in [
            ("ip", carp_common::BALANCE_IP),
            ("ip-stealth", carp_common::BALANCE_IP_STEALTH),
            ("ip-unicast", carp_common::BALANCE_IP_UNICAST),
        ] {
            let parsed = check(Some(mode), Some(&["1:0", "2:0"]), &[]);
            let balancing = parsed
                .ok()
                .flatten()
                .map(|b| (b.mode.to_string(), b.mode.as_u8()));
            assert_eq!(balancing, Some((mode.to_owned(), byte)));
        }
    }

    #[test]
    fn bad_balancing_says_what_is_wrong() {
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a [&'a str]>,
            &'a [&'a str],
            &'a str,
        );
        let cases: [Case<'_>; 8] = [
            (Some("ip"), None, &[], "balancing needs nodes"),
            (None, Some(&["1:0", "2:0"]), &[], "nodes needs balancing"),
            (
                Some("arp"),
                Some(&["1:0", "2:0"]),
                &[],
                "\"arp\" is not one of",
            ),
            (Some("ip"), Some(&["1:0"]), &[], "nodes has 1 entries"),
            (
                Some("ip"),
                Some(&["1:0", "1:100"]),
                &[],
                "lists vhid 1 twice",
            ),
            (
                Some("ip"),
                Some(&["1:0", "0:10"]),
                &[],
                "\"0:10\" is not vhid:advskew",
            ),
            (
                Some("ip"),
                Some(&["1:0", "2:255"]),
                &[],
                "\"2:255\" is not vhid:advskew",
            ),
            (
                Some("ip"),
                Some(&["1:0", "2:0"]),
                &["fd00::1/64"],
                "IPv4 addresses only",
            ),
        ];
        for (mode, nodes, addresses, wanted) in cases {
            let message = check(mode, nodes, addresses).err().unwrap_or_default();
            assert!(
                message.contains(wanted) && message.starts_with("/x.toml: carp[0] (carp2)"),
                "{mode:?} {nodes:?}: {message:?} lacks {wanted:?}"
            );
        }
    }
}
