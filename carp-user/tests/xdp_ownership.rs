//! Ownership verdicts of the XDP program through `BPF_PROG_TEST_RUN`: what
//! passes and what is dropped for a VIP and the virtual MAC in each role,
//! with a live and a stale agent, and which claims reach the agent.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use carp::clock;
use carp::net::frames;
use carp_common::{CARPDEV_HOMES, Verdict};
use common::{
    CLIENT_MAC, Harness, LOOPBACK, RECEIVE_TIMEOUT, VHID, XDP_DROP, XDP_PASS, addressed, arp_frame,
    ipv4_frame,
};

const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const OTHER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);
const CLIENT4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const ROGUE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x66];
/// Long enough that the beat cannot go stale during a test.
const LIVE: Duration = Duration::from_mins(1);

fn harness() -> Harness {
    with_vips(Harness::new())
}

fn with_vips(mut harness: Harness) -> Harness {
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        harness
            .dataplane
            .add_vip(LOOPBACK, VHID, vip, false)
            .expect("the VIP map takes a VIP");
    }
    harness
        .dataplane
        .beat(clock::now(), LIVE)
        .expect("the heartbeat map takes a beat");
    harness
}

fn set_master(harness: &mut Harness, master: bool) {
    harness
        .dataplane
        .set_role(LOOPBACK, VHID, master)
        .expect("the role is written");
}

/// An Ethernet frame from the client to `mac` with an IPv4 packet to `to`.
fn ipv4_to(mac: [u8; 6], to: Ipv4Addr) -> Vec<u8> {
    ipv4_frame(mac, CLIENT4, to)
}

fn ipv6_to(to: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&u16::try_from(payload.len()).unwrap_or(0).to_be_bytes());
    ip.extend_from_slice(&[next_header, 255]);
    ip.extend_from_slice(&Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x64).octets());
    ip.extend_from_slice(&to.octets());
    ip.extend_from_slice(payload);
    addressed(CLIENT_MAC, frames::ETHERTYPE_IPV6, &ip)
}

/// A neighbour solicitation (135) or advertisement (136) about `target`.
fn neighbour(kind: u8, target: Ipv6Addr, from: [u8; 6]) -> Vec<u8> {
    let mut icmp = vec![kind, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    let solicited_node = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 1);
    let mut frame = ipv6_to(solicited_node, 58, &icmp);
    frame[6..12].copy_from_slice(&from);
    frame
}

fn virtual_mac() -> [u8; 6] {
    carp::net::virtual_mac(VHID)
}

/// The frames only the owner may take, with a name for messages.
fn owner_only() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("IPv4 to the VIP", ipv4_to(virtual_mac(), VIP4)),
        (
            "IPv4 to the VIP, sent to a real MAC",
            ipv4_to([0x02, 0, 0, 0, 0, 2], VIP4),
        ),
        (
            "anything to the virtual MAC",
            ipv4_to(virtual_mac(), OTHER4),
        ),
        (
            "ARP request for the VIP",
            arp_frame(1, CLIENT_MAC, CLIENT4, VIP4),
        ),
        ("IPv6 to the VIP", ipv6_to(VIP6, 17, &[0u8; 8])),
        (
            "neighbour solicitation for the VIP",
            neighbour(135, VIP6, CLIENT_MAC),
        ),
    ]
}

#[test]
fn backup_drops_what_only_the_owner_may_take_and_master_passes_it() {
    let mut harness = harness();
    for (what, frame) in owner_only() {
        harness.expect(what, &frame, XDP_DROP, Some((VHID, Verdict::NotOwned)));
    }
    set_master(&mut harness, true);
    for (what, frame) in owner_only() {
        harness.expect(what, &frame, XDP_PASS, Some((VHID, Verdict::Owned)));
    }
    set_master(&mut harness, false);
    let (what, frame) = &owner_only()[0];
    harness.expect(what, frame, XDP_DROP, Some((VHID, Verdict::NotOwned)));
}

/// Two carpdevs whose ifindexes are equal modulo `CARPDEV_HOMES` share a
/// home in `CARP_CARPDEVS`: the second is found in `CARP_COLLIDED`, with the
/// same verdicts, counted on it alone.
#[test]
fn a_carpdev_whose_home_another_took_is_judged_alike() {
    let mut harness = with_vips(Harness::after(|dataplane| {
        dataplane
            .add_vhid(LOOPBACK + CARPDEV_HOMES, VHID, false)
            .expect("the first carpdev takes the home");
    }));
    for (what, frame) in owner_only() {
        harness.expect(what, &frame, XDP_DROP, Some((VHID, Verdict::NotOwned)));
    }
    set_master(&mut harness, true);
    for (what, frame) in owner_only() {
        harness.expect(what, &frame, XDP_PASS, Some((VHID, Verdict::Owned)));
    }
    let other = harness.dataplane.counters().expect("counters read");
    assert!(
        other.iter().all(|c| c.ifindex == LOOPBACK),
        "the other carpdev counted: {other:?}"
    );
}

#[test]
fn other_traffic_passes_uncounted_in_either_role() {
    let mut harness = harness();
    for master in [false, true] {
        set_master(&mut harness, master);
        for (what, frame) in [
            ("IPv4 to another address", ipv4_to(CLIENT_MAC, OTHER4)),
            (
                "ARP request for another address",
                arp_frame(1, CLIENT_MAC, CLIENT4, OTHER4),
            ),
            (
                "IPv6 to another address",
                ipv6_to(Ipv6Addr::LOCALHOST, 17, &[0u8; 8]),
            ),
            (
                "solicitation for another address",
                neighbour(135, Ipv6Addr::LOCALHOST, CLIENT_MAC),
            ),
            (
                "a virtual MAC of an unconfigured vhid",
                ipv4_to(carp::net::virtual_mac(VHID + 1), OTHER4),
            ),
        ] {
            harness.expect(what, &frame, XDP_PASS, None);
        }
    }
}

