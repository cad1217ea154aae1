//! IP balancing (OpenBSD's carpnodes with `balancing ip|ip-stealth|ip-unicast`):
//! a third carp interface on the outside segment, shared by vhids 3 and 4,
//! gw1 preferred for 3 and gw2 for 4. Many client addresses ping the shared
//! VIP: each is answered by the gateway its address hashes to, and all keep
//! working, through gw2 alone, once gw1 dies. In `ip` mode the switch floods
//! the multicast MAC; in `ip-stealth` it never learns the unicast one; in
//! `ip-unicast` it is set up to flood (learning off on the gateways' ports).

use std::collections::BTreeSet;
use std::time::Duration;

use carp_tests::{
    CLIENT, Capture, CarpState, CarpdOptions, Cluster, Signal, require_root, wait_for,
};

const VIP: &str = "10.0.1.50";
const VIP_LAST_OCTET: u8 = 50;
const LEADER: u8 = 3;
const SECOND: u8 = 4;
/// Client source addresses 10.0.1.101 ..= 10.0.1.120.
const SOURCES: std::ops::RangeInclusive<u8> = 101..=120;
const STEADY_TIMEOUT: Duration = Duration::from_secs(20);
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(15);

/// gw1's or gw2's balanced interface: each is preferred (advskew 0) for
/// one of the two nodes.
fn options(mode: &str, leader_advskew: u8, second_advskew: u8) -> CarpdOptions {
    CarpdOptions::default().with_toml(&format!(
        "[[carp]]\nname = \"carp2\"\ncarpdev = \"eth-out\"\npass = \"balanced\"\n\
         balancing = \"{mode}\"\nnodes = [\"{LEADER}:{leader_advskew}\", \"{SECOND}:{second_advskew}\"]\n\
         addresses = [\"{VIP}/24\"]\n"
    ))
}

/// The node (vhid) a client address hashes to: source xor VIP modulo 2
/// is the parity of the last bytes' xor (the VIP's last byte is 50).
fn node_of(source: u8) -> u8 {
    if (source ^ VIP_LAST_OCTET).is_multiple_of(2) {
        LEADER
    } else {
        SECOND
    }
}

fn state_of(cluster: &Cluster, gateway: &str, vhid: u8) -> Option<CarpState> {
    let status = cluster.status(gateway).ok()?;
    status
        .interfaces
        .iter()
        .find(|iface| iface.name == "carp2" && iface.vhid == vhid)
        .map(|iface| iface.state.clone())
}

fn wait_node(cluster: &Cluster, gateway: &str, vhid: u8) -> anyhow::Result<()> {
    let reached = wait_for(
        TAKEOVER_TIMEOUT,
        &format!("{gateway} MASTER of vhid {vhid}"),
        || (state_of(cluster, gateway, vhid) == Some(CarpState::Master)).then_some(()),
    );
    Ok(cluster.with_report(reached)?)
}

/// Echo replies from the VIP entering the switch from `gateway`.
fn replies_from(cluster: &Cluster, gateway: &str) -> anyhow::Result<Capture> {
    let topology = cluster.lab().topology();
    Ok(Capture::start(
        topology.switch(),
        &topology.switch_port(gateway, "eth-out"),
        &format!("icmp[icmptype] = icmp-echoreply and src host {VIP}"),
    )?)
}

