//! The XDP side as the agent sees it: load the embedded program, attach it
//! to each carpdev, tell it which vhids are ours, read its counters, and
//! receive the advertisements it accepted (`adverts`).
//!
//! Map owners (see carp-ebpf/src/program/mod.rs): the agent writes
//! `CARP_VHIDS`, `CARP_VIPS` and `CARP_AGENT`; the program the counters, the
//! claims and the rings.
//!
//! With a pin directory (`pins`), links and maps outlive the agent: a dead
//! carpd's program keeps running and fails closed once its heartbeat is
//! stale, and the next carpd adopts the maps and swaps its program in with
//! one `bpf_link_update` per carpdev.

mod adverts;
mod claims;
pub mod pins;
mod ring;

use aya::maps::{HashMap, MapData, PerCpuHashMap, RingBuf};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{TestRun, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader, include_bytes_aligned};
use std::net::IpAddr;
use std::time::Duration;

use aya::maps::Array;
use carp_common::{AgentHeartbeat, CounterKey, Verdict, VhidKey, VhidState, VipKey, VipOwner};

use crate::clock::Mono;
use tracing::{info, warn};

pub use adverts::{AdvertReceiver, ReceivedAdvert};
pub use claims::{ClaimReceiver, VipConflict};
pub use pins::{PinDir, PinnedState, Previous};

/// The program object built by build.rs (empty when bpf-linker was missing).
static PROGRAM_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/carp"));

const PROGRAM: &str = "carp";
/// An XDP_PASS-only program in the same object, for benchmarks.
const BASELINE: &str = "bare_pass";
const VHIDS_MAP: &str = "CARP_VHIDS";
const VIPS_MAP: &str = "CARP_VIPS";
const AGENT_MAP: &str = "CARP_AGENT";
const COUNTERS_MAP: &str = "CARP_COUNTERS";
const ADVERTS_MAP: &str = "CARP_ADVERTS";
const CLAIMS_MAP: &str = "CARP_CLAIMS";
const CLAIMED_MAP: &str = "CARP_CLAIMED";
const BALANCED_MAP: &str = "CARP_BALANCED";
/// Every map carpd pins (all of the object's, but its data sections).
const PINNED_MAPS: [&str; 8] = [
    VHIDS_MAP,
    BALANCED_MAP,
    VIPS_MAP,
    AGENT_MAP,
    COUNTERS_MAP,
    ADVERTS_MAP,
    CLAIMED_MAP,
    CLAIMS_MAP,
];

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(
        "this carpd was built without its XDP program (bpf-linker was missing): build it with `cargo xtask build`"
    )]
    NotBuilt,
    #[error("loading the XDP program: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the XDP object has no {0}")]
    Missing(&'static str),
    #[error("{what}: {source}")]
    Map {
        what: String,
        source: aya::maps::MapError,
    },
    #[error("{what}: {source}")]
    Program {
        what: String,
        source: aya::programs::ProgramError,
    },
    #[error("opening the advertisement ring buffer: {0}")]
    Ring(std::io::Error),
    #[error("{what}: {source}")]
    Pin {
        what: String,
        source: aya::pin::PinError,
    },
    #[error("{0}")]
    Pins(#[from] pins::PinError),
    #[error("{what}: {source}")]
    Link {
        what: String,
        source: aya::programs::links::LinkError,
    },
}

/// One row of the XDP counters, summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpCounter {
    pub ifindex: u32,
    /// 0 where the packet could not be tied to a configured vhid.
    pub vhid: u8,
    pub verdict: Verdict,
    pub packets: u64,
}

/// What one `BPF_PROG_TEST_RUN` of the program over a frame returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameRun {
    /// The XDP action (`XDP_DROP` 1, `XDP_PASS` 2, `XDP_TX` 3, ...).
    pub action: u32,
    /// The kernel's mean time per run.
    pub per_run: std::time::Duration,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
}

pub struct Dataplane {
    ebpf: Ebpf,
    /// carpdevs the program is attached to.
    attached: Vec<u32>,
    pins: Option<PinDir>,
}

impl Dataplane {
    /// Loads the embedded program into the kernel (not yet attached
    /// anywhere). With `pins`, its maps are the pinned ones where they
    /// exist (check them with `PinDir::inspect` first) and pinned where not.
    pub fn load(pins: Option<&PinDir>) -> Result<Self, DataplaneError> {
        if PROGRAM_OBJECT.is_empty() {
            return Err(DataplaneError::NotBuilt);
        }
        let mut loader = EbpfLoader::new();
        let paths: Vec<_> = pins
            .map(|dir| PINNED_MAPS.map(|name| (name, dir.map(name))).to_vec())
            .unwrap_or_default();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut dataplane = Self {
            ebpf: loader.load(PROGRAM_OBJECT)?,
            attached: Vec::new(),
            pins: pins.cloned(),
        };
        dataplane
            .program_mut()?
            .load()
            .map_err(|source| DataplaneError::Program {
                what: "verifying the `carp` program".into(),
                source,
            })?;
        Ok(dataplane)
    }

