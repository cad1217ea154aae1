//! Network-namespace test kit for carpd: the pieces every namespace scenario
//! needs, each cleaning up after itself even when a test panics.
//!
//! - [`Netns`]: a uniquely named network namespace, deleted on drop.
//! - [`Topology`]: bridges in a switch namespace, nodes wired to them by veths.
//! - [`Lab`]: the two-gateway lab (`cargo xtask lab` and the scenarios share it).
//! - [`Process`]: a child killed and reaped on drop; [`Capture`]: tcpdump lines.
//! - [`wait_until`] / [`wait_for`]: bounded polling instead of sleeps.
//! - [`Carpd`] and [`carpctl_status`]: run the agent and read its state.
//! - [`Cluster`]: the lab with carpd on both gateways, for election scenarios.
//!
//! Everything here shells out to `ip`, `tcpdump` and the carp binaries: the
//! tests exercise the same tools an operator uses, and need root.

mod bpffs;
mod capture;
mod carpd;
mod carpd_log;
mod cluster;
mod command;
mod error;
mod host;
mod lab;
mod netns;
mod pinger;
mod process;
mod status;
mod topology;
mod wait;

pub use bpffs::BpfMount;
pub use capture::{Capture, Tcpdump};
pub use carpd::{Carpd, carpctl_status};
pub use carpd_log::{LoggedTransition, transitions, wall_clock};
pub use cluster::{Cluster, LinkState, READY_TIMEOUT, gateway};
pub use command::{describe, output};
pub use error::{Error, Result};
pub use host::{carpctl_bin, carpd_bin, is_root, release_dir, require_root, workspace_root};
pub use lab::{
    CLIENT, CarpdOptions, GATEWAYS, Gateway, LAB_BRIDGES, Lab, LabHost, SERVER, VHIDS, VhidSpec,
    address_of, carpd_config, carpd_config_with, host_behind, masters_by_vhid, metrics_address,
    toml_string, virtual_mac,
};
pub use netns::{Netns, exists as netns_exists, list as list_netns, sweep_stale, unique_stem};
pub use pinger::{Pinger, Reply, Summary};
pub use process::{Process, Signal};
pub use status::{
    BootStatus, CarpState, Contribution, Counters, GroupStatus, HookCounters, InterfaceStatus,
    Status, TrackerState, TrackerStatus,
};
pub use topology::{NodeSpec, PortSpec, Topology, TopologySpec};
pub use wait::{POLL_INTERVAL, wait_for, wait_until};
