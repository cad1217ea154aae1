//! Where the agent puts each carpdev and vhid in the XDP program's arrays
//! (see carp-common): a carpdev's entry in `CARP_CARPDEVS` (at its home) or
//! `CARP_COLLIDED`, its block of `CARP_VHIDS`, the counter rows of
//! `CARP_COUNTERS` of its vhids and of itself (vhid 0), and the entry of
//! `CARP_BALANCED` of each balanced group.
//!
//! The layout lives in the maps; this is the agent's copy, built as it
//! configures and rebuilt from the maps when it adopts a pinned dataplane,
//! so it writes roles and reads counters where an earlier carpd put them.
//! Pure: the map I/O is in `read` at the bottom.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use aya::maps::{Array, HashMap, MapData, MapError};
use carp_common::{
    CARPDEV_HOMES, Carpdev, MAX_CARPDEVS, MAX_COUNTER_ROWS, MAX_GROUPS, VHID_ENTRIES,
    VHIDS_PER_CARPDEV, VhidKey, VhidState, carpdev_home,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("ifindex {ifindex}: more than {MAX_CARPDEVS} carpdevs")]
    TooManyCarpdevs { ifindex: u32 },
    #[error("vhid {vhid} on ifindex {ifindex}: the {MAX_COUNTER_ROWS} counter rows are taken")]
    TooManyVhids { ifindex: u32, vhid: u8 },
    #[error("vhid {vhid} on ifindex {ifindex} is not configured")]
    NotConfigured { ifindex: u32, vhid: u8 },
    #[error("vhid 0 on ifindex {ifindex}: vhids run from 1 to 255")]
    VhidZero { ifindex: u32 },
    #[error(
        "the group of vhid {vhid} on ifindex {ifindex}: more than {MAX_GROUPS} balanced groups"
    )]
    TooManyGroups { ifindex: u32, vhid: u8 },
    #[error("vhid {vhid} on ifindex {ifindex} leads no balanced group (add the group first)")]
    NoGroup { ifindex: u32, vhid: u8 },
}

/// Where a carpdev's entry goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Home {
    /// `CARP_CARPDEVS` at this index.
    Array(u32),
    /// `CARP_COLLIDED`, keyed by ifindex: another carpdev holds the home.
    Collided,
}

/// What registering a carpdev takes, written in this order: its vhid 0
/// entry (its counter row) before the entry that makes it visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewCarpdev {
    pub unconfigured: VhidWrite,
    pub home: Home,
    pub carpdev: Carpdev,
}

/// An entry of `CARP_VHIDS` to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VhidWrite {
    pub index: u32,
    pub state: VhidState,
}

/// One counter row and what it counts: vhid 0 for the carpdev's packets
/// tied to no configured vhid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterRow {
    pub row: u32,
    pub ifindex: u32,
    pub vhid: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Placed {
    carpdev: Carpdev,
    /// The counter row of vhid 0.
    counters: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// By ifindex.
    carpdevs: BTreeMap<u32, Placed>,
    /// Configured vhids by (ifindex, vhid), as last written.
    vhids: BTreeMap<(u32, u8), VhidState>,
    /// Balanced groups' entries in `CARP_BALANCED`, by their leader.
    groups: BTreeMap<(u32, u8), u8>,
}

impl Layout {
    /// Places the carpdev `ifindex`; None where it is placed already.
    pub fn register_carpdev(&mut self, ifindex: u32) -> Result<Option<NewCarpdev>, LayoutError> {
        if self.carpdevs.contains_key(&ifindex) {
            return Ok(None);
        }
        let blocks: BTreeSet<u32> = self.carpdevs.values().map(|p| p.carpdev.vhids).collect();
        let vhids = (0..VHID_ENTRIES)
            .step_by(VHIDS_PER_CARPDEV as usize)
            .find(|block| !blocks.contains(block))
            .ok_or(LayoutError::TooManyCarpdevs { ifindex })?;
        let counters = self
            .free_row()
            .ok_or(LayoutError::TooManyVhids { ifindex, vhid: 0 })?;
        let home = carpdev_home(ifindex);
        let home_taken = self
            .carpdevs
            .keys()
            .any(|other| carpdev_home(*other) == home);
        let carpdev = Carpdev { ifindex, vhids };
        self.carpdevs.insert(ifindex, Placed { carpdev, counters });
        Ok(Some(NewCarpdev {
            unconfigured: VhidWrite {
                index: vhids,
                state: VhidState::unconfigured(counters),
            },
            home: if home_taken {
                Home::Collided
            } else {
                Home::Array(home)
            },
            carpdev,
        }))
    }

