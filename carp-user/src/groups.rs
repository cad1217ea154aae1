//! Interface groups and their demote counters (OpenBSD `ifconfig -g`).
//!
//! Every carp interface is in group `carp`; a vhid advertises the sum of the
//! counters of its groups, capped at 255. Each counter is itself the sum of
//! named contributions ("admin", "boot", "carp0:carpdev", "track:uplink")
//! so an operator can see who demoted a group, by how much and since when.
//! Pure: no I/O; time comes in as an argument.

use std::collections::BTreeMap;

use crate::clock::Mono;

/// The group every carp interface belongs to.
pub const CARP_GROUP: &str = "carp";
/// The contribution `carpctl group NAME demote|promote` changes.
pub const ADMIN: &str = "admin";
/// OpenBSD's `carpdemote` bound for one admin step.
pub const MAX_ADMIN_STEP: u32 = 128;

/// One source's share of a group's counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contribution {
    pub value: u32,
    /// When it last changed.
    pub since: Mono,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("no group {0} (groups come from the configuration)")]
    Unknown(String),
    #[error("{step} is more than {MAX_ADMIN_STEP} at once")]
    StepTooLarge { step: u32 },
}

/// The demote counters of every known group.
#[derive(Debug, Default, Clone)]
pub struct Groups {
    groups: BTreeMap<String, BTreeMap<String, Contribution>>,
}

