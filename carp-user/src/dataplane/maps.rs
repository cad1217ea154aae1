//! What the agent writes into the program's maps (carpdevs, vhids, roles,
//! VIPs, balanced groups, the heartbeat) and reads back (counters), where
//! `layout` says each carpdev and vhid lives.

use std::net::IpAddr;
use std::time::Duration;

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use carp_common::{
    AgentHeartbeat, BEAT_EXPIRIES_AT, BEAT_FRAME_LEN, BalanceGroup, Carpdev, ETH_P_CARP_BEAT,
    Verdict, VhidState, VipKey, VipOwner, counter_index, vip_filter_bit,
};

use super::layout::{self, Home, Layout, VhidWrite};
use super::{
    AGENT_MAP, BALANCED_MAP, CARPDEVS_MAP, COLLIDED_MAP, COUNTERS_MAP, Dataplane, DataplaneError,
    VHIDS_MAP, VIP_FILTER_MAP, VIPS_MAP, XdpCounter, vip_key,
};
use crate::clock::Mono;

/// The program's answer to a heartbeat it took.
const XDP_DROP: u32 = 1;

fn map_error(what: impl Into<String>) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    let what = what.into();
    move |source| DataplaneError::Map {
        what: what.clone(),
        source,
    }
}

impl Dataplane {
    /// The layout the program's maps hold: empty for a fresh dataplane,
    /// an earlier carpd's for pinned maps.
    pub(super) fn read_layout(&self) -> Result<Layout, DataplaneError> {
        let carpdevs: Array<&MapData, Carpdev> =
            Array::try_from(self.map(CARPDEVS_MAP)?).map_err(map_error(CARPDEVS_MAP))?;
        let collided: HashMap<&MapData, u32, Carpdev> =
            HashMap::try_from(self.map(COLLIDED_MAP)?).map_err(map_error(COLLIDED_MAP))?;
        let vhids: Array<&MapData, VhidState> =
            Array::try_from(self.map(VHIDS_MAP)?).map_err(map_error(VHIDS_MAP))?;
        layout::read(&carpdevs, &collided, &vhids).map_err(map_error("reading the XDP layout"))
    }

