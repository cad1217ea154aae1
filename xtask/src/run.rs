//! `cargo xtask run -- <args>`: carpd as root.

use std::os::unix::process::CommandExt as _;
use std::process::Command;

use anyhow::{Result, bail};

use crate::release;
use crate::tools::{is_root, on_path};

pub fn carpd(args: &[String]) -> Result<()> {
    let binaries = release::build()?;
    // exec: carpd takes over this process, so Ctrl-C and the exit status
    // are carpd's own.
    let error = if is_root() {
        Command::new(&binaries.carpd).args(args).exec()
    } else if on_path("sudo") {
        println!("carpd needs root: running it with sudo -E");
        Command::new("sudo")
            .arg("-E")
            .arg(&binaries.carpd)
            .args(args)
            .exec()
    } else {
        bail!(
            "carpd must run as root (it creates interfaces and loads XDP) and sudo is not installed: run `cargo xtask run` as root"
        );
    };
    bail!("cannot run {}: {error}", binaries.carpd.display())
}
