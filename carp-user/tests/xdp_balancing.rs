//! Balanced groups (carpnodes) in the XDP program through
//! `BPF_PROG_TEST_RUN`: which node a packet's addresses pick, that only
//! that node's role decides, that accepted frames for the shared MAC are
//! readdressed to the carpdev, and that the chosen node answers ARP for a
//! shared VIP itself.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use carp::clock;
use carp::net::{multicast_virtual_mac, virtual_mac};
use carp_common::{BALANCE_IP, BalanceGroup, Verdict};
use common::{CLIENT_MAC, Harness, LOOPBACK, XDP_DROP, XDP_PASS, arp_frame, ipv4_frame};

const XDP_TX: u32 = 3;
/// The group: vhid 3 leads, vhid 4 is the second node.
const LEADER: u8 = 3;
const SECOND: u8 = 4;
/// Its shared VIP: last byte 50, so with two nodes a source with an even
/// last byte xor 50 (an even last byte) hashes to the leader.
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
/// 100 ^ 50 is even: the leader's.
const TO_LEADER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// 101 ^ 50 is odd: the second node's.
const TO_SECOND: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);
/// A host behind the gateway: 100 ^ 7 is odd, 101 ^ 7 even.
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const CARPDEV_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0d];
const ROGUE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x66];
const LIVE: Duration = Duration::from_mins(1);

fn shared_mac() -> [u8; 6] {
    multicast_virtual_mac(LEADER)
}

fn harness() -> Harness {
    let mut harness = Harness::new();
    let dataplane = &mut harness.dataplane;
    let mut group = BalanceGroup {
        count: 2,
        mode: BALANCE_IP,
        shared_mac: shared_mac(),
        carpdev_mac: CARPDEV_MAC,
        ..BalanceGroup::default()
    };
    group.nodes[..2].copy_from_slice(&[LEADER, SECOND]);
    dataplane
        .add_balance_group(LOOPBACK, &group)
        .expect("the group map takes a group");
    dataplane
        .add_vhid(LOOPBACK, LEADER, true)
        .expect("the leader is configured");
    dataplane
        .add_vhid(LOOPBACK, SECOND, false)
        .expect("the second node is configured");
    dataplane
        .add_vip(LOOPBACK, LEADER, IpAddr::V4(VIP), true)
        .expect("the shared VIP is configured");
    dataplane
        .beat(clock::now(), LIVE)
        .expect("the heartbeat map takes a beat");
    harness
}

fn roles(harness: &mut Harness, leader: bool, second: bool) {
    for (vhid, master) in [(LEADER, leader), (SECOND, second)] {
        harness
            .dataplane
            .set_role(LOOPBACK, vhid, master)
            .expect("the role is written");
    }
}

#[test]
fn the_packets_addresses_pick_the_node_whose_role_decides() {
    let mut harness = harness();
    roles(&mut harness, true, false);
    let cases = [
        (
            "to the VIP, leader's share",
            ipv4_frame(shared_mac(), TO_LEADER, VIP),
            XDP_PASS,
            LEADER,
            Verdict::Owned,
        ),
        (
            "to the VIP, second's share",
            ipv4_frame(shared_mac(), TO_SECOND, VIP),
            XDP_DROP,
            SECOND,
            Verdict::NotOwned,
        ),
        (
            "through the gateway, leader's share",
            ipv4_frame(shared_mac(), TO_SECOND, SERVER),
            XDP_PASS,
            LEADER,
            Verdict::Owned,
        ),
        (
            "through the gateway, second's share",
            ipv4_frame(shared_mac(), TO_LEADER, SERVER),
            XDP_DROP,
            SECOND,
            Verdict::NotOwned,
        ),
        (
            "to the VIP by another MAC, leader's share",
            ipv4_frame(CARPDEV_MAC, TO_LEADER, VIP),
            XDP_PASS,
            LEADER,
            Verdict::Owned,
        ),
        (
            "to the VIP by another MAC, second's share",
            ipv4_frame(CARPDEV_MAC, TO_SECOND, VIP),
            XDP_DROP,
            SECOND,
            Verdict::NotOwned,
        ),
    ];
    for (what, frame, action, vhid, verdict) in &cases {
        harness.expect(what, frame, *action, Some((*vhid, *verdict)));
    }
    // The other node takes over the second share: now both pass here.
    roles(&mut harness, true, true);
    for (what, frame, _, vhid, _) in &cases {
        harness.expect(what, frame, XDP_PASS, Some((*vhid, Verdict::Owned)));
    }
    // And with the leader's share gone, only the second's passes.
    roles(&mut harness, false, true);
    for (what, frame, action, vhid, _) in &cases {
        let (action, verdict) = if *action == XDP_PASS {
            (XDP_DROP, Verdict::NotOwned)
        } else {
            (XDP_PASS, Verdict::Owned)
        };
        harness.expect(what, frame, action, Some((*vhid, verdict)));
    }
}

