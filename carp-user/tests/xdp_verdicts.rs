//! Every verdict of the XDP program, through `BPF_PROG_TEST_RUN` on crafted
//! frames: the action it returns, the counter it bumps and, for accepted
//! advertisements, the record the agent receives. Needs root (BPF).

mod common;

use std::net::IpAddr;

use carp::dataplane::Baseline;
use carp::net::frames::{self, CARP_GROUP_V4};
use carp_common::Verdict;
use common::{
    Harness, LOOPBACK, SOURCE_V4, SOURCE_V6, VHID, XDP_DROP, XDP_PASS, ethernet, header,
    ipv4_advert, ipv4_advert_with, ipv6_advert,
};

#[test]
fn accepted_adverts_reach_the_agent_with_a_kernel_timestamp() {
    let mut harness = Harness::new();
    let carp = header(VHID);
    let before = carp::clock::now();
    harness.expect(
        "IPv4 advert",
        &ipv4_advert(&carp),
        XDP_DROP,
        Some((VHID, Verdict::Accepted)),
    );
    let advert = harness.receive();
    assert_eq!(advert.ifindex, LOOPBACK);
    assert_eq!(advert.source, IpAddr::V4(SOURCE_V4));
    assert!(advert.multicast);
    assert_eq!(advert.header, carp);
    assert!(
        advert.timestamp >= before && advert.timestamp <= carp::clock::now(),
        "timestamp {:?} not on the agent's monotonic clock (test started at {before:?})",
        advert.timestamp
    );

    harness.expect(
        "IPv6 advert",
        &ipv6_advert(255, &carp),
        XDP_DROP,
        Some((VHID, Verdict::Accepted)),
    );
    let advert = harness.receive();
    assert_eq!(advert.source, IpAddr::V6(SOURCE_V6));
    assert!(advert.multicast);

    let unicast = ipv4_advert_with(|f| f[30..34].copy_from_slice(&[192, 0, 2, 1]));
    harness.expect(
        "unicast IPv4 advert",
        &unicast,
        XDP_DROP,
        Some((VHID, Verdict::Accepted)),
    );
    assert!(!harness.receive().multicast);
}

#[test]
fn ipv4_options_are_skipped() {
    let harness = Harness::new();
    // ihl 6: one 4-byte option (NOPs) between the IPv4 and CARP headers.
    let mut packet = frames::advert_v4(SOURCE_V4, CARP_GROUP_V4, 1, &header(VHID)).to_vec();
    packet.splice(20..20, [1, 1, 1, 1]);
    packet[0] = 0x46;
    packet[2..4].copy_from_slice(&60u16.to_be_bytes());
    let frame = ethernet(frames::ETHERTYPE_IPV4, &packet);
    harness.expect(
        "IPv4 options",
        &frame,
        XDP_DROP,
        Some((VHID, Verdict::Accepted)),
    );
}

#[test]
fn bad_adverts_are_dropped_and_counted_by_reason() {
    let harness = Harness::new();
    let mut bad_version = header(VHID);
    bad_version[0] = 0x31;
    let mut bad_type = header(VHID);
    bad_type[0] = 0x22;
    let mut bad_sum = header(VHID);
    bad_sum[20] ^= 0x01;
    let cases: Vec<(&str, Vec<u8>, (u8, Verdict))> = vec![
        (
            "TTL 254",
            ipv4_advert_with(|f| f[22] = 254),
            (VHID, Verdict::BadTtl),
        ),
        (
            "TTL 1",
            ipv4_advert_with(|f| f[22] = 1),
            (VHID, Verdict::BadTtl),
        ),
        (
            "hop limit 64",
            ipv6_advert(64, &header(VHID)),
            (VHID, Verdict::BadTtl),
        ),
        (
            "version 3",
            ipv4_advert(&bad_version),
            (VHID, Verdict::BadVer),
        ),
        ("type 2", ipv4_advert(&bad_type), (VHID, Verdict::BadVer)),
        (
            "bad checksum",
            ipv4_advert(&bad_sum),
            (VHID, Verdict::BadSum),
        ),
        (
            "unknown vhid",
            ipv4_advert(&header(99)),
            (0, Verdict::BadVhid),
        ),
        (
            "bad checksum, unknown vhid",
            ipv4_advert(&{
                let mut h = header(99);
                h[30] ^= 0xff;
                h
            }),
            (0, Verdict::BadSum),
        ),
        (
            "truncated CARP header",
            ipv4_advert(&header(VHID))[..14 + 20 + 20].to_vec(),
            (VHID, Verdict::BadLen),
        ),
        (
            "IPv4 total length too short",
            ipv4_advert_with(|f| f[16..18].copy_from_slice(&40u16.to_be_bytes())),
            (VHID, Verdict::BadLen),
        ),
        (
            "first fragment",
            ipv4_advert_with(|f| f[20..22].copy_from_slice(&0x2000u16.to_be_bytes())),
            (VHID, Verdict::BadLen),
        ),
        (
            "IPv6 payload too short",
            {
                let mut f = ipv6_advert(255, &header(VHID));
                f[18..20].copy_from_slice(&20u16.to_be_bytes());
                f
            },
            (VHID, Verdict::BadLen),
        ),
    ];
    for (what, frame, counted) in cases {
        harness.expect(what, &frame, XDP_DROP, Some(counted));
    }
}

#[test]
fn everything_else_passes_untouched() {
    let harness = Harness::new();
    let mut udp = frames::advert_v4(SOURCE_V4, CARP_GROUP_V4, 1, &header(VHID)).to_vec();
    udp[9] = 17;
    let mut vlan = ipv4_advert(&header(VHID));
    vlan.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("UDP", ethernet(frames::ETHERTYPE_IPV4, &udp)),
        (
            "ARP",
            frames::gratuitous_arp(
                carp::net::virtual_mac(VHID),
                carp::net::virtual_mac(VHID),
                SOURCE_V4,
            )
            .to_vec(),
        ),
        ("VLAN-tagged CARP", vlan),
        // The kernel hands XDP no frame shorter than an Ethernet header.
        (
            "Ethernet header alone",
            ethernet(frames::ETHERTYPE_IPV4, &[]),
        ),
        (
            "truncated IPv4 header",
            ipv4_advert(&header(VHID))[..14 + 12].to_vec(),
        ),
        ("IPv6 with another next header", {
            let mut f = ipv6_advert(255, &header(VHID));
            f[20] = 58;
            f
        }),
    ];
    for (what, frame) in cases {
        harness.expect(what, &frame, XDP_PASS, None);
    }
}

#[test]
fn the_baseline_programs_pass_everything() {
    let mut harness = Harness::new();
    for frame in [
        ipv4_advert(&header(VHID)),
        ethernet(frames::ETHERTYPE_ARP, &[0u8; 28]),
    ] {
        for baseline in [Baseline::Bare, Baseline::Clock] {
            let run = harness
                .dataplane
                .run_baseline(baseline, &frame, 1)
                .expect("the baseline runs");
            assert_eq!(run.action, XDP_PASS, "{baseline:?}");
        }
    }
}