    fn program(&self) -> Result<&Xdp, DataplaneError> {
        self.ebpf
            .program(PROGRAM)
            .ok_or(DataplaneError::Missing("XDP program `carp`"))?
            .try_into()
            .map_err(|source| DataplaneError::Program {
                what: "the `carp` program".into(),
                source,
            })
    }

    fn program_mut(&mut self) -> Result<&mut Xdp, DataplaneError> {
        self.ebpf
            .program_mut(PROGRAM)
            .ok_or(DataplaneError::Missing("XDP program `carp`"))?
            .try_into()
            .map_err(|source| DataplaneError::Program {
                what: "the `carp` program".into(),
                source,
            })
    }

    /// The receiving end of the advertisement ring buffer; there is one, so
    /// this succeeds once.
    pub fn take_adverts(&mut self) -> Result<AdvertReceiver, DataplaneError> {
        let map = self
            .ebpf
            .take_map(ADVERTS_MAP)
            .ok_or(DataplaneError::Missing("advertisement ring buffer"))?;
        let ring = RingBuf::try_from(map).map_err(|source| DataplaneError::Map {
            what: ADVERTS_MAP.into(),
            source,
        })?;
        AdvertReceiver::new(ring).map_err(DataplaneError::Ring)
    }

    /// The receiving end of the VIP-claim ring buffer; succeeds once.
    pub fn take_claims(&mut self) -> Result<ClaimReceiver, DataplaneError> {
        let map = self
            .ebpf
            .take_map(CLAIMS_MAP)
            .ok_or(DataplaneError::Missing("claim ring buffer"))?;
        let ring = RingBuf::try_from(map).map_err(|source| DataplaneError::Map {
            what: CLAIMS_MAP.into(),
            source,
        })?;
        ClaimReceiver::new(ring).map_err(DataplaneError::Ring)
    }

    /// Attaches the program to `carpdev`: in place of the program of a
    /// pinned link an earlier carpd left (atomically, so no packet sees
    /// neither), or afresh in driver mode, or in generic (skb) mode where
    /// the driver has no XDP support. With a pin directory the new link is
    /// pinned, so it outlives us.
    pub fn attach(&mut self, carpdev: &str, ifindex: u32) -> Result<(), DataplaneError> {
        if self.attached.contains(&ifindex) {
            return Ok(());
        }
        let pin_path = self.pins.as_ref().map(|dir| dir.link(carpdev));
        if let Some(path) = pin_path.as_deref().filter(|p| p.exists()) {
            match self.replace_pinned(path) {
                Ok(()) => {
                    info!("{carpdev}: XDP program replaced in the pinned link");
                    self.attached.push(ifindex);
                    return Ok(());
                }
                Err(error) => {
                    // The carpdev was recreated since, say: its old link is
                    // defunct. Attach afresh.
                    warn!(
                        "{carpdev}: cannot reuse the pinned XDP link ({error}): attaching afresh"
                    );
                    std::fs::remove_file(path).map_err(|source| {
                        DataplaneError::Pins(pins::PinError::Io {
                            path: path.to_owned(),
                            source,
                        })
                    })?;
                }
            }
        }
        let program = self.program_mut()?;
        let link_id = match program.attach_to_if_index(ifindex, XdpMode::Driver) {
            Ok(id) => {
                info!("{carpdev}: XDP program attached (driver mode)");
                id
            }
            Err(driver_error) => {
                let id = program
                    .attach_to_if_index(ifindex, XdpMode::Skb)
                    .map_err(|source| DataplaneError::Program {
                        what: format!("attaching XDP to {carpdev}"),
                        source,
                    })?;
                warn!(
                    "{carpdev}: no native XDP ({driver_error}), XDP program attached in generic mode"
                );
                id
            }
        };
        if let Some(path) = pin_path {
            self.pin_link(carpdev, link_id, &path)?;
        }
        self.attached.push(ifindex);
        Ok(())
    }