#[test]
fn a_stale_or_missing_heartbeat_fails_closed() {
    let mut harness = Harness::new();
    harness
        .dataplane
        .add_vip(LOOPBACK, VHID, IpAddr::V4(VIP4), false)
        .expect("VIP");
    let frame = ipv4_to(virtual_mac(), VIP4);
    // No watchdog armed, no MASTER: nothing could demote it again.
    assert!(
        matches!(
            harness.dataplane.set_role(LOOPBACK, VHID, true),
            Err(carp::dataplane::DataplaneError::NoHeartbeat)
        ),
        "a MASTER role before the first beat is refused"
    );
    harness.expect(
        "MASTER refused before the first beat",
        &frame,
        XDP_DROP,
        Some((VHID, Verdict::NotOwned)),
    );
    harness.dataplane.beat(clock::now(), LIVE).expect("beat");
    set_master(&mut harness, true);
    harness.expect(
        "MASTER with a fresh beat",
        &frame,
        XDP_PASS,
        Some((VHID, Verdict::Owned)),
    );
    let old_beat = clock::now().saturating_sub(Duration::from_secs(5));
    harness
        .dataplane
        .beat(old_beat, Duration::from_secs(1))
        .expect("beat");
    harness.poll_until(
        "MASTER with a beat older than its bound",
        &frame,
        XDP_DROP,
        None,
    );
    harness.expect(
        "MASTER demoted by the watchdog",
        &frame,
        XDP_DROP,
        Some((VHID, Verdict::AgentStale)),
    );
    // Fresh beats see the watchdog's new count and write the roles again.
    harness.poll_until(
        "MASTER with fresh beats again",
        &frame,
        XDP_PASS,
        Some(LIVE),
    );
    harness.expect(
        "MASTER restored",
        &frame,
        XDP_PASS,
        Some((VHID, Verdict::Owned)),
    );
}

/// The watchdog's timer, not a clock read, ends ownership: a beat with a
/// short bound passes traffic at once and stops doing so once the bound
/// has run out with no beat after it; a BACKUP stays as it was.
#[test]
fn the_watchdog_runs_out_when_the_beats_stop() {
    const BOUND: Duration = Duration::from_millis(100);
    let mut harness = Harness::new();
    harness
        .dataplane
        .add_vip(LOOPBACK, VHID, IpAddr::V4(VIP4), false)
        .expect("VIP");
    harness
        .dataplane
        .add_vhid(LOOPBACK, VHID + 1, false)
        .expect("a second vhid");
    let frame = ipv4_to(virtual_mac(), VIP4);
    let backup_frame = ipv4_to(carp::net::virtual_mac(VHID + 1), OTHER4);
    // Setting the role beats again: the last beat is no earlier than this.
    let beat = clock::now();
    harness.dataplane.beat(beat, BOUND).expect("beat");
    set_master(&mut harness, true);
    let first = harness.dataplane.run_on_frame(&frame, 1).expect("run");
    assert_eq!(first.action, XDP_PASS, "owned within the bound");
    let stale_at = harness.poll_until("MASTER past its bound", &frame, XDP_DROP, None);
    assert!(
        stale_at >= beat + BOUND,
        "ownership ended {:?} after the beat, before its bound {BOUND:?}",
        stale_at.saturating_sub(beat)
    );
    assert!(harness.counter(VHID, Verdict::AgentStale) >= 1);
    harness.expect(
        "a BACKUP after the watchdog ran out",
        &backup_frame,
        XDP_DROP,
        Some((VHID + 1, Verdict::NotOwned)),
    );
    // Beats bring it back.
    harness.poll_until("MASTER beating again", &frame, XDP_PASS, Some(LIVE));
}

#[test]
fn a_foreign_mac_claiming_our_vip_reaches_the_agent() {
    let mut harness = harness();
    // Claims by the virtual MAC are the peer's or ours: never reported.
    set_master(&mut harness, true);
    harness.expect(
        "gratuitous ARP from the virtual MAC",
        &arp_frame(1, virtual_mac(), VIP4, VIP4),
        XDP_PASS,
        None,
    );
    harness.expect(
        "ARP reply from a rogue MAC",
        &arp_frame(2, ROGUE_MAC, VIP4, CLIENT4),
        XDP_PASS,
        Some((VHID, Verdict::Claim)),
    );
    let claims = &mut harness.claims;
    let conflict = harness
        .runtime
        .block_on(async { tokio::time::timeout(RECEIVE_TIMEOUT, claims.recv()).await })
        .expect("the conflict reaches the agent")
        .expect("the claim ring reads");
    assert_eq!(conflict.vip, IpAddr::V4(VIP4));
    assert_eq!(conflict.mac, ROGUE_MAC);
    assert_eq!((conflict.ifindex, conflict.vhid), (LOOPBACK, VHID));

    harness.expect(
        "neighbour advertisement from a rogue MAC",
        &neighbour(136, VIP6, ROGUE_MAC),
        XDP_PASS,
        Some((VHID, Verdict::Claim)),
    );
    // A BACKUP expects the master to answer: nothing to report.
    set_master(&mut harness, false);
    harness.expect(
        "ARP reply from a rogue MAC to a BACKUP",
        &arp_frame(2, ROGUE_MAC, VIP4, CLIENT4),
        XDP_PASS,
        None,
    );
}
