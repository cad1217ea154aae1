//! Every verdict of the XDP program, through `BPF_PROG_TEST_RUN` on crafted
//! frames: the action it returns, the counter it bumps and, for accepted
//! advertisements, the record the agent receives. Needs root (BPF).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use carp::dataplane::{AdvertReceiver, Dataplane, ReceivedAdvert, XdpCounter};
use carp::net::frames::{self, CARP_GROUP_V4, CARP_GROUP_V6};
use carp::wire::Advertisement;
use carp_common::{CARP_HEADER_LEN, Verdict};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// `BPF_PROG_TEST_RUN` presents frames as arriving on the loopback device.
const LOOPBACK: u32 = 1;
const VHID: u8 = 7;
const SOURCE_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const SOURCE_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
/// The record is in the ring before `test_run` returns; this only bounds a bug.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(2);

fn header(vhid: u8) -> [u8; CARP_HEADER_LEN] {
    Advertisement {
        vhid,
        advskew: 100,
        demote: 0,
        advbase: 1,
        counter: 0x0102_0304_0506_0708,
        digest: [0xab; 20],
    }
    .encode()
}

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
    frame.extend_from_slice(&[0x00, 0x00, 0x5e, 0x00, 0x01, VHID]);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn ipv4_advert(carp: &[u8; CARP_HEADER_LEN]) -> Vec<u8> {
    ethernet(
        frames::ETHERTYPE_IPV4,
        &frames::advert_v4(SOURCE_V4, CARP_GROUP_V4, 1, carp),
    )
}

/// An IPv4 advertisement changed by `edit` (IP header bytes from 14).
fn ipv4_advert_with(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut frame = ipv4_advert(&header(VHID));
    edit(&mut frame);
    frame
}

fn ipv6_advert(hop_limit: u8, carp: &[u8; CARP_HEADER_LEN]) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&u16::try_from(CARP_HEADER_LEN).unwrap_or(36).to_be_bytes());
    ip.push(carp_common::IPPROTO_CARP);
    ip.push(hop_limit);
    ip.extend_from_slice(&SOURCE_V6.octets());
    ip.extend_from_slice(&CARP_GROUP_V6.octets());
    ip.extend_from_slice(carp);
    ethernet(frames::ETHERTYPE_IPV6, &ip)
}

struct Harness {
    dataplane: Dataplane,
    adverts: AdvertReceiver,
    runtime: tokio::runtime::Runtime,
}

impl Harness {
    fn new() -> Self {
        let mut dataplane = Dataplane::load().unwrap_or_else(|error| {
            panic!(
                "loading the XDP program failed: {error}\n(these tests need root and BPF: run them with `cargo xtask test`)"
            )
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let adverts = {
            let _entered = runtime.enter();
            dataplane.take_adverts().expect("the ring buffer opens")
        };
        dataplane
            .add_vhid(LOOPBACK, VHID)
            .expect("the vhid map takes a vhid");
        Self {
            dataplane,
            adverts,
            runtime,
        }
    }

    fn counter(&self, vhid: u8, verdict: Verdict) -> u64 {
        self.dataplane
            .counters()
            .expect("counters read")
            .iter()
            .filter(|c: &&XdpCounter| {
                c.ifindex == LOOPBACK && c.vhid == vhid && c.verdict == verdict
            })
            .map(|c| c.packets)
            .sum()
    }

    /// Runs `frame` once and checks the action and which counter moved.
    fn expect(&self, what: &str, frame: &[u8], action: u32, counted: Option<(u8, Verdict)>) {
        let before: Vec<(u8, Verdict, u64)> = every_counter(self);
        let run = self
            .dataplane
            .run_on_frame(frame, 1)
            .unwrap_or_else(|error| panic!("{what}: test run failed: {error}"));
        assert_eq!(run.action, action, "{what}: XDP action");
        let after = every_counter(self);
        let moved: Vec<(u8, Verdict, u64)> = after
            .iter()
            .filter(|row| !before.contains(row))
            .copied()
            .collect();
        match counted {
            None => assert!(moved.is_empty(), "{what}: counted {moved:?}"),
            Some((vhid, verdict)) => {
                let old = before
                    .iter()
                    .find(|(v, r, _)| (*v, *r) == (vhid, verdict))
                    .map_or(0, |row| row.2);
                assert_eq!(
                    moved,
                    [(vhid, verdict, old + 1)],
                    "{what}: exactly one counter, by one"
                );
            }
        }
    }

    fn receive(&mut self) -> ReceivedAdvert {
        let adverts = &mut self.adverts;
        self.runtime
            .block_on(async { tokio::time::timeout(RECEIVE_TIMEOUT, adverts.recv()).await })
            .expect("an accepted advertisement reaches the ring buffer")
            .expect("the ring buffer reads")
    }
}

fn every_counter(harness: &Harness) -> Vec<(u8, Verdict, u64)> {
    Verdict::ALL
        .iter()
        .flat_map(|verdict| [0, VHID].map(|vhid| (vhid, *verdict, harness.counter(vhid, *verdict))))
        .filter(|row| row.2 > 0)
        .collect()
}

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
            frames::gratuitous_arp(carp::net::virtual_mac(VHID), SOURCE_V4).to_vec(),
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
