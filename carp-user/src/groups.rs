//! Interface groups and their demote counters (OpenBSD `ifconfig -g`).
//!
//! Every carp interface is in group `carp`; a vhid advertises the sum of the
//! counters of its groups, capped at 255. Each counter is itself the sum of
//! named contributions ("carp0:link", "admin", ...) so an operator can see who
//! demoted a group and why. Pure: no I/O.

use std::collections::BTreeMap;

/// The group every carp interface belongs to.
pub const CARP_GROUP: &str = "carp";

/// The demote counters of every known group.
#[derive(Debug, Default, Clone)]
pub struct Groups {
    groups: BTreeMap<String, BTreeMap<String, u32>>,
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
    pub fn set_contribution(&mut self, group: &str, source: &str, value: u32) -> bool {
        let Some(contributions) = self.groups.get_mut(group) else {
            return false;
        };
        let before = contributions.get(source).copied().unwrap_or(0);
        if value == 0 {
            contributions.remove(source);
        } else {
            contributions.insert(source.to_owned(), value);
        }
        before != value
    }

    /// The counter of one group: the sum of its contributions.
    pub fn demote(&self, group: &str) -> u32 {
        self.groups.get(group).map_or(0, |c| {
            c.values().fold(0u32, |sum, v| sum.saturating_add(*v))
        })
    }

    /// What a vhid in `groups` advertises: the sum of their counters, capped at 255.
    pub fn demote_sum<S: AsRef<str>>(&self, groups: &[S]) -> u8 {
        let sum = groups
            .iter()
            .fold(0u32, |sum, g| sum.saturating_add(self.demote(g.as_ref())));
        u8::try_from(sum).unwrap_or(u8::MAX)
    }

    /// Every group with its contributions, for status output.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &BTreeMap<String, u32>)> {
        self.groups.iter().map(|(k, v)| (k.as_str(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carp_group_always_exists_and_starts_at_zero() {
        let groups = Groups::new(["outside"]);
        assert_eq!(groups.demote(CARP_GROUP), 0);
        assert_eq!(groups.demote("outside"), 0);
        assert_eq!(groups.iter().count(), 2);
    }

    #[test]
    fn counter_is_the_sum_of_contributions_and_reports_changes() {
        let mut groups = Groups::new(["outside"]);
        assert!(groups.set_contribution("outside", "carp0:link", 1));
        assert!(groups.set_contribution("outside", "admin", 5));
        assert!(!groups.set_contribution("outside", "admin", 5));
        assert_eq!(groups.demote("outside"), 6);
        assert!(groups.set_contribution("outside", "carp0:link", 0));
        assert_eq!(groups.demote("outside"), 5);
    }

    #[test]
    fn unknown_group_is_not_created() {
        let mut groups = Groups::new([]);
        assert!(!groups.set_contribution("nope", "admin", 3));
        assert_eq!(groups.demote("nope"), 0);
        assert_eq!(groups.iter().count(), 1);
    }

    #[test]
    fn vhid_demote_is_the_capped_sum_over_its_groups() {
        let mut groups = Groups::new(["a", "b"]);
        groups.set_contribution(CARP_GROUP, "boot", 128);
        groups.set_contribution("a", "admin", 100);
        assert_eq!(groups.demote_sum(&["carp", "a"]), 228);
        groups.set_contribution("b", "admin", 128);
        assert_eq!(groups.demote_sum(&["carp", "a", "b"]), 255);
        assert_eq!(groups.demote_sum(&["b"]), 128);
    }
}
