//! IPv6 VIPs: the client reaches vhid 1's `fd00:1::1` through the master, at
//! the virtual MAC; when the master's carpd dies the new master announces
//! the address with an unsolicited NA and answers in its place.

use std::time::Duration;

use carp_tests::{
    CLIENT, Capture, CarpState, CarpdOptions, Cluster, Netns, Signal, VHIDS, address_of,
    require_root, virtual_mac, wait_until,
};

const PREFIX: &str = "ctipv6";
/// Slack for what follows an event at once (an NA after a takeover, a
/// reply to a ping): tcpdump and the test share two busy CI cores.
const MARGIN: Duration = Duration::from_secs(1);
/// The client's first ping also resolves the VIP (neighbour solicitation).
const REACH_TIMEOUT: Duration = Duration::from_secs(5);
/// gw2 takes over after its master-down time (about 4.2 s); the kill test
/// in failover.rs bounds that precisely.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// First election plus the winner's two announcements.
const STEADY_TIMEOUT: Duration = Duration::from_secs(20);
/// Echo replies from the VIP (`ICMPv6` type 129 right after a bare IPv6 header).
const ECHO_REPLIES_FROM_VIP: &str = "icmp6 and ip6[40] == 129 and src host fd00:1::1";

#[test]
fn the_ipv6_vip_answers_from_the_master_before_and_after_a_failover() -> anyhow::Result<()> {
    require_root()?;
    let vhid = &VHIDS[0];
    let vip = vhid
        .addresses
        .iter()
        .find(|a| a.contains(':'))
        .map(|a| address_of(a))
        .expect("the lab's vhid 1 has an IPv6 VIP");
    assert_eq!(Some(vip), CLIENT.ipv6.map(|(_, gateway)| gateway));
    let mut cluster = Cluster::start(PREFIX, &CarpdOptions::default())?;
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;
    // Each gateway's echo replies, captured where it sends them.
    let mut replies_from_gw1 =
        Capture::start(cluster.netns("gw1")?, vhid.carpdev, ECHO_REPLIES_FROM_VIP)?;
    let mut replies_from_gw2 =
        Capture::start(cluster.netns("gw2")?, vhid.carpdev, ECHO_REPLIES_FROM_VIP)?;

    let client = cluster.lab().client()?;
    reach(client, vip)?;
    replies_from_gw1
        .wait_for(MARGIN, |line| line.contains(&format!("{vip} > ")))
        .map_err(|error| anyhow::anyhow!("gw1 (MASTER) did not answer: {error}"))?;
    assert_eq!(
        replies_from_gw2.count(|_| true),
        0,
        "gw2 (BACKUP) answered for {vip}: {:?}",
        replies_from_gw2.lines()
    );
    let neighbour = client.ip(["-6", "neigh", "show", vip])?;
    assert!(
        neighbour.contains(&format!("lladdr {}", virtual_mac(vhid.vhid))),
        "the client must resolve {vip} to the virtual MAC: {neighbour}"
    );

    // gw1 announced long ago (wait_steady) and its carpd will be dead: an
    // unsolicited NA (to all nodes) from the virtual MAC after the kill is
    // gw2's takeover announcement.
    let mut announcements = Capture::start(client, CLIENT.ifname, "icmp6")?;
    cluster.signal("gw1", Signal::SIGKILL)?;
    cluster.wait_roles(&[("gw2", CarpState::Master)], TAKEOVER_TIMEOUT)?;
    let unsolicited_na = format!(
        "{} > 33:33:00:00:00:01, ethertype IPv6",
        virtual_mac(vhid.vhid)
    );
    announcements
        .wait_for(MARGIN, |line| {
            line.contains(&unsolicited_na)
                && line.contains(&format!(
                    "{vip} > ff02::1: ICMP6, neighbor advertisement, tgt is {vip},"
                ))
        })
        .map_err(|error| anyhow::anyhow!("gw2's unsolicited NA for {vip}: {error}"))?;

    // The client's neighbour entry still holds (same virtual MAC); the
    // switch now delivers it to gw2, which answers.
    let client = cluster.lab().client()?;
    reach(client, vip)?;
    replies_from_gw2
        .wait_for(MARGIN, |line| line.contains(&format!("{vip} > ")))
        .map_err(|error| anyhow::anyhow!("gw2 (new MASTER) did not answer: {error}"))?;
    Ok(())
}

fn reach(client: &Netns, vip: &str) -> anyhow::Result<()> {
    wait_until(REACH_TIMEOUT, &format!("the client to reach {vip}"), || {
        client.ping(vip).is_ok()
    })?;
    Ok(())
}
