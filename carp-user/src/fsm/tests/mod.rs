//! Tests of the election for one vhid against PROTOCOL.md ("Timers and
//! election"), whose guaranteed-time-out rule was checked against OpenBSD's
//! `carp_proto_input_c`. The reference model below is written from that text
//! in whole 1/256 s units; it calls none of the machine's or `Interval`'s own
//! helpers, so a mistake in them cannot hide in both places.

mod election;
mod lifecycle;
mod simulation;
mod timers;

use std::time::Duration;

use super::{AdvertToSend, Config, Interval, Machine, Output, PeerAdvert, State, Transition};
use crate::clock::Mono;

/// Our counter cookie. Peers send [`PEER_COUNTER`], except in loop tests.
const COOKIE: u64 = 0x00c0_ffee_0000_0001;
const PEER_COUNTER: u64 = 0x5eed_0000_0000_0002;

/// Far from zero, so a machine that assumed time starts at 0 would show it.
const T0: Mono = Duration::from_secs(1_000);

/// 1/256 s, exactly.
const SKEW_NS: u64 = 3_906_250;

fn iv(advbase: u8, advskew: u8) -> Interval {
    Interval { advbase, advskew }
}

fn config(interval: Interval, preempt: bool) -> Config {
    Config { interval, preempt }
}

fn peer(interval: Interval, demote: u8) -> PeerAdvert {
    PeerAdvert {
        interval,
        demote,
        counter: PEER_COUNTER,
    }
}

fn ns(nanos: u64) -> Duration {
    Duration::from_nanos(nanos)
}

/// The last moment before `at`, when a timer due at `at` must not fire yet.
fn just_before(at: Mono) -> Mono {
    at.saturating_sub(ns(1))
}

/// PROTOCOL.md: interval = advbase + advskew/256 seconds; if 0, 1/256 s.
fn ref_interval(interval: Interval) -> Duration {
    let nanos = u64::from(interval.advbase) * 1_000_000_000 + u64::from(interval.advskew) * SKEW_NS;
    ns(if nanos == 0 { SKEW_NS } else { nanos })
}

/// PROTOCOL.md: BACKUP master-down timer = 3 x interval (local values).
fn ref_master_down(interval: Interval) -> Duration {
    ref_interval(interval) * 3
}

/// An advertised interval in 1/256 s as sent, without the 0/0 => 1/256 s rule:
/// OpenBSD compares the values in the header (0/0 is below 0/1), and "advbase,
/// then advskew" is the same order because advskew < 256.
fn ticks(interval: Interval) -> u32 {
    u32::from(interval.advbase) * 256 + u32::from(interval.advskew)
}

/// One received advertisement and the local settings it meets.
#[derive(Clone, Copy, Debug)]
struct Case {
    ours: Interval,
    theirs: Interval,
    our_demote: u8,
    their_demote: u8,
    preempt: bool,
}

impl Case {
    /// MASTER steps down iff (our interval >= theirs and d <= D) or d < D.
    fn master_steps_down(self) -> bool {
        let (d, our_d) = (self.their_demote, self.our_demote);
        (ticks(self.ours) >= ticks(self.theirs) && d <= our_d) || d < our_d
    }

    /// OpenBSD: the peer will be declared down anyway when its interval is
    /// longer than 3 x our advbase plus our advskew/256; never if our advbase
    /// is 0. (PROTOCOL.md says "3 x our advbase"; OpenBSD keeps our advskew.)
    fn peer_times_out(self) -> bool {
        let bound = 3 * u32::from(self.ours.advbase) * 256 + u32::from(self.ours.advskew);
        self.ours.advbase != 0 && ticks(self.theirs) > bound
    }

    /// BACKUP takes over at once iff d > D, or preempt and our interval <
    /// theirs and d >= D, or the peer is sure to time out.
    fn backup_takes_over(self) -> bool {
        let (d, our_d) = (self.their_demote, self.our_demote);
        d > our_d
            || (self.preempt && ticks(self.ours) < ticks(self.theirs) && d >= our_d)
            || self.peer_times_out()
    }

    fn config(self) -> Config {
        config(self.ours, self.preempt)
    }

    fn advert(self) -> PeerAdvert {
        peer(self.theirs, self.their_demote)
    }
}

/// A machine in BACKUP since `T0`.
fn backup(config: Config) -> Machine {
    let mut machine = Machine::new(config, COOKIE);
    machine.start(T0);
    assert_eq!(machine.state(), State::Backup);
    machine
}

/// A machine that became MASTER when its master-down timer fired, and when.
fn master(config: Config, demote: u8) -> (Machine, Mono) {
    let mut machine = backup(config);
    let at = T0 + ref_master_down(config.interval);
    machine.poll_timers(at, demote);
    assert_eq!(machine.state(), State::Master);
    (machine, at)
}

/// Everything the machine holds, to show that an event changed nothing.
fn snapshot(machine: &Machine) -> String {
    format!("{machine:?}")
}

/// What taking over must produce, from PROTOCOL.md: advertise at once with our
/// own interval and demote, and announce the VIPs.
fn takeover(from: State, reason: &'static str, ours: Interval, demote: u8) -> Output {
    Output {
        transition: Some(Transition {
            from,
            to: State::Master,
            reason,
        }),
        send_advert: Some(AdvertToSend {
            interval: ours,
            demote,
        }),
        announce: true,
    }
}

/// A plain state change that sends nothing.
fn change(from: State, to: State, reason: &'static str) -> Output {
    Output {
        transition: Some(Transition { from, to, reason }),
        ..Output::default()
    }
}

/// A MASTER's periodic or demote advertisement.
fn advert_only(interval: Interval, demote: u8, announce: bool) -> Output {
    Output {
        transition: None,
        send_advert: Some(AdvertToSend { interval, demote }),
        announce,
    }
}
