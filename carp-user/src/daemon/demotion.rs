//! Group demote counters at run time: every contribution change goes
//! through `set_contribution`, which advertises the new demote on every
//! MASTER vhid it touches at once (PROTOCOL.md) and runs the demote hook.
//! The automatic contributions live here: carpdev carrier, send errors and
//! the boot interlock.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{info, warn};

use super::Agent;
use super::notify;
use crate::clock::{self, Mono};
use crate::groups::CARP_GROUP;
use crate::net::link_monitor::CarrierEvent;

/// What the boot interlock adds to `carp` until the node is ready
/// (OpenBSD's /etc/rc does the same around netstart).
pub const BOOT_DEMOTE: u32 = 128;
const BOOT_SOURCE: &str = "boot";
/// Rounds of `settle_send_errors` per event.
const MAX_SETTLE_ROUNDS: usize = 4;

/// The boot interlock's state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Boot {
    /// While held: when it gives up waiting.
    deadline: Option<Mono>,
    timeout: Duration,
}

impl Boot {
    pub fn new(timeout: Duration) -> Self {
        Self {
            deadline: None,
            timeout,
        }
    }

    pub fn deadline(&self) -> Option<Mono> {
        self.deadline
    }

    pub fn held(&self) -> bool {
        self.deadline.is_some()
    }

    pub fn expired(&self, now: Mono) -> bool {
        self.deadline.is_some_and(|deadline| deadline <= now)
    }
}

impl Agent {
    /// Sets one contribution and carries out what follows from the change.
    pub(super) async fn set_contribution(&mut self, group: &str, source: &str, value: u32) {
        let before = self.groups.counters();
        if self
            .groups
            .set_contribution(group, source, value, clock::now())
        {
            self.after_demote_change(&before).await;
        }
    }

    /// Logs and hooks every group counter that moved, and makes every
    /// MASTER vhid whose demote changed advertise it at once.
    pub(super) async fn after_demote_change(&mut self, before: &BTreeMap<String, u32>) {
        let after = self.groups.counters();
        for (group, new) in &after {
            let old = before.get(group).copied().unwrap_or(0);
            if old != *new {
                info!("group {group}: demote {old} -> {new}");
                self.hooks.demote(group, old, *new);
            }
        }
        let now = clock::now();
        for index in 0..self.vhids.len() {
            let groups = &self.vhids[index].config.groups;
            let old: u32 = groups
                .iter()
                .map(|g| before.get(g).copied().unwrap_or(0))
                .fold(0, u32::saturating_add);
            let new = self.demote_of(index);
            if u8::try_from(old).unwrap_or(u8::MAX) != new {
                let output = self.vhids[index].machine.demote_changed(now, new);
                self.apply(index, output).await;
            }
        }
    }

    /// Adds or removes `value` from `source` on every group of a vhid, as
    /// OpenBSD's `carp_group_demote_adj` does for an interface.
    async fn set_vhid_contribution(&mut self, index: usize, source: &str, value: u32) {
        let before = self.groups.counters();
        let now = clock::now();
        let mut changed = false;
        for group in &self.vhids[index].config.groups {
            changed |= self.groups.set_contribution(group, source, value, now);
        }
        if changed {
            self.after_demote_change(&before).await;
        }
    }

    /// Counts one send. A resulting demotion is only noted here and carried
    /// out by `settle_send_errors` once the current event is handled: its
    /// adverts would otherwise count sends again from inside this one.
    pub(super) fn note_send(&mut self, index: usize, sent: bool) {
        if let Some(demoted) = self.vhids[index].send_health.record(sent) {
            self.send_error_changes.push((index, demoted));
        }
    }

    /// Applies the send-error demotions noted while handling an event.
    pub(super) async fn settle_send_errors(&mut self) {
        // Each round can only flip a vhid's demotion again after three more
        // sends; the bound guards against a bug, not a real loop.
        for _ in 0..MAX_SETTLE_ROUNDS {
            if self.send_error_changes.is_empty() {
                return;
            }
            for (index, demoted) in std::mem::take(&mut self.send_error_changes) {
                self.set_send_error_demotion(index, demoted).await;
            }
        }
        self.send_error_changes.clear();
    }