    fn pin_link(
        &mut self,
        carpdev: &str,
        link_id: aya::programs::xdp::XdpLinkId,
        path: &std::path::Path,
    ) -> Result<(), DataplaneError> {
        let link =
            self.program_mut()?
                .take_link(link_id)
                .map_err(|source| DataplaneError::Program {
                    what: format!("{carpdev}: taking the XDP link"),
                    source,
                })?;
        // A netlink attachment (kernels before 5.9) has no link to pin.
        let fd_link = FdLink::try_from(link).map_err(|source| DataplaneError::Link {
            what: format!("{carpdev}: the XDP attachment is not a bpf_link and cannot be pinned"),
            source,
        })?;
        // The pin holds the link from now on; our descriptor can go.
        fd_link.pin(path).map_err(|source| DataplaneError::Pin {
            what: format!("{carpdev}: pinning the XDP link at {}", path.display()),
            source,
        })?;
        Ok(())
    }

    /// Swaps our program into the link pinned at `path`.
    fn replace_pinned(&mut self, path: &std::path::Path) -> Result<(), DataplaneError> {
        let pinned = PinnedLink::from_pin(path).map_err(|source| DataplaneError::Link {
            what: format!("opening the pinned link {}", path.display()),
            source,
        })?;
        let link =
            XdpLink::try_from(FdLink::from(pinned)).map_err(|source| DataplaneError::Link {
                what: format!("{} is not an XDP link", path.display()),
                source,
            })?;
        // The link joins the program's set; dropping it there only closes
        // our descriptor, the pin (still in place) keeps it attached.
        self.program_mut()?
            .attach_to_link(link)
            .map_err(|source| DataplaneError::Program {
                what: "bpf_link_update".into(),
                source,
            })?;
        Ok(())
    }

    /// Removes every pin, for a carpd that leaves on purpose: the program
    /// detaches once this process closes its descriptors, and the next
    /// carpd starts afresh.
    pub fn unpin(&mut self) -> Result<(), DataplaneError> {
        if let Some(dir) = &self.pins {
            dir.clear()?;
        }
        Ok(())
    }

    /// Tells the program that `vhid` is configured on `ifindex`, not owned;
    /// `leads_group` if it leads a balanced group (`add_balance_group`).
    pub fn add_vhid(
        &mut self,
        ifindex: u32,
        vhid: u8,
        leads_group: bool,
    ) -> Result<(), DataplaneError> {
        let state = if leads_group {
            VhidState::leading_group(false)
        } else {
            VhidState::new(false)
        };
        self.vhids()?
            .insert(VhidKey::new(ifindex, vhid), state, 0)
            .map_err(|source| vhid_error(ifindex, vhid, source))
    }

    fn vhids(&mut self) -> Result<HashMap<&mut MapData, VhidKey, VhidState>, DataplaneError> {
        HashMap::try_from(
            self.ebpf
                .map_mut(VHIDS_MAP)
                .ok_or(DataplaneError::Missing("vhid map"))?,
        )
        .map_err(|source| DataplaneError::Map {
            what: VHIDS_MAP.into(),
            source,
        })
    }

    /// This node's role for a vhid: one map update, so the datapath sees
    /// every VIP and the virtual MAC change hands at the same instant.
    pub fn set_role(&mut self, ifindex: u32, vhid: u8, master: bool) -> Result<(), DataplaneError> {
        let key = VhidKey::new(ifindex, vhid);
        let mut vhids = self.vhids()?;
        // Only the agent writes this map: reading back the group flag
        // cannot race with another writer.
        let leads_group = vhids.get(&key, 0).is_ok_and(|s| s.leads_group != 0);
        let state = if leads_group {
            VhidState::leading_group(master)
        } else {
            VhidState::new(master)
        };
        vhids
            .insert(key, state, 0)
            .map_err(|source| vhid_error(ifindex, vhid, source))
    }

    /// Tells the program about a balanced group (carpnodes) led by
    /// `nodes[0]`. Its vhids and VIPs are added with `add_vhid` and
    /// `add_vip` as usual.
    pub fn add_balance_group(
        &mut self,
        ifindex: u32,
        group: &carp_common::BalanceGroup,
    ) -> Result<(), DataplaneError> {
        let leader = group.nodes[0];
        let map_error = |source| DataplaneError::Map {
            what: format!("{BALANCED_MAP}: group of vhid {leader} on ifindex {ifindex}"),
            source,
        };
        let mut groups: HashMap<&mut MapData, VhidKey, carp_common::BalanceGroup> =
            HashMap::try_from(
                self.ebpf
                    .map_mut(BALANCED_MAP)
                    .ok_or(DataplaneError::Missing("balanced group map"))?,
            )
            .map_err(map_error)?;
        groups
            .insert(VhidKey::new(ifindex, leader), *group, 0)
            .map_err(map_error)
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
        let map_error = |source| DataplaneError::Map {
            what: format!("{VIPS_MAP}: {address} of vhid {vhid}"),
            source,
        };
        let mut vips: HashMap<&mut MapData, VipKey, VipOwner> = HashMap::try_from(
            self.ebpf
                .map_mut(VIPS_MAP)
                .ok_or(DataplaneError::Missing("VIP map"))?,
        )
        .map_err(map_error)?;
        let owner = VipOwner {
            vhid,
            balanced: u8::from(balanced),
            pad: [0; 2],
        };
        vips.insert(vip_key(ifindex, address), owner, 0)
            .map_err(map_error)
    }