#[test]
fn accepted_frames_for_the_shared_mac_are_readdressed_to_the_carpdev() {
    let mut harness = harness();
    roles(&mut harness, true, false);
    let frame = ipv4_frame(shared_mac(), TO_LEADER, VIP);
    let run = harness
        .dataplane
        .run_on_frame(&frame, 1)
        .expect("the test run works");
    assert_eq!(run.action, XDP_PASS);
    assert_eq!(
        &run.frame[0..6],
        &CARPDEV_MAC,
        "one unicast copy for the stack"
    );
    assert_eq!(&run.frame[6..], &frame[6..], "nothing else changes");
    // Addressed to another MAC, the frame is left alone.
    let direct = ipv4_frame(CARPDEV_MAC, TO_LEADER, VIP);
    let run = harness
        .dataplane
        .run_on_frame(&direct, 1)
        .expect("the test run works");
    assert_eq!((run.action, run.frame), (XDP_PASS, direct));
}

#[test]
fn in_the_unicast_modes_the_carp_interface_takes_the_frame_as_is() {
    let mut harness = harness();
    let mut group = BalanceGroup {
        count: 2,
        mode: carp_common::BALANCE_IP_STEALTH,
        shared_mac: virtual_mac(LEADER),
        carpdev_mac: CARPDEV_MAC,
        ..BalanceGroup::default()
    };
    group.nodes[..2].copy_from_slice(&[LEADER, SECOND]);
    harness
        .dataplane
        .add_balance_group(LOOPBACK, &group)
        .expect("the group map takes a group");
    roles(&mut harness, true, false);
    let frame = ipv4_frame(virtual_mac(LEADER), TO_LEADER, VIP);
    let run = harness
        .dataplane
        .run_on_frame(&frame, 1)
        .expect("the test run works");
    assert_eq!((run.action, run.frame), (XDP_PASS, frame));
    harness.expect(
        "the second node's share",
        &ipv4_frame(virtual_mac(LEADER), TO_SECOND, VIP),
        XDP_DROP,
        Some((SECOND, Verdict::NotOwned)),
    );
}

#[test]
fn the_node_a_requester_hashes_to_answers_arp_for_the_shared_vip() {
    let mut harness = harness();
    roles(&mut harness, true, false);
    let request = arp_frame(1, CLIENT_MAC, TO_LEADER, VIP);
    harness.expect(
        "ARP request, leader's share",
        &request,
        XDP_TX,
        Some((LEADER, Verdict::Answered)),
    );
    let run = harness
        .dataplane
        .run_on_frame(&request, 1)
        .expect("the test run works");
    let mut reply = arp_frame(2, shared_mac(), VIP, TO_LEADER);
    reply[0..6].copy_from_slice(&CLIENT_MAC);
    reply[6..12].copy_from_slice(&CARPDEV_MAC);
    reply[32..38].copy_from_slice(&CLIENT_MAC);
    assert_eq!(
        run.frame, reply,
        "the reply gives the shared MAC, from the carpdev"
    );

    harness.expect(
        "ARP request, second's share",
        &arp_frame(1, CLIENT_MAC, TO_SECOND, VIP),
        XDP_DROP,
        Some((SECOND, Verdict::NotOwned)),
    );
    // Announcements of the shared MAC are the group's own; another MAC
    // claiming the VIP while we own the leader is a conflict.
    harness.expect(
        "gratuitous ARP for the shared MAC",
        &arp_frame(1, shared_mac(), VIP, VIP),
        XDP_PASS,
        None,
    );
    harness.expect(
        "a rogue claims the shared VIP",
        &arp_frame(2, ROGUE_MAC, VIP, TO_LEADER),
        XDP_PASS,
        Some((LEADER, Verdict::Claim)),
    );
}

#[test]
fn a_stale_agent_owns_no_share() {
    let mut harness = harness();
    roles(&mut harness, true, true);
    harness
        .dataplane
        .beat(clock::now().saturating_sub(LIVE * 2), LIVE)
        .expect("the heartbeat map takes a beat");
    for (what, frame, vhid) in [
        (
            "leader's share",
            ipv4_frame(shared_mac(), TO_LEADER, VIP),
            LEADER,
        ),
        (
            "second's share",
            ipv4_frame(shared_mac(), TO_SECOND, VIP),
            SECOND,
        ),
        (
            "ARP, leader's share",
            arp_frame(1, CLIENT_MAC, TO_LEADER, VIP),
            LEADER,
        ),
        // A node's own virtual MAC follows its own role.
        (
            "second's virtual MAC",
            ipv4_frame(virtual_mac(SECOND), TO_LEADER, SERVER),
            SECOND,
        ),
    ] {
        // The watchdog demotes the roles from its timer, just after the beat.
        harness.poll_until(what, &frame, XDP_DROP, None);
        harness.expect(what, &frame, XDP_DROP, Some((vhid, Verdict::AgentStale)));
    }
}
