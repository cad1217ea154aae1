//! The agent's heartbeat to the XDP program, and what the program tells us
//! back about VIP claims.
//!
//! The program treats every VIP as not owned once the last beat is older
//! than the bound, so an agent that dies or hangs as MASTER stops taking
//! traffic its peer will own (fail closed). The bound is the shortest
//! master-down time of our vhids. An elected master advertises the shortest
//! interval, so its backups take over no sooner, but later by the difference
//! of the two (3 s against 4.17 s at advskew 0 and 100): after a crash the
//! VIPs go unanswered for that long rather than being answered by two nodes.
//! (A master kept by `preempt = false` against a backup with a shorter
//! interval is the exception: there the two overlap for the difference.)

use std::time::Duration;

use tracing::warn;

use super::Agent;
use super::vhid::worth_logging;
use crate::clock::Mono;
use crate::dataplane::VipConflict;
use crate::fsm::Interval;
use crate::net::format_mac;

/// Beats per bound: one late wake-up of the agent never stales it.
const BEATS_PER_BOUND: u32 = 4;
/// A floor for very short intervals (advbase 0): below this a scheduling
/// hiccup of the agent, not a dead agent, would drop the VIPs' traffic.
const MIN_BOUND: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    bound: Duration,
    next: Mono,
}

impl Heartbeat {
    /// For vhids advertising at `intervals`; the first beat is due at once.
    pub fn new(intervals: impl IntoIterator<Item = Interval>) -> Self {
        let bound = intervals
            .into_iter()
            .map(Interval::master_down)
            .min()
            .unwrap_or(MIN_BOUND)
            .max(MIN_BOUND);
        Self {
            bound,
            next: Duration::ZERO,
        }
    }

    pub fn bound(&self) -> Duration {
        self.bound
    }

    pub fn next(&self) -> Mono {
        self.next
    }
}

impl Agent {
    pub(super) fn beat_if_due(&mut self, now: Mono) {
        if now < self.heartbeat.next {
            return;
        }
        let bound = self.heartbeat.bound();
        self.heartbeat.next = now + bound / BEATS_PER_BOUND;
        if let Err(error) = self.dataplane.beat(now, bound) {
            warn!("cannot write the XDP heartbeat: {error}");
        }
    }

    /// Another MAC answered for a VIP we own: a misconfigured host, or a
    /// second master nobody hears. Counted, logged (thinned), hooked.
    pub(super) fn on_conflict(&mut self, conflict: &VipConflict) {
        let Some(index) = self.vhid_on(conflict.ifindex, conflict.vhid) else {
            return;
        };
        let vhid = &mut self.vhids[index];
        let mac = format_mac(&conflict.mac);
        vhid.counters.vip_conflicts += 1;
        vhid.counters.last_conflict = Some(format!("{} claimed by {mac}", conflict.vip));
        if worth_logging(vhid.counters.vip_conflicts) {
            warn!(
                "{}: {} claimed by {mac}, not by our virtual MAC ({} so far)",
                vhid.name(),
                conflict.vip,
                vhid.counters.vip_conflicts
            );
        }
        self.hooks
            .conflict(vhid.name(), vhid.config.vhid, conflict.vip, &mac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(advbase: u8, advskew: u8) -> Interval {
        Interval { advbase, advskew }
    }

    #[test]
    fn bound_is_the_shortest_master_down_time_with_a_floor() {
        let heartbeat = Heartbeat::new([interval(1, 100), interval(1, 0)]);
        assert_eq!(heartbeat.bound(), Duration::from_secs(3));
        assert_eq!(heartbeat.next(), Duration::ZERO, "first beat at once");
        let fast = Heartbeat::new([interval(0, 1)]);
        assert_eq!(fast.bound(), MIN_BOUND, "3/256 s is below the floor");
        assert_eq!(Heartbeat::new([]).bound(), MIN_BOUND);
    }
}