/// The client addresses the captured replies went to.
fn answered(capture: &mut Capture) -> BTreeSet<u8> {
    capture
        .lines()
        .iter()
        .filter_map(|line| {
            let to = line.split_once(&format!("{VIP} > 10.0.1."))?.1;
            to.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect()
}

/// One ping from every source; the sources that got no reply.
fn ping_from_every_source(cluster: &Cluster) -> anyhow::Result<Vec<u8>> {
    let client = cluster.lab().client()?;
    let mut silent = Vec::new();
    for source in SOURCES {
        let from = format!("10.0.1.{source}");
        if client
            .run(["ping", "-c", "1", "-W", "2", "-I", &from, VIP])
            .is_err()
        {
            silent.push(source);
        }
    }
    Ok(silent)
}

#[test]
fn balancing_ip_spreads_clients_over_both_gateways_and_survives_one() -> anyhow::Result<()> {
    spreads_and_survives("ctbalip", "ip", false)
}

#[test]
fn balancing_ip_stealth_spreads_clients_over_both_gateways_and_survives_one() -> anyhow::Result<()>
{
    spreads_and_survives("ctbalst", "ip-stealth", false)
}

#[test]
fn balancing_ip_unicast_spreads_clients_over_both_gateways_and_survives_one() -> anyhow::Result<()>
{
    spreads_and_survives("ctbaluc", "ip-unicast", true)
}

fn spreads_and_survives(prefix: &str, mode: &str, flood: bool) -> anyhow::Result<()> {
    require_root()?;
    let mut cluster = Cluster::start_each(
        prefix,
        &[
            ("gw1", &options(mode, 0, 100)),
            ("gw2", &options(mode, 100, 0)),
        ],
    )?;
    if flood {
        // What ip-unicast asks of the switch: flood the shared MAC to every
        // node (here: learn nothing on the gateways' ports).
        let topology = cluster.lab().topology();
        for gateway in ["gw1", "gw2"] {
            let port = topology.switch_port(gateway, "eth-out");
            topology
                .switch()
                .run(["bridge", "link", "set", "dev", &port, "learning", "off"])?;
            // Forget what was learnt before (the nodes advertise from
            // their virtual MACs in this mode).
            for mac in ["00:00:5e:00:01:03", "00:00:5e:00:01:04"] {
                let _ = topology
                    .switch()
                    .run(["bridge", "fdb", "del", mac, "dev", &port, "master"]);
            }
        }
    }
    wait_node(&cluster, "gw1", LEADER)?;
    wait_node(&cluster, "gw2", SECOND)?;
    assert_eq!(state_of(&cluster, "gw1", SECOND), Some(CarpState::Backup));
    assert_eq!(state_of(&cluster, "gw2", LEADER), Some(CarpState::Backup));
    let client = cluster.lab().client()?;
    for source in SOURCES {
        client.ip([
            "addr",
            "add",
            &format!("10.0.1.{source}/24"),
            "dev",
            CLIENT.ifname,
        ])?;
    }

    let mut from_gw1 = replies_from(&cluster, "gw1")?;
    let mut from_gw2 = replies_from(&cluster, "gw2")?;
    let silent = ping_from_every_source(&cluster)?;
    assert!(
        silent.is_empty(),
        "no reply to {silent:?}{}",
        cluster.report()
    );
    let expected_gw1: BTreeSet<u8> = SOURCES.filter(|s| node_of(*s) == LEADER).collect();
    let expected_gw2: BTreeSet<u8> = SOURCES.filter(|s| node_of(*s) == SECOND).collect();
    // Every reply has been captured once the last ping returned; wait for
    // tcpdump to print them.
    wait_for(STEADY_TIMEOUT, "the captures to show every reply", || {
        (answered(&mut from_gw1).len() + answered(&mut from_gw2).len() >= SOURCES.len())
            .then_some(())
    })?;
    assert_eq!(
        answered(&mut from_gw1),
        expected_gw1,
        "gw1 answers its share"
    );
    assert_eq!(
        answered(&mut from_gw2),
        expected_gw2,
        "gw2 answers its share"
    );

    // gw1 dies: gw2 takes its node over and answers everyone.
    cluster.signal("gw1", Signal::SIGKILL)?;
    wait_node(&cluster, "gw2", LEADER)?;
    let mut after_gw1 = replies_from(&cluster, "gw1")?;
    let mut after_gw2 = replies_from(&cluster, "gw2")?;
    let silent = ping_from_every_source(&cluster)?;
    assert!(
        silent.is_empty(),
        "no reply to {silent:?} after gw1 died{}",
        cluster.report()
    );
    let everyone: BTreeSet<u8> = SOURCES.collect();
    wait_for(STEADY_TIMEOUT, "the captures to show every reply", || {
        (answered(&mut after_gw2).len() >= SOURCES.len()).then_some(())
    })?;
    assert_eq!(answered(&mut after_gw2), everyone, "gw2 answers everyone");
    assert!(
        answered(&mut after_gw1).is_empty(),
        "the dead gateway answered"
    );
    Ok(())
}
