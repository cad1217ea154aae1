//! What the XDP tests share: the program loaded through `Dataplane`, its
//! ring buffers, crafted frames, and an `expect` that checks a verdict's
//! action and exactly which counter moved. Needs root (BPF).
#![allow(dead_code, reason = "each test binary uses a part")]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use carp::clock;
use carp::dataplane::{AdvertReceiver, ClaimReceiver, Dataplane, ReceivedAdvert, XdpCounter};
use carp::net::frames::{self, CARP_GROUP_V4, CARP_GROUP_V6};
use carp::wire::Advertisement;
use carp_common::{CARP_HEADER_LEN, Verdict};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
/// `BPF_PROG_TEST_RUN` presents frames as arriving on the loopback device.
pub const LOOPBACK: u32 = 1;
pub const VHID: u8 = 7;
pub const SOURCE_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const SOURCE_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
/// The record is in the ring before `test_run` returns; this only bounds a bug.
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Timers fire late on a busy machine; only a bug takes this long.
pub const EXPIRY_TIMEOUT: Duration = Duration::from_secs(5);

pub fn header(vhid: u8) -> [u8; CARP_HEADER_LEN] {
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

pub fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
    frame.extend_from_slice(&[0x00, 0x00, 0x5e, 0x00, 0x01, VHID]);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The test client's MAC, the source of the frames below.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x64];

/// `ethernet` from the client's MAC to `destination`.
pub fn addressed(destination: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = ethernet(ethertype, payload);
    frame[0..6].copy_from_slice(&destination);
    frame[6..12].copy_from_slice(&CLIENT_MAC);
    frame
}

/// A frame from the client's MAC to `mac` with an IPv4 (UDP) packet.
pub fn ipv4_frame(mac: [u8; 6], from: Ipv4Addr, to: Ipv4Addr) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&from.octets());
    ip.extend_from_slice(&to.octets());
    ip.extend_from_slice(&[0u8; 8]);
    addressed(mac, frames::ETHERTYPE_IPV4, &ip)
}

/// A broadcast ARP frame (`op` 1 request, 2 reply) from `sender_mac`.
pub fn arp_frame(op: u8, sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut payload = vec![0, 1, 0x08, 0x00, 6, 4, 0, op];
    payload.extend_from_slice(&sender_mac);
    payload.extend_from_slice(&sender.octets());
    payload.extend_from_slice(&[0u8; 6]);
    payload.extend_from_slice(&target.octets());
    let mut frame = addressed(frames::BROADCAST_MAC, frames::ETHERTYPE_ARP, &payload);
    frame[6..12].copy_from_slice(&sender_mac);
    frame
}

pub fn ipv4_advert(carp: &[u8; CARP_HEADER_LEN]) -> Vec<u8> {
    ethernet(
        frames::ETHERTYPE_IPV4,
        &frames::advert_v4(SOURCE_V4, CARP_GROUP_V4, 1, carp),
    )
}

/// An IPv4 advertisement changed by `edit` (IP header bytes from 14).
pub fn ipv4_advert_with(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut frame = ipv4_advert(&header(VHID));
    edit(&mut frame);
    frame
}

pub fn ipv6_advert(hop_limit: u8, carp: &[u8; CARP_HEADER_LEN]) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&u16::try_from(CARP_HEADER_LEN).unwrap_or(36).to_be_bytes());
    ip.push(carp_common::IPPROTO_CARP);
    ip.push(hop_limit);
    ip.extend_from_slice(&SOURCE_V6.octets());
    ip.extend_from_slice(&CARP_GROUP_V6.octets());
    ip.extend_from_slice(carp);
    ethernet(frames::ETHERTYPE_IPV6, &ip)
}

pub struct Harness {
    pub dataplane: Dataplane,
    pub adverts: AdvertReceiver,
    pub claims: ClaimReceiver,
    pub runtime: tokio::runtime::Runtime,
}

impl Harness {
    pub fn new() -> Self {
        Self::after(|_| {})
    }

    /// A harness whose dataplane `before` sets up first, before `VHID`
    /// is added on the loopback device.
    pub fn after(before: impl FnOnce(&mut Dataplane)) -> Self {
        let mut dataplane = Dataplane::load(None).unwrap_or_else(|error| {
            panic!(
                "loading the XDP program failed: {error}\n(these tests need root and BPF: run them with `cargo xtask test`)"
            )
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let (adverts, claims) = {
            let _entered = runtime.enter();
            (
                dataplane
                    .take_adverts()
                    .expect("the advert ring buffer opens"),
                dataplane
                    .take_claims()
                    .expect("the claim ring buffer opens"),
            )
        };
        before(&mut dataplane);
        dataplane
            .add_vhid(LOOPBACK, VHID, false)
            .expect("the vhid map takes a vhid");
        Self {
            dataplane,
            adverts,
            claims,
            runtime,
        }
    }

    pub fn counter(&self, vhid: u8, verdict: Verdict) -> u64 {
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

    /// [`poll_until`] on this harness's dataplane.
    pub fn poll_until(
        &mut self,
        what: &str,
        frame: &[u8],
        action: u32,
        beat: Option<Duration>,
    ) -> clock::Mono {
        poll_until(&mut self.dataplane, what, frame, action, beat)
    }

    /// Runs `frame` once and checks the action and which counter moved.
    pub fn expect(&self, what: &str, frame: &[u8], action: u32, counted: Option<(u8, Verdict)>) {
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

    pub fn receive(&mut self) -> ReceivedAdvert {
        let adverts = &mut self.adverts;
        self.runtime
            .block_on(async { tokio::time::timeout(RECEIVE_TIMEOUT, adverts.recv()).await })
            .expect("an accepted advertisement reaches the ring buffer")
            .expect("the ring buffer reads")
    }
}

/// Every non-zero counter on the loopback device, in (vhid, verdict) order.
pub fn every_counter(harness: &Harness) -> Vec<(u8, Verdict, u64)> {
    let mut rows: Vec<(u8, Verdict, u64)> = harness
        .dataplane
        .counters()
        .expect("counters read")
        .iter()
        .filter(|c| c.ifindex == LOOPBACK && c.packets > 0)
        .map(|c| (c.vhid, c.verdict, c.packets))
        .collect();
    rows.sort_by_key(|(vhid, verdict, _)| (*vhid, *verdict as u8));
    rows
}

/// Runs `frame` (beating first with `beat` if given) until the program
/// answers `action`, for at most `EXPIRY_TIMEOUT`: the watchdog's timer is
/// in the kernel, with no event to await. When it answered.
pub fn poll_until(
    dataplane: &mut Dataplane,
    what: &str,
    frame: &[u8],
    action: u32,
    beat: Option<Duration>,
) -> clock::Mono {
    let start = clock::now();
    loop {
        if let Some(bound) = beat {
            dataplane.beat(clock::now(), bound).expect("beat");
        }
        let run = dataplane.run_on_frame(frame, 1).expect("run");
        let now = clock::now();
        if run.action == action {
            return now;
        }
        assert!(
            now < start + EXPIRY_TIMEOUT,
            "{what}: still action {} after {EXPIRY_TIMEOUT:?}",
            run.action
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
