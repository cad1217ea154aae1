//! The XDP side as the agent sees it: load the embedded program, attach it
//! to each carpdev, tell it which vhids are ours, read its counters, and
//! receive the advertisements it accepted (`adverts`).
//!
//! Map owners (see carp-ebpf/src/program/mod.rs): the agent writes
//! `CARP_CARPDEVS`, `CARP_COLLIDED`, `CARP_VHIDS`, `CARP_VIPS`,
//! `CARP_VIP_FILTER`, `CARP_BALANCED` and `CARP_AGENT` (`maps`, where
//! `layout` says); the program the counters, the claims and the rings.
//!
//! With a pin directory (`pins`), links and maps outlive the agent: a dead
//! carpd's program keeps running and fails closed once its heartbeat is
//! stale, and the next carpd adopts the maps and swaps its program in with
//! one `bpf_link_update` per carpdev.

mod adverts;
mod claims;
mod layout;
mod maps;
pub mod pins;
mod ring;

use aya::maps::RingBuf;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{TestRun, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader, include_bytes_aligned};
use std::net::IpAddr;

use carp_common::{Verdict, VipKey};

use tracing::{info, warn};

pub use adverts::{AdvertReceiver, ReceivedAdvert};
pub use claims::{ClaimReceiver, VipConflict};
pub use layout::LayoutError;
pub use pins::{PinDir, PinnedState, Previous};

/// The program object built by build.rs (empty when bpf-linker was missing).
static PROGRAM_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/carp"));

const PROGRAM: &str = "carp";
const CARPDEVS_MAP: &str = "CARP_CARPDEVS";
const COLLIDED_MAP: &str = "CARP_COLLIDED";
const VHIDS_MAP: &str = "CARP_VHIDS";
const VIPS_MAP: &str = "CARP_VIPS";
const VIP_FILTER_MAP: &str = "CARP_VIP_FILTER";
const AGENT_MAP: &str = "CARP_AGENT";
const WATCHDOG_MAP: &str = "CARP_WATCHDOG";
const COUNTERS_MAP: &str = "CARP_COUNTERS";
const ADVERTS_MAP: &str = "CARP_ADVERTS";
const CLAIMS_MAP: &str = "CARP_CLAIMS";
const CLAIMED_MAP: &str = "CARP_CLAIMED";
const BALANCED_MAP: &str = "CARP_BALANCED";
/// Every map carpd pins (all of the object's, but its data sections).
const PINNED_MAPS: [&str; 12] = [
    CARPDEVS_MAP,
    COLLIDED_MAP,
    VHIDS_MAP,
    BALANCED_MAP,
    VIPS_MAP,
    VIP_FILTER_MAP,
    AGENT_MAP,
    WATCHDOG_MAP,
    COUNTERS_MAP,
    ADVERTS_MAP,
    CLAIMED_MAP,
    CLAIMS_MAP,
];

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(
        "the XDP program did not take the heartbeat (action {0}): is the running kernel too old for BPF timers (5.15)?"
    )]
    Watchdog(u32),
    #[error("a MASTER role needs an armed watchdog: the dataplane has had no heartbeat yet")]
    NoHeartbeat,
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
    #[error("{0}")]
    Layout(#[from] LayoutError),
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
    /// Where each carpdev and vhid is in the maps.
    layout: layout::Layout,
    /// The bound of the last heartbeat, once there was one.
    bound: Option<std::time::Duration>,
    /// The watchdog's expiry count at the last heartbeat.
    expiries: Option<u64>,
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
            layout: layout::Layout::default(),
            bound: None,
            expiries: None,
        };
        // Pinned maps an earlier carpd filled: carry on where it put things.
        dataplane.layout = dataplane.read_layout()?;
        dataplane.refilter()?;
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
        self.register_carpdev(ifindex)?;
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

    /// Runs the loaded program over `frame` `repeat` times in the kernel
    /// (`BPF_PROG_TEST_RUN`), as if it arrived on the loopback interface of
    /// the calling thread's network namespace. For tests and benchmarks.
    pub fn run_on_frame(&self, frame: &[u8], repeat: u32) -> Result<FrameRun, DataplaneError> {
        run(self.program()?, frame, repeat)
    }

    /// Runs one of the object's reference programs over `frame` the same
    /// way, for benchmarks; loaded on first use.
    pub fn run_baseline(
        &mut self,
        baseline: Baseline,
        frame: &[u8],
        repeat: u32,
    ) -> Result<FrameRun, DataplaneError> {
        let name = baseline.program();
        let program: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or(DataplaneError::Missing(name))?
            .try_into()
            .map_err(|source| DataplaneError::Program {
                what: format!("the `{name}` program"),
                source,
            })?;
        if program.fd().is_err() {
            program.load().map_err(|source| DataplaneError::Program {
                what: format!("verifying the `{name}` program"),
                source,
            })?;
        }
        run(program, frame, repeat)
    }
}

/// The reference programs in the object next to `carp`, which carpd never
/// loads: what a benchmark measures `carp` against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// Passes every frame and does nothing else.
    Bare,
    /// As `Bare`, after one read of the clock (`bpf_ktime_get_ns`): the
    /// floor of every path the fail-closed check is on.
    Clock,
}

impl Baseline {
    const fn program(self) -> &'static str {
        match self {
            Self::Bare => "bare_pass",
            Self::Clock => "clock_pass",
        }
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
