//! The status snapshot `carpctl status` and `/metrics` show.

use std::collections::BTreeMap;

use tracing::warn;

use super::Agent;
use crate::api::{
    BootStatus, CarpdevStatus, ContributionStatus, GroupStatus, HookCounters, Status,
};
use crate::clock;

impl Agent {
    pub(super) fn status(&self) -> Status {
        let mut interfaces: Vec<_> = self
            .vhids
            .iter()
            .enumerate()
            .map(|(index, vhid)| vhid.status(self.demote_of(index)))
            .collect();
        let mut carpdevs: BTreeMap<u32, CarpdevStatus> = self
            .carpdevs
            .iter()
            .map(|(index, name)| {
                let drops = self.carpdev_drops.get(index).cloned().unwrap_or_default();
                (
                    *index,
                    CarpdevStatus {
                        name: name.clone(),
                        drops,
                    },
                )
            })
            .collect();
        match self.dataplane.counters() {
            Ok(counters) => {
                for counter in counters {
                    let reason = counter.verdict.label().to_owned();
                    let row = self.vhid_on(counter.ifindex, counter.vhid);
                    if counter.verdict.is_ownership() {
                        if let Some(row) = row {
                            *interfaces[row].counters.frames.entry(reason).or_insert(0) +=
                                counter.packets;
                        }
                        continue;
                    }
                    if !counter.verdict.is_drop() {
                        continue;
                    }
                    let drops = match row {
                        Some(row) if counter.vhid != 0 => &mut interfaces[row].counters.drops,
                        _ => match carpdevs.get_mut(&counter.ifindex) {
                            Some(carpdev) => &mut carpdev.drops,
                            None => continue,
                        },
                    };
                    *drops.entry(reason).or_insert(0) += counter.packets;
                }
            }
            Err(error) => warn!("reading XDP counters: {error}"),
        }
        let hooks = self.hooks.stats();
        Status {
            interfaces,
            carpdevs: carpdevs.into_values().collect(),
            groups: self.groups_status(),
            trackers: self.trackers.iter().map(super::Tracker::status).collect(),
            hooks: HookCounters {
                runs: hooks.runs,
                failures: hooks.failures,
            },
            boot: BootStatus {
                ready: !self.boot.held(),
                waiting_for: if self.boot.held() {
                    self.boot_waiting_for()
                } else {
                    Vec::new()
                },
            },
            sync: self
                .sync
                .as_ref()
                .map(|sync| Box::new(sync.status.borrow().clone())),
        }
    }

    pub(super) fn groups_status(&self) -> Vec<GroupStatus> {
        let now = clock::now();
        self.groups
            .iter()
            .map(|(name, contributions)| GroupStatus {
                name: name.to_owned(),
                demote: self.groups.demote(name),
                contributions: contributions
                    .iter()
                    .map(|(source, contribution)| ContributionStatus {
                        source: source.clone(),
                        value: contribution.value,
                        for_seconds: now.saturating_sub(contribution.since).as_secs(),
                    })
                    .collect(),
                members: self
                    .vhids
                    .iter()
                    .filter(|v| v.config.groups.iter().any(|g| g == name))
                    .map(|v| v.name().to_owned())
                    .collect(),
            })
            .collect()
    }
}