    /// The agent is alive at `now`; the program treats nothing as owned
    /// once a beat is older than `bound`.
    pub fn beat(&mut self, now: Mono, bound: Duration) -> Result<(), DataplaneError> {
        let map_error = |source| DataplaneError::Map {
            what: AGENT_MAP.into(),
            source,
        };
        let mut agent: Array<&mut MapData, AgentHeartbeat> = Array::try_from(
            self.ebpf
                .map_mut(AGENT_MAP)
                .ok_or(DataplaneError::Missing("heartbeat map"))?,
        )
        .map_err(map_error)?;
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        agent
            .set(
                0,
                AgentHeartbeat {
                    beat_ns: nanos(now),
                    bound_ns: nanos(bound),
                },
                0,
            )
            .map_err(map_error)
    }

    /// Runs the loaded program over `frame` `repeat` times in the kernel
    /// (`BPF_PROG_TEST_RUN`), as if it arrived on the loopback interface of
    /// the calling thread's network namespace. For tests and benchmarks.
    pub fn run_on_frame(&self, frame: &[u8], repeat: u32) -> Result<FrameRun, DataplaneError> {
        run(self.program()?, frame, repeat)
    }

    /// Runs the object's XDP_PASS-only program over `frame` the same way:
    /// the baseline for benchmarks, loaded on first use.
    pub fn run_baseline(&mut self, frame: &[u8], repeat: u32) -> Result<FrameRun, DataplaneError> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(BASELINE)
            .ok_or(DataplaneError::Missing("XDP program `bare_pass`"))?
            .try_into()
            .map_err(|source| DataplaneError::Program {
                what: "the `bare_pass` program".into(),
                source,
            })?;
        if program.fd().is_err() {
            program.load().map_err(|source| DataplaneError::Program {
                what: "verifying the `bare_pass` program".into(),
                source,
            })?;
        }
        run(program, frame, repeat)
    }

    /// Every counter row, summed over CPUs. Rows with an unknown verdict byte
    /// (a newer program?) are skipped.
    pub fn counters(&self) -> Result<Vec<XdpCounter>, DataplaneError> {
        let map_error = |source| DataplaneError::Map {
            what: COUNTERS_MAP.into(),
            source,
        };
        let counters: PerCpuHashMap<&MapData, CounterKey, u64> = PerCpuHashMap::try_from(
            self.ebpf
                .map(COUNTERS_MAP)
                .ok_or(DataplaneError::Missing("counter map"))?,
        )
        .map_err(map_error)?;
        let mut rows = Vec::new();
        for entry in &counters {
            let (key, per_cpu) = entry.map_err(map_error)?;
            let Some(verdict) = Verdict::from_u8(key.reason) else {
                continue;
            };
            rows.push(XdpCounter {
                ifindex: key.ifindex,
                vhid: key.vhid,
                verdict,
                packets: per_cpu.iter().sum(),
            });
        }
        Ok(rows)
    }
}

fn vhid_error(ifindex: u32, vhid: u8, source: aya::maps::MapError) -> DataplaneError {
    DataplaneError::Map {
        what: format!("{VHIDS_MAP}: vhid {vhid} on ifindex {ifindex}"),
        source,
    }
}

/// The `CARP_VIPS` key of an address on a carpdev.
pub fn vip_key(ifindex: u32, address: IpAddr) -> VipKey {
    match address {
        IpAddr::V4(v4) => VipKey::v4(ifindex, v4.octets()),
        IpAddr::V6(v6) => VipKey::v6(ifindex, v6.octets()),
    }
}

/// One `BPF_PROG_TEST_RUN` of `program` over `frame`, `repeat` times.
fn run(program: &Xdp, frame: &[u8], repeat: u32) -> Result<FrameRun, DataplaneError> {
    // The program never grows a frame.
    let mut out = vec![0u8; frame.len()];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::default()
        })
        .map_err(|source| DataplaneError::Program {
            what: "BPF_PROG_TEST_RUN".into(),
            source,
        })?;
    out.truncate(usize::try_from(result.data_size_out).unwrap_or(0));
    Ok(FrameRun {
        action: result.return_value,
        per_run: result.duration,
        frame: out,
    })
}