    /// The entry of `CARP_BALANCED` for the group `leader` leads on the
    /// registered carpdev `ifindex`: the same one for the same group.
    pub fn add_group(&mut self, ifindex: u32, leader: u8) -> Result<u32, LayoutError> {
        if !self.carpdevs.contains_key(&ifindex) {
            return Err(LayoutError::NotConfigured {
                ifindex,
                vhid: leader,
            });
        }
        if let Some(index) = self.groups.get(&(ifindex, leader)) {
            return Ok(u32::from(*index));
        }
        let used: BTreeSet<u8> = self.groups.values().copied().collect();
        let index = (0..=u8::MAX).find(|index| !used.contains(index)).ok_or(
            LayoutError::TooManyGroups {
                ifindex,
                vhid: leader,
            },
        )?;
        self.groups.insert((ifindex, leader), index);
        Ok(u32::from(index))
    }

    /// Configures `vhid` on the registered carpdev `ifindex`, not owned;
    /// `leads_group` if it leads the group added with `add_group`. A vhid
    /// configured already keeps its counter row.
    pub fn add_vhid(
        &mut self,
        ifindex: u32,
        vhid: u8,
        leads_group: bool,
    ) -> Result<VhidWrite, LayoutError> {
        if vhid == 0 {
            return Err(LayoutError::VhidZero { ifindex });
        }
        let index = self.index(ifindex, vhid)?;
        let group = if leads_group {
            let group = self.groups.get(&(ifindex, vhid));
            Some(*group.ok_or(LayoutError::NoGroup { ifindex, vhid })?)
        } else {
            None
        };
        let counters = match self.vhids.get(&(ifindex, vhid)) {
            Some(state) => state.counters,
            None => self
                .free_row()
                .ok_or(LayoutError::TooManyVhids { ifindex, vhid })?,
        };
        let state = VhidState::configured(counters, group);
        self.vhids.insert((ifindex, vhid), state);
        Ok(VhidWrite { index, state })
    }

    /// This node's role for a configured vhid: the one write that changes
    /// it, in which nothing but the role differs from the entry before.
    pub fn set_role(
        &mut self,
        ifindex: u32,
        vhid: u8,
        master: bool,
    ) -> Result<VhidWrite, LayoutError> {
        let index = self.index(ifindex, vhid)?;
        let state = self
            .vhids
            .get_mut(&(ifindex, vhid))
            .ok_or(LayoutError::NotConfigured { ifindex, vhid })?;
        *state = state.with_role(master);
        Ok(VhidWrite {
            index,
            state: *state,
        })
    }

