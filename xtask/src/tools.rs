//! Running the tools xtask drives: cargo, rustup, apt, with the cargo bin
//! directory on PATH (bpf-linker lives there and rustc must find it).

use std::env;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

pub use carp_tests::{describe, is_root};

/// The workspace this xtask belongs to.
pub fn workspace_root() -> PathBuf {
    carp_tests::workspace_root()
}

/// `$CARGO_HOME/bin`, where `cargo install` puts bpf-linker.
fn cargo_bin_dir() -> Option<PathBuf> {
    let home = match env::var_os("CARGO_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home),
        _ => PathBuf::from(env::var_os("HOME")?).join(".cargo"),
    };
    Some(home.join("bin"))
}

/// PATH with the cargo bin directory appended if it is missing (a CI shell
/// or sudo may not have it).
fn search_path() -> OsString {
    let current = env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = env::split_paths(&current).collect();
    if let Some(bin) = cargo_bin_dir().filter(|bin| !dirs.contains(bin)) {
        dirs.push(bin);
    }
    env::join_paths(dirs).unwrap_or(current)
}

/// A command run from the workspace root with the augmented PATH.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(workspace_root())
        .env("PATH", search_path());
    command
}

/// `cargo` through the rustup proxy, so `+nightly` works.
pub fn cargo() -> Command {
    command("cargo")
}

/// Runs `command` with the terminal as its stdio; fails on a non-zero exit.
pub fn run(command: &mut Command) -> Result<()> {
    let line = describe(command);
    let status = command
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Whether `command` runs and exits 0, output discarded.
pub fn succeeds(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// stdout of `command`, failing (with its stderr) on a non-zero exit.
pub fn stdout(command: &mut Command) -> Result<String> {
    Ok(carp_tests::output(command)?)
}

/// Whether `program` is an executable file in a PATH directory.
pub fn on_path(program: &str) -> bool {
    env::split_paths(&search_path()).any(|dir| dir.join(program).is_file())
}
