//! The file as written, before validation. Numbers are parsed wide so range
//! errors get our message rather than serde's; unknown keys are errors.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub preempt: Option<bool>,
    pub control_socket: Option<PathBuf>,
    pub pin_dir: Option<PathBuf>,
    pub metrics_listen: Option<String>,
    pub boot_timeout: Option<i64>,
    pub hooks: Option<RawHooks>,
    #[serde(default)]
    pub carp: Vec<RawCarp>,
    #[serde(default)]
    pub track: Vec<RawTrack>,
    pub sync: Option<RawSync>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    pub syncdev: Option<String>,
    pub syncpeer: Option<String>,
    pub port: Option<i64>,
    pub key_file: Option<PathBuf>,
    pub protocols: Option<Vec<String>>,
    pub ignore: Option<Vec<String>>,
    pub bulk_timeout: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCarp {
    pub name: Option<String>,
    pub carpdev: Option<String>,
    pub vhid: Option<i64>,
    pub pass: Option<String>,
    pub pass_file: Option<PathBuf>,
    pub advbase: Option<i64>,
    pub advskew: Option<i64>,
    pub addresses: Option<Vec<String>>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub peer: Option<String>,
    pub freebsd_compat: Option<bool>,
    pub balancing: Option<String>,
    pub nodes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHooks {
    pub transition: Option<String>,
    pub demote: Option<String>,
    pub conflict: Option<String>,
    pub timeout_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrack {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub interval_ms: Option<i64>,
    pub timeout_ms: Option<i64>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
    pub group: Option<String>,
    pub demote: Option<i64>,
    pub interface: Option<String>,
    pub target: Option<String>,
    pub command: Option<String>,
}