    fn map(&self, name: &'static str) -> Result<&aya::maps::Map, DataplaneError> {
        self.ebpf.map(name).ok_or(DataplaneError::Missing(name))
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, DataplaneError> {
        self.ebpf.map_mut(name).ok_or(DataplaneError::Missing(name))
    }

    /// Makes the carpdev `ifindex` known to the program, if it is not yet:
    /// before the program is attached to it, so every verdict there is
    /// counted, and before any vhid or VIP on it.
    pub(super) fn register_carpdev(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        let Some(new) = self.layout.register_carpdev(ifindex)? else {
            return Ok(());
        };
        // Its counter row first: the program counts there once it finds
        // the carpdev.
        self.write_vhid(ifindex, 0, new.unconfigured)?;
        let what = format!("registering the carpdev with ifindex {ifindex}");
        match new.home {
            Home::Array(home) => {
                let mut carpdevs: Array<&mut MapData, Carpdev> =
                    Array::try_from(self.map_mut(CARPDEVS_MAP)?).map_err(map_error(&what))?;
                carpdevs
                    .set(home, new.carpdev, 0)
                    .map_err(map_error(format!("{CARPDEVS_MAP}: {what}")))
            }
            Home::Collided => {
                let mut collided: HashMap<&mut MapData, u32, Carpdev> =
                    HashMap::try_from(self.map_mut(COLLIDED_MAP)?).map_err(map_error(&what))?;
                collided
                    .insert(ifindex, new.carpdev, 0)
                    .map_err(map_error(format!("{COLLIDED_MAP}: {what}")))
            }
        }
    }

    fn write_vhid(
        &mut self,
        ifindex: u32,
        vhid: u8,
        write: VhidWrite,
    ) -> Result<(), DataplaneError> {
        let error = map_error(format!("{VHIDS_MAP}: vhid {vhid} on ifindex {ifindex}"));
        let mut vhids: Array<&mut MapData, VhidState> =
            Array::try_from(self.map_mut(VHIDS_MAP)?).map_err(&error)?;
        vhids.set(write.index, write.state, 0).map_err(error)
    }

    /// Tells the program that `vhid` is configured on `ifindex`, not owned;
    /// `leads_group` if it leads a balanced group (`add_balance_group`).
    pub fn add_vhid(
        &mut self,
        ifindex: u32,
        vhid: u8,
        leads_group: bool,
    ) -> Result<(), DataplaneError> {
        self.register_carpdev(ifindex)?;
        let write = self.layout.add_vhid(ifindex, vhid, leads_group)?;
        self.write_vhid(ifindex, vhid, write)
    }

    /// This node's role for a configured vhid: one map write, so the
    /// datapath sees every VIP and the virtual MAC change hands at the
    /// same instant.
    ///
    /// A MASTER role is written only under an armed watchdog: a beat first
    /// (with the last bound), so that the agent dying right after can never
    /// leave the role owned with no timer to demote it.
    pub fn set_role(&mut self, ifindex: u32, vhid: u8, master: bool) -> Result<(), DataplaneError> {
        if master {
            let bound = self.bound.ok_or(DataplaneError::NoHeartbeat)?;
            self.beat(crate::clock::now(), bound)?;
        }
        let write = self.layout.set_role(ifindex, vhid, master)?;
        self.write_vhid(ifindex, vhid, write)
    }

    /// Writes every configured vhid's entry as the agent holds it: after
    /// the watchdog demoted the roles (or before we know it did not).
    fn rewrite_roles(&mut self) -> Result<(), DataplaneError> {
        for (ifindex, vhid, write) in self.layout.vhid_writes().collect::<Vec<_>>() {
            self.write_vhid(ifindex, vhid, write)?;
        }
        Ok(())
    }

    /// Tells the program about a balanced group (carpnodes) led by
    /// `nodes[0]`, before its vhids (`add_vhid`, the leader with
    /// `leads_group`) and VIPs (`add_vip`) are added as usual.
    pub fn add_balance_group(
        &mut self,
        ifindex: u32,
        group: &BalanceGroup,
    ) -> Result<(), DataplaneError> {
        self.register_carpdev(ifindex)?;
        let leader = group.nodes[0];
        let index = self.layout.add_group(ifindex, leader)?;
        let error = map_error(format!(
            "{BALANCED_MAP}: group of vhid {leader} on ifindex {ifindex}"
        ));
        let mut groups: Array<&mut MapData, BalanceGroup> =
            Array::try_from(self.map_mut(BALANCED_MAP)?).map_err(&error)?;
        groups.set(index, *group, 0).map_err(error)
    }

    /// Tells the program that `address` on `ifindex` belongs to `vhid`, or,
    /// `balanced`, to the group it leads.
    pub fn add_vip(
        &mut self,
        ifindex: u32,
        vhid: u8,
        address: IpAddr,
        balanced: bool,
    ) -> Result<(), DataplaneError> {
        self.register_carpdev(ifindex)?;
        let error = map_error(format!("{VIPS_MAP}: {address} of vhid {vhid}"));
        let mut vips: HashMap<&mut MapData, VipKey, VipOwner> =
            HashMap::try_from(self.map_mut(VIPS_MAP)?).map_err(&error)?;
        let owner = VipOwner {
            vhid,
            balanced: u8::from(balanced),
            pad: [0; 2],
        };
        let key = vip_key(ifindex, address);
        vips.insert(key, owner, 0).map_err(error)?;
        // Only then the filter bit: until it is set the program passes the
        // address untouched, as it did before the VIP was added.
        self.set_filter_bits([key])
    }

    /// Sets the `CARP_VIP_FILTER` bits of `keys`. Bits are only ever set: a
    /// stray one costs a hash lookup, a missing one would let traffic for
    /// a VIP through whatever the role.
    fn set_filter_bits(
        &mut self,
        keys: impl IntoIterator<Item = VipKey>,
    ) -> Result<(), DataplaneError> {
        let error = map_error(VIP_FILTER_MAP);
        let mut filter: Array<&mut MapData, u64> =
            Array::try_from(self.map_mut(VIP_FILTER_MAP)?).map_err(&error)?;
        for key in keys {
            let (word, mask) = vip_filter_bit(&key.address);
            let bits = filter.get(&word, 0).map_err(&error)?;
            filter.set(word, bits | mask, 0).map_err(&error)?;
        }
        Ok(())
    }

    /// Sets the filter bit of every VIP in `CARP_VIPS`: for pinned maps an
    /// earlier carpd filled (with bits this build's program may place
    /// elsewhere); for fresh ones it finds nothing to do.
    pub(super) fn refilter(&mut self) -> Result<(), DataplaneError> {
        let error = map_error(VIPS_MAP);
        let vips: HashMap<&MapData, VipKey, VipOwner> =
            HashMap::try_from(self.map(VIPS_MAP)?).map_err(&error)?;
        let keys = vips.keys().collect::<Result<Vec<_>, _>>().map_err(error)?;
        self.set_filter_bits(keys)
    }

    /// The agent is alive at `now`; the program treats nothing as owned
    /// once a beat is older than `bound`. The beat is recorded (for the
    /// next carpd to judge the pins by) and handed to the program, which
    /// re-arms its watchdog timer with it. If the watchdog ran out since
    /// the last beat (or this is our first), the roles are written again.
    pub fn beat(&mut self, now: Mono, bound: Duration) -> Result<(), DataplaneError> {
        let error = map_error(AGENT_MAP);
        let mut agent: Array<&mut MapData, AgentHeartbeat> =
            Array::try_from(self.map_mut(AGENT_MAP)?).map_err(&error)?;
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let heartbeat = AgentHeartbeat {
            beat_ns: nanos(now),
            bound_ns: nanos(bound),
        };
        agent.set(0, heartbeat, 0).map_err(error)?;
        let mut frame = [0u8; BEAT_FRAME_LEN];
        frame[12..14].copy_from_slice(&ETH_P_CARP_BEAT.to_be_bytes());
        frame[14..22].copy_from_slice(&heartbeat.beat_ns.to_ne_bytes());
        frame[22..30].copy_from_slice(&heartbeat.bound_ns.to_ne_bytes());
        let run = self.run_on_frame(&frame, 1)?;
        // XDP_DROP: armed, and the expiry count written into the frame.
        let expiries = run
            .frame
            .get(BEAT_EXPIRIES_AT..BEAT_FRAME_LEN)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_ne_bytes);
        let (XDP_DROP, Some(expiries)) = (run.action, expiries) else {
            return Err(DataplaneError::Watchdog(run.action));
        };
        self.bound = Some(bound);
        if self.expiries != Some(expiries) {
            self.rewrite_roles()?;
            self.expiries = Some(expiries);
        }
        Ok(())
    }

    /// Every counter that has counted a packet, summed over CPUs.
    pub fn counters(&self) -> Result<Vec<XdpCounter>, DataplaneError> {
        let error = map_error(COUNTERS_MAP);
        let counters: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.map(COUNTERS_MAP)?).map_err(&error)?;
        let mut rows = Vec::new();
        for row in self.layout.rows() {
            for verdict in Verdict::ALL {
                let per_cpu = counters
                    .get(&counter_index(row.row, verdict), 0)
                    .map_err(&error)?;
                let packets = per_cpu.iter().sum();
                // The array holds every counter; those at 0 never counted.
                if packets > 0 {
                    rows.push(XdpCounter {
                        ifindex: row.ifindex,
                        vhid: row.vhid,
                        verdict,
                        packets,
                    });
                }
            }
        }
        Ok(rows)
    }
}