    /// The entry of every configured vhid as the agent holds it, with the
    /// carpdev and vhid it is for.
    pub fn vhid_writes(&self) -> impl Iterator<Item = (u32, u8, VhidWrite)> + '_ {
        self.vhids.iter().filter_map(|(&(ifindex, vhid), &state)| {
            let index = self.index(ifindex, vhid).ok()?;
            Some((ifindex, vhid, VhidWrite { index, state }))
        })
    }

    /// Every counter row in use and what it counts.
    pub fn rows(&self) -> impl Iterator<Item = CounterRow> + '_ {
        let carpdevs = self.carpdevs.iter().map(|(ifindex, placed)| CounterRow {
            row: placed.counters,
            ifindex: *ifindex,
            vhid: 0,
        });
        let vhids = self
            .vhids
            .iter()
            .map(|((ifindex, vhid), state)| CounterRow {
                row: state.counters,
                ifindex: *ifindex,
                vhid: *vhid,
            });
        carpdevs.chain(vhids)
    }

    /// The configured vhids and whether this node is MASTER of each.
    pub fn roles(&self) -> BTreeMap<VhidKey, bool> {
        self.vhids
            .iter()
            .map(|((ifindex, vhid), state)| (VhidKey::new(*ifindex, *vhid), state.is_master()))
            .collect()
    }

    /// The layout the maps hold: `carpdevs` from `CARP_CARPDEVS` and
    /// `CARP_COLLIDED` (empty homes included or not), `vhid` reading one
    /// entry of `CARP_VHIDS`.
    pub fn from_maps<E>(
        carpdevs: impl IntoIterator<Item = Carpdev>,
        mut vhid: impl FnMut(u32) -> Result<VhidState, E>,
    ) -> Result<Self, E> {
        let mut layout = Self::default();
        for carpdev in carpdevs {
            // Empty homes, and entries pointing outside the array (never).
            if carpdev.ifindex == 0 || carpdev.vhids >= VHID_ENTRIES {
                continue;
            }
            let counters = vhid(carpdev.vhids)?.counters;
            layout
                .carpdevs
                .insert(carpdev.ifindex, Placed { carpdev, counters });
            for number in 1..=u8::MAX {
                let state = vhid(carpdev.vhids + u32::from(number))?;
                if state.is_configured() {
                    // A role the watchdog demoted is no one's: the agent
                    // decides again.
                    let state = state.with_role(state.is_master());
                    layout.vhids.insert((carpdev.ifindex, number), state);
                    if let Some(group) = state.led_group() {
                        layout.groups.insert((carpdev.ifindex, number), group);
                    }
                }
            }
        }
        Ok(layout)
    }

    fn index(&self, ifindex: u32, vhid: u8) -> Result<u32, LayoutError> {
        self.carpdevs
            .get(&ifindex)
            .map(|placed| placed.carpdev.vhids + u32::from(vhid))
            .ok_or(LayoutError::NotConfigured { ifindex, vhid })
    }

    fn free_row(&self) -> Option<u32> {
        let used: BTreeSet<u32> = self.rows().map(|row| row.row).collect();
        (0..MAX_COUNTER_ROWS).find(|row| !used.contains(row))
    }
}

