//! The file as written, before validation. Numbers are parsed wide so range
//! errors get our message rather than serde's; unknown keys are errors.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub preempt: Option<bool>,
    pub control_socket: Option<PathBuf>,
    pub metrics_listen: Option<String>,
    #[serde(default)]
    pub carp: Vec<RawCarp>,
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
}
