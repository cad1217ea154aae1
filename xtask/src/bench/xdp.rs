//! `cargo xtask bench xdp`: nanoseconds per packet of the carp XDP program
//! on each path, through `BPF_PROG_TEST_RUN`, next to the object's bare
//! `XDP_PASS` program measured in the same run, and their ratio. Rounds
//! alternate between the two so a noisy neighbour hits both alike.
//!
//! A last row measures the object's `clock_pass` (bare plus one
//! `bpf_ktime_get_ns`) the same way: the floor of the paths that must read
//! the clock (an advertisement's timestamp). The fail-closed check does not:
//! it reads a flag the watchdog timer clears.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use carp::clock;
use carp::dataplane::{Baseline, Dataplane};
use carp::net::frames::{self, CARP_GROUP_V4, CARP_GROUP_V4_MAC, ETHERTYPE_ARP, ETHERTYPE_IPV4};
use carp::net::virtual_mac;
use carp::wire::Advertisement;

use crate::tools::is_root;

/// Runs per `BPF_PROG_TEST_RUN` call: the kernel averages over them.
const REPEAT: u32 = 200_000;
/// Alternating rounds per path; the median is reported.
const ROUNDS: usize = 9;
/// `BPF_PROG_TEST_RUN` presents frames as arriving on loopback.
const LOOPBACK: u32 = 1;
const VHID: u8 = 1;
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x64];
/// The goal for the pass-through and owned-VIP paths.
const GOAL_RATIO: f64 = 1.25;
const PASS_THROUGH: &str = "non-VIP pass-through";

struct Path {
    name: &'static str,
    frame: Vec<u8>,
    /// Run with this node MASTER of the vhid.
    master: bool,
    /// Held to the goal ratio.
    goal: bool,
}

pub fn run() -> Result<()> {
    if !is_root() {
        bail!("cargo xtask bench xdp loads BPF programs: run it as root");
    }
    crate::setup::run()?;
    let mut dataplane = Dataplane::load(None).context(
        "loading the XDP program (if setup just installed bpf-linker, run the benchmark again: this xtask was built without it)",
    )?;
    dataplane.add_vhid(LOOPBACK, VHID, false)?;
    dataplane.add_vip(LOOPBACK, VHID, VIP.into(), false)?;
    // A bound far longer than the run: the heartbeat never goes stale here.
    dataplane.beat(clock::now(), Duration::from_hours(1))?;
    println!(
        "{:<28} {:>10} {:>10} {:>7}  (median of {ROUNDS} rounds x {REPEAT} runs)",
        "path", "carp ns", "bare ns", "ratio"
    );
    let mut missed = Vec::new();
    let mut owned = None;
    for path in paths() {
        dataplane.set_role(LOOPBACK, VHID, path.master)?;
        let (carp, bare) = measure(&mut dataplane, Subject::Carp, &path.frame)?;
        let ratio = carp / bare;
        let mark = if path.goal && ratio > GOAL_RATIO {
            missed.push(path.name);
            "  > goal"
        } else {
            ""
        };
        println!(
            "{:<28} {carp:>10.1} {bare:>10.1} {ratio:>7.2}{mark}",
            path.name
        );
        if path.goal && path.master && path.name != PASS_THROUGH {
            owned = Some((path.name, carp));
        }
    }
    let frame = ipv4_udp(virtual_mac(VHID), VIP);
    let (clock, bare) = measure(&mut dataplane, Subject::Baseline(Baseline::Clock), &frame)?;
    println!(
        "{:<28} {clock:>10.1} {bare:>10.1} {:>7.2}",
        "bare + one clock read",
        clock / bare
    );
    println!(
        "goal: pass-through and VIP-to-owner within {GOAL_RATIO}x of the bare program; {}",
        if missed.is_empty() {
            "met".to_owned()
        } else {
            format!("missed by {}", missed.join(", "))
        }
    );
    if let Some((name, carp)) = owned {
        println!(
            "note: {name} reads the watchdog flag instead of the clock (a clock read \
             costs {:.1} ns over bare here); it is {:.1} ns over bare",
            clock - bare,
            carp - bare
        );
    }
    Ok(())
}

/// What a round measures against the bare program.
#[derive(Clone, Copy)]
enum Subject {
    Carp,
    Baseline(Baseline),
}

/// Median ns per packet of `subject` and of the bare program over
/// alternating rounds.
fn measure(dataplane: &mut Dataplane, subject: Subject, frame: &[u8]) -> Result<(f64, f64)> {
    let mut measured = Vec::with_capacity(ROUNDS);
    let mut bare = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let run = match subject {
            Subject::Carp => dataplane.run_on_frame(frame, REPEAT)?,
            Subject::Baseline(baseline) => dataplane.run_baseline(baseline, frame, REPEAT)?,
        };
        measured.push(nanos(run.per_run));
        bare.push(nanos(
            dataplane
                .run_baseline(Baseline::Bare, frame, REPEAT)?
                .per_run,
        ));
    }
    Ok((median(&mut measured), median(&mut bare)))
}

fn nanos(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e9
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn paths() -> Vec<Path> {
    let advert = Advertisement {
        vhid: VHID,
        advskew: 0,
        demote: 0,
        advbase: 1,
        counter: 1,
        digest: [0; 20],
    }
    .encode();
    let mut to_other = ipv4_udp(CLIENT_MAC, Ipv4Addr::new(192, 0, 2, 77));
    to_other[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    vec![
        Path {
            name: PASS_THROUGH,
            frame: to_other,
            master: true,
            goal: true,
        },
        Path {
            name: "VIP to owner (MASTER)",
            frame: ipv4_udp(virtual_mac(VHID), VIP),
            master: true,
            goal: true,
        },
        Path {
            name: "VIP to non-owner (BACKUP)",
            frame: ipv4_udp(virtual_mac(VHID), VIP),
            master: false,
            goal: false,
        },
        Path {
            name: "CARP advertisement",
            frame: frames::ethernet(
                CARP_GROUP_V4_MAC,
                virtual_mac(VHID),
                ETHERTYPE_IPV4,
                &frames::advert_v4(Ipv4Addr::new(192, 0, 2, 3), CARP_GROUP_V4, 1, &advert),
            ),
            master: false,
            goal: false,
        },
        Path {
            name: "ARP request for the VIP",
            frame: arp_request(VIP),
            master: true,
            goal: false,
        },
    ]
}

/// A UDP packet from the client to `to`, in a frame to `mac`.
fn ipv4_udp(mac: [u8; 6], to: Ipv4Addr) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&CLIENT.octets());
    ip.extend_from_slice(&to.octets());
    ip.extend_from_slice(&[0u8; 8]);
    frames::ethernet(mac, CLIENT_MAC, ETHERTYPE_IPV4, &ip)
}

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let mut arp = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&CLIENT.octets());
    arp.extend_from_slice(&[0u8; 6]);
    arp.extend_from_slice(&target.octets());
    frames::ethernet(frames::BROADCAST_MAC, CLIENT_MAC, ETHERTYPE_ARP, &arp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_an_odd_count() {
        assert!((median(&mut [3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((median(&mut [5.0, 1.0, 4.0, 2.0, 3.0]) - 3.0).abs() < f64::EPSILON);
    }

    #[test]
    fn every_path_has_an_ethernet_frame() {
        for path in paths() {
            assert!(path.frame.len() >= 14 + 28, "{}", path.name);
        }
    }
}