/// The layout in the program's maps (carpd's own, or pinned ones).
pub fn read<T: Borrow<MapData>>(
    carpdevs: &Array<T, Carpdev>,
    collided: &HashMap<T, u32, Carpdev>,
    vhids: &Array<T, VhidState>,
) -> Result<Layout, MapError> {
    let mut entries = Vec::new();
    for home in 0..CARPDEV_HOMES {
        entries.push(carpdevs.get(&home, 0)?);
    }
    for entry in collided {
        entries.push(entry?.1);
    }
    Layout::from_maps(entries, |index| vhids.get(&index, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carpdevs_get_their_home_a_block_and_a_row() {
        let mut layout = Layout::default();
        let first = layout
            .register_carpdev(3)
            .expect("room")
            .expect("a new carpdev");
        assert_eq!(first.home, Home::Array(3));
        assert_eq!(
            first.carpdev,
            Carpdev {
                ifindex: 3,
                vhids: 0
            }
        );
        assert_eq!(
            first.unconfigured,
            VhidWrite {
                index: 0,
                state: VhidState::unconfigured(0)
            }
        );
        assert_eq!(layout.register_carpdev(3), Ok(None), "once");
        let second = layout
            .register_carpdev(7)
            .expect("room")
            .expect("a new carpdev");
        assert_eq!(second.home, Home::Array(7));
        assert_eq!(second.carpdev.vhids, VHIDS_PER_CARPDEV);
        assert_eq!(second.unconfigured.state.counters, 1);
    }

    #[test]
    fn a_carpdev_whose_home_is_taken_goes_to_the_collided_map() {
        let mut layout = Layout::default();
        layout.register_carpdev(5).expect("room");
        let other = layout
            .register_carpdev(5 + CARPDEV_HOMES)
            .expect("room")
            .expect("a new carpdev");
        assert_eq!(other.home, Home::Collided);
    }

    #[test]
    fn vhids_get_rows_and_keep_them() {
        let mut layout = Layout::default();
        layout.register_carpdev(2).expect("room");
        let write = layout.add_vhid(2, 9, false).expect("configured");
        assert_eq!(write.index, 9);
        assert_eq!(write.state, VhidState::configured(1, None));
        assert_eq!(
            layout.add_vhid(2, 9, false).expect("configured"),
            write,
            "again"
        );
        assert_eq!(
            layout.add_vhid(2, 0, false),
            Err(LayoutError::VhidZero { ifindex: 2 })
        );
        assert_eq!(
            layout.add_vhid(4, 1, false),
            Err(LayoutError::NotConfigured {
                ifindex: 4,
                vhid: 1
            }),
            "carpdev not registered"
        );
    }

    #[test]
    fn a_group_leader_names_its_group() {
        let mut layout = Layout::default();
        layout.register_carpdev(2).expect("room");
        assert_eq!(
            layout.add_vhid(2, 3, true),
            Err(LayoutError::NoGroup {
                ifindex: 2,
                vhid: 3
            }),
            "group first"
        );
        assert_eq!(layout.add_group(2, 3), Ok(0));
        assert_eq!(layout.add_group(2, 3), Ok(0), "once");
        assert_eq!(layout.add_group(2, 7), Ok(1));
        let leader = layout.add_vhid(2, 3, true).expect("configured");
        assert_eq!(leader.state.led_group(), Some(0));
        assert_eq!(
            layout.add_group(9, 1),
            Err(LayoutError::NotConfigured {
                ifindex: 9,
                vhid: 1
            }),
            "carpdev not registered"
        );
    }

    #[test]
    fn a_role_change_rewrites_only_the_role() {
        let mut layout = Layout::default();
        layout.register_carpdev(2).expect("room");
        layout.add_group(2, 1).expect("room");
        let added = layout.add_vhid(2, 1, true).expect("configured");
        let master = layout.set_role(2, 1, true).expect("configured");
        assert_eq!(master.index, added.index);
        assert_eq!(master.state, added.state.with_role(true));
        assert_eq!(layout.roles().get(&VhidKey::new(2, 1)), Some(&true));
        assert_eq!(
            layout.set_role(2, 2, true),
            Err(LayoutError::NotConfigured {
                ifindex: 2,
                vhid: 2
            })
        );
    }

    #[test]
    fn rows_name_what_they_count() {
        let mut layout = Layout::default();
        layout.register_carpdev(2).expect("room");
        layout.add_vhid(2, 1, false).expect("configured");
        layout.add_vhid(2, 4, false).expect("configured");
        let rows: Vec<_> = layout.rows().map(|r| (r.row, r.ifindex, r.vhid)).collect();
        assert_eq!(rows, [(0, 2, 0), (1, 2, 1), (2, 2, 4)]);
    }

    #[test]
    fn counter_rows_run_out() {
        let mut layout = Layout::default();
        for ifindex in 1..=8 {
            layout.register_carpdev(ifindex).expect("room");
        }
        let mut added = 0u32;
        let error = 'outer: {
            for ifindex in 1..=8 {
                for vhid in 1..=u8::MAX {
                    if let Err(error) = layout.add_vhid(ifindex, vhid, false) {
                        break 'outer error;
                    }
                    added += 1;
                }
            }
            panic!("never ran out");
        };
        assert_eq!(added, MAX_COUNTER_ROWS - 8);
        assert!(matches!(error, LayoutError::TooManyVhids { .. }), "{error}");
    }

    #[test]
    fn the_layout_reads_back_from_the_maps_it_wrote() {
        let mut layout = Layout::default();
        let mut homes = vec![Carpdev::default(); CARPDEV_HOMES as usize];
        let mut collided = Vec::new();
        let mut vhids = vec![VhidState::default(); VHID_ENTRIES as usize];
        for ifindex in [2, 3, 2 + CARPDEV_HOMES] {
            let new = layout
                .register_carpdev(ifindex)
                .expect("room")
                .expect("a new carpdev");
            vhids[new.unconfigured.index as usize] = new.unconfigured.state;
            match new.home {
                Home::Array(home) => homes[home as usize] = new.carpdev,
                Home::Collided => collided.push(new.carpdev),
            }
            layout.add_group(ifindex, 1).expect("room");
            for vhid in [1, 200] {
                let write = layout
                    .add_vhid(ifindex, vhid, vhid == 1)
                    .expect("configured");
                vhids[write.index as usize] = write.state;
            }
        }
        let write = layout.set_role(3, 200, true).expect("configured");
        vhids[write.index as usize] = write.state;
        let read = Layout::from_maps(homes.into_iter().chain(collided), |index| {
            Ok::<_, ()>(vhids[index as usize])
        })
        .expect("every entry reads");
        assert_eq!(read, layout);
    }
}