impl Groups {
    /// Groups named in the configuration, all at zero.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut groups = Self::default();
        for name in names {
            groups.groups.entry(name.to_owned()).or_default();
        }
        groups.groups.entry(CARP_GROUP.to_owned()).or_default();
        groups
    }

    /// Sets the contribution of `source` to `group` (0 removes it). Returns
    /// whether the group's counter changed; unknown groups are ignored and
    /// return false, since groups only come from the configuration.
    pub fn set_contribution(&mut self, group: &str, source: &str, value: u32, now: Mono) -> bool {
        let Some(contributions) = self.groups.get_mut(group) else {
            return false;
        };
        let before = contributions.get(source).map_or(0, |c| c.value);
        if before == value {
            return false;
        }
        if value == 0 {
            contributions.remove(source);
        } else {
            contributions.insert(source.to_owned(), Contribution { value, since: now });
        }
        true
    }

    /// `carpctl group NAME demote N` (positive) or `promote N` (negative):
    /// moves the admin contribution, never below zero. Returns the new
    /// admin contribution.
    pub fn adjust_admin(&mut self, group: &str, step: i64, now: Mono) -> Result<u32, GroupError> {
        let magnitude = u32::try_from(step.unsigned_abs()).unwrap_or(u32::MAX);
        if magnitude > MAX_ADMIN_STEP {
            return Err(GroupError::StepTooLarge { step: magnitude });
        }
        let current = self
            .groups
            .get(group)
            .ok_or_else(|| GroupError::Unknown(group.to_owned()))?
            .get(ADMIN)
            .map_or(0, |c| c.value);
        let new = if step >= 0 {
            current.saturating_add(magnitude)
        } else {
            current.saturating_sub(magnitude)
        };
        self.set_contribution(group, ADMIN, new, now);
        Ok(new)
    }

    /// The counter of one group: the sum of its contributions.
    pub fn demote(&self, group: &str) -> u32 {
        self.groups.get(group).map_or(0, |c| {
            c.values().fold(0u32, |sum, c| sum.saturating_add(c.value))
        })
    }

    /// What a vhid in `groups` advertises: the sum of their counters, capped at 255.
    pub fn demote_sum<S: AsRef<str>>(&self, groups: &[S]) -> u8 {
        let sum = groups
            .iter()
            .fold(0u32, |sum, g| sum.saturating_add(self.demote(g.as_ref())));
        u8::try_from(sum).unwrap_or(u8::MAX)
    }

    /// Every group's counter, for spotting which ones a change moved.
    pub fn counters(&self) -> BTreeMap<String, u32> {
        self.groups
            .keys()
            .map(|name| (name.clone(), self.demote(name)))
            .collect()
    }

    /// Every group with its contributions, for status output.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &BTreeMap<String, Contribution>)> {
        self.groups.iter().map(|(k, v)| (k.as_str(), v))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T0: Mono = Duration::from_secs(10);
    const T1: Mono = Duration::from_secs(20);

    #[test]
    fn carp_group_always_exists_and_starts_at_zero() {
        let groups = Groups::new(["outside"]);
        assert_eq!(groups.demote(CARP_GROUP), 0);
        assert_eq!(groups.demote("outside"), 0);
        assert_eq!(groups.iter().count(), 2);
        let names: Vec<&str> = groups.iter().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            ["carp", "outside"],
            "no group beyond the configured ones"
        );
    }

    #[test]
    fn counter_is_the_sum_of_contributions_and_reports_changes() {
        let mut groups = Groups::new(["outside"]);
        assert!(groups.set_contribution("outside", "carp0:carpdev", 1, T0));
        assert!(groups.set_contribution("outside", "admin", 5, T0));
        assert!(!groups.set_contribution("outside", "admin", 5, T1));
        assert_eq!(groups.demote("outside"), 6);
        assert!(groups.set_contribution("outside", "carp0:carpdev", 0, T1));
        assert!(!groups.set_contribution("outside", "carp0:carpdev", 0, T1));
        assert_eq!(groups.demote("outside"), 5);
        let (_, contributions) = groups
            .iter()
            .find(|(name, _)| *name == "outside")
            .expect("outside exists");
        assert_eq!(
            contributions.get("admin"),
            Some(&Contribution {
                value: 5,
                since: T0
            }),
            "an unchanged value keeps its time"
        );
    }

    #[test]
    fn unknown_group_is_not_created() {
        let mut groups = Groups::new([]);
        assert!(!groups.set_contribution("nope", "admin", 3, T0));
        assert_eq!(groups.demote("nope"), 0);
        assert_eq!(groups.iter().count(), 1);
        assert_eq!(
            groups.adjust_admin("nope", 1, T0),
            Err(GroupError::Unknown("nope".into()))
        );
    }

    #[test]
    fn vhid_demote_is_the_capped_sum_over_its_groups() {
        let mut groups = Groups::new(["a", "b"]);
        groups.set_contribution(CARP_GROUP, "boot", 128, T0);
        groups.set_contribution("a", "admin", 100, T0);
        assert_eq!(groups.demote_sum(&["carp", "a"]), 228);
        groups.set_contribution("b", "admin", 128, T0);
        assert_eq!(groups.demote_sum(&["carp", "a", "b"]), 255);
        assert_eq!(groups.demote_sum(&["b"]), 128);
    }

    #[test]
    fn admin_demote_and_promote_never_go_below_zero() {
        let mut groups = Groups::new(["outside"]);
        groups.set_contribution("outside", "track:uplink", 1, T0);
        assert_eq!(groups.adjust_admin("outside", 50, T0), Ok(50));
        assert_eq!(groups.demote("outside"), 51);
        assert_eq!(groups.adjust_admin("outside", -20, T1), Ok(30));
        assert_eq!(groups.adjust_admin("outside", -128, T1), Ok(0));
        assert_eq!(
            groups.demote("outside"),
            1,
            "promote takes back only what the admin gave"
        );
        assert_eq!(groups.adjust_admin("outside", -1, T1), Ok(0));
        assert_eq!(
            groups.adjust_admin("outside", 129, T1),
            Err(GroupError::StepTooLarge { step: 129 })
        );
        assert_eq!(
            groups.adjust_admin("outside", -129, T1),
            Err(GroupError::StepTooLarge { step: 129 })
        );
        assert_eq!(groups.counters().get("outside"), Some(&1));
    }
}
