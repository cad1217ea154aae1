//! Who answers ARP on a segment with a MASTER: the carp interface for its
//! VIPs, with the virtual MAC, and the carpdev for the node's own address,
//! with its own MAC; never the carp interface for the node's own address.
//! A virtual MAC handed out for a node's own address follows the vhid to
//! the other node at the next failover, and in the meantime teaches
//! switches that the virtual MAC lives wherever that reply came from.

use std::time::Duration;

use carp_tests::{
    Capture, CarpdOptions, Cluster, GATEWAYS, SERVER, VHIDS, address_of, require_root, virtual_mac,
};

const PREFIX: &str = "ctarp";
/// First election plus the winner's two announcements (see `wait_steady`).
const STEADY_TIMEOUT: Duration = Duration::from_secs(20);
/// An ARP reply comes back within milliseconds; this covers a busy CI box.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a second, unwanted reply is watched for after the wanted one.
/// Both answer the same broadcast request on the same node, so a second
/// reply would follow the first within milliseconds (the macvlan handles
/// broadcasts in a work queue, a little later than its lower device).
const SECOND_REPLY_WINDOW: Duration = Duration::from_millis(500);

#[test]
fn the_master_answers_arp_for_its_own_address_and_its_vip_from_the_right_mac() -> anyhow::Result<()>
{
    require_root()?;
    let cluster = Cluster::start(PREFIX, &CarpdOptions::default())?;
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;
    let carp1 = &VHIDS[1];
    let own = address_of(GATEWAYS[0].inside);
    let vip = address_of(carp1.addresses[0]);
    let own_mac = cluster
        .link("gw1", carp1.carpdev)?
        .expect("gw1 has its inside interface")
        .mac;
    let vip_mac = virtual_mac(carp1.vhid);
    let server = cluster.lab().server()?;

    for (target, right, wrong) in [(own, &own_mac, &vip_mac), (vip, &vip_mac, &own_mac)] {
        server.ip(["neigh", "flush", "dev", SERVER.ifname])?;
        let mut replies = Capture::start(server, SERVER.ifname, "arp")?;
        server.ping(target)?;
        let wanted = format!("Reply {target} is-at {right},");
        let first = replies
            .wait_for(REPLY_TIMEOUT, |line| line.contains(&wanted))
            .map_err(|error| anyhow::anyhow!("no ARP reply for {target} from {right}: {error}"))?;
        // Nothing to await: the point is that no second reply comes.
        let second = replies.wait_for(SECOND_REPLY_WINDOW, |line| line.contains(" Reply "));
        assert!(
            second.is_err(),
            "{target} answered twice, from {right} and then {wrong}:\n{first}\n{}",
            second.unwrap_or_default()
        );
        let neighbour = server.ip(["neigh", "show", target])?;
        assert!(
            neighbour.contains(&format!("lladdr {right}")),
            "the server's ARP entry for {target}: {neighbour}"
        );
    }
    Ok(())
}
