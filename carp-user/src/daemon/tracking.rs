//! Connectivity trackers at run time (ifstated built in): check results
//! from the tracker tasks, or the agent's own coherence checks, go through
//! each tracker's rise/fall hysteresis; a failing tracker demotes its group.

use std::time::Duration;

use tracing::{info, warn};

use super::Agent;
use crate::api::TrackerStatus;
use crate::clock::Mono;
use crate::config::{TrackConfig, TrackKind};
use crate::track::{CheckResult, Hysteresis, Roles};

/// One `[[track]]` entry and what it has seen.
pub struct Tracker {
    pub config: TrackConfig,
    hysteresis: Hysteresis,
    checks: u64,
    failed_checks: u64,
    last_latency: Duration,
    last_failure: Option<String>,
    /// Coherence trackers: when the agent checks next.
    coherence_due: Option<Mono>,
}

impl Tracker {
    pub fn new(config: TrackConfig, now: Mono) -> Self {
        let coherence_due = (config.kind == TrackKind::Coherence).then_some(now);
        Self {
            hysteresis: Hysteresis::new(config.rise, config.fall),
            config,
            checks: 0,
            failed_checks: 0,
            last_latency: Duration::ZERO,
            last_failure: None,
            coherence_due,
        }
    }

    pub fn verdict(&self) -> Option<bool> {
        self.hysteresis.verdict()
    }

    pub fn coherence_due(&self) -> Option<Mono> {
        self.coherence_due
    }

    fn source(&self) -> String {
        format!("track:{}", self.config.name)
    }

    pub fn status(&self) -> TrackerStatus {
        TrackerStatus {
            name: self.config.name.clone(),
            kind: self.config.kind.name().to_owned(),
            group: self.config.group.clone(),
            demote: self.config.demote,
            state: match self.verdict() {
                Some(true) => "up",
                Some(false) => "down",
                None => "unknown",
            }
            .to_owned(),
            checks: self.checks,
            failed_checks: self.failed_checks,
            last_latency_us: u64::try_from(self.last_latency.as_micros()).unwrap_or(u64::MAX),
            last_failure: self.last_failure.clone(),
        }
    }
}

impl Agent {
    /// A check result from a tracker task.
    pub(super) async fn on_check(&mut self, result: CheckResult) {
        if result.tracker >= self.trackers.len() {
            return;
        }
        self.observe(result.tracker, result.ok, result.latency, result.detail)
            .await;
    }

    /// Feeds one check into a tracker and demotes or promotes its group
    /// when its verdict changes.
    async fn observe(&mut self, index: usize, ok: bool, latency: Duration, detail: String) {
        let tracker = &mut self.trackers[index];
        tracker.checks += 1;
        tracker.last_latency = latency;
        if !ok {
            tracker.failed_checks += 1;
            tracker.last_failure = Some(detail);
        }
        let Some(up) = tracker.hysteresis.observe(ok) else {
            return;
        };
        let (group, source) = (tracker.config.group.clone(), tracker.source());
        let demote = tracker.config.demote;
        if up {
            info!("tracker {}: up", tracker.config.name);
        } else {
            warn!(
                "tracker {}: down ({}): demoting group {group} by {demote}",
                tracker.config.name,
                tracker.last_failure.as_deref().unwrap_or("failed")
            );
        }
        self.set_contribution(&group, &source, if up { 0 } else { demote })
            .await;
        self.check_ready().await;
    }

    /// Runs the coherence checks that are due. Only at the tracker's
    /// interval, never on each transition: during a failover the vhids of a
    /// group pass through mixed roles for a moment, which must not count.
    pub(super) async fn on_coherence_timers(&mut self, now: Mono) {
        for index in 0..self.trackers.len() {
            let Some(due) = self.trackers[index].coherence_due else {
                continue;
            };
            if due <= now {
                self.trackers[index].coherence_due =
                    Some(now + self.trackers[index].config.interval);
                self.check_coherence(index).await;
            }
        }
    }

    async fn check_coherence(&mut self, index: usize) {
        let group = &self.trackers[index].config.group;
        let states = self
            .vhids
            .iter()
            .filter(|v| v.config.groups.contains(group))
            .map(|v| v.machine.state());
        let roles = Roles::count(states);
        let ok = roles.is_coherent();
        let detail = if ok {
            String::new()
        } else {
            format!("group {group} is split: {roles}")
        };
        // Coherence is the agent's own state: it takes no time to check.
        self.observe(index, ok, Duration::ZERO, detail).await;
    }
}