    async fn set_send_error_demotion(&mut self, index: usize, demoted: bool) {
        {
            let source = format!("{}:send-errors", self.vhids[index].name());
            if demoted {
                warn!(
                    "{}: advertisements keep failing: demoting its groups",
                    self.vhids[index].name()
                );
            } else {
                info!(
                    "{}: advertisements go out again: demotion undone",
                    self.vhids[index].name()
                );
            }
            self.set_vhid_contribution(index, &source, u32::from(demoted))
                .await;
        }
    }

    /// The carpdev's carrier +1 on the vhid's groups while it is gone.
    pub(super) async fn set_carpdev_demotion(&mut self, index: usize, demoted: bool) {
        let source = format!("{}:carpdev", self.vhids[index].name());
        self.set_vhid_contribution(index, &source, u32::from(demoted))
            .await;
    }

    /// A carpdev lost or regained its carrier: its vhids stop (INIT, and
    /// their groups demoted) or start again, like OpenBSD's `carp_carpdev_state`.
    pub(super) async fn on_carrier(&mut self, event: CarrierEvent) {
        let now = clock::now();
        if let Some(sync) = &self.sync
            && sync.syncdev_index == event.ifindex
        {
            sync.link(event.carrier).await;
        }
        for index in 0..self.vhids.len() {
            let vhid = &mut self.vhids[index];
            if vhid.carpdev_index != event.ifindex || vhid.carpdev_carrier == event.carrier {
                continue;
            }
            vhid.carpdev_carrier = event.carrier;
            if event.carrier {
                info!(
                    "{}: {} has a carrier again",
                    vhid.name(),
                    vhid.config.carpdev
                );
                self.set_carpdev_demotion(index, false).await;
                if !self.vhids[index].admin_down {
                    let output = self.vhids[index].machine.start(now);
                    self.apply(index, output).await;
                }
            } else {
                warn!("{}: {} lost its carrier", vhid.name(), vhid.config.carpdev);
                let output = vhid.machine.stop();
                self.apply(index, output).await;
                self.set_carpdev_demotion(index, true).await;
            }
        }
    }

    pub(super) fn begin_boot(&mut self, now: Mono) {
        self.boot.deadline = Some(now + self.boot.timeout);
        // Nothing has been advertised yet: no change to propagate.
        self.groups
            .set_contribution(CARP_GROUP, BOOT_SOURCE, BOOT_DEMOTE, now);
        info!(
            "boot interlock: carp demoted by {BOOT_DEMOTE} until ready (at most {} s)",
            self.boot.timeout.as_secs()
        );
    }

    /// What readiness still waits for.
    pub(super) fn boot_waiting_for(&self) -> Vec<String> {
        self.trackers
            .iter()
            .filter(|t| t.verdict().is_none())
            .map(|t| format!("tracker {}", t.config.name))
            .collect()
    }

    /// Releases the interlock once every tracker has a first verdict.
    pub(super) async fn check_ready(&mut self) {
        if self.boot.held() && self.boot_waiting_for().is_empty() {
            info!("boot interlock: ready");
            self.release_boot().await;
        }
    }

    /// Releases the interlock: ready, or its bound ran out.
    pub(super) async fn release_boot(&mut self) {
        if !self.boot.held() {
            return;
        }
        let waiting = self.boot_waiting_for();
        if !waiting.is_empty() {
            warn!(
                "boot interlock: released after {} s although still waiting for {}",
                self.boot.timeout.as_secs(),
                waiting.join(", ")
            );
        }
        self.boot.deadline = None;
        self.set_contribution(CARP_GROUP, BOOT_SOURCE, 0).await;
        notify::ready();
    }
}
