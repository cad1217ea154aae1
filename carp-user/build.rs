//! Builds the XDP program (carp-ebpf) for the BPF target and leaves it in
//! `OUT_DIR/carp`, where `dataplane` embeds it, so carpd is one file.
//!
//! Without bpf-linker (a machine that only runs `cargo check` or the pure unit
//! tests) an empty stub takes its place and carpd says so when it starts;
//! `cargo xtask setup` installs bpf-linker.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use aya_build::{Package, Toolchain};

/// The eBPF crate's binary, named after its `[[bin]]`.
const PROGRAM: &str = "carp";

fn main() -> Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR is not set")?);
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR is not set")?);
    let ebpf_dir = manifest_dir.join("../carp-ebpf");
    println!("cargo:rerun-if-env-changed=PATH");
    let Some(linker) = find_on_path("bpf-linker") else {
        println!(
            "cargo:warning=bpf-linker not found: carpd is built without its XDP program (run `cargo xtask setup`)"
        );
        println!("cargo:rerun-if-changed={}", ebpf_dir.display());
        // A path that does not exist makes cargo rerun this script on every
        // build, so the stub is replaced as soon as setup installs
        // bpf-linker (PATH itself usually stays the same).
        println!("cargo:rerun-if-changed={}", expected_linker().display());
        let stub = out_dir.join(PROGRAM);
        fs::write(&stub, []).with_context(|| format!("writing {}", stub.display()))?;
        return Ok(());
    };
    // Rebuild with a new bpf-linker.
    println!("cargo:rerun-if-changed={}", linker.display());
    let root_dir = ebpf_dir
        .to_str()
        .context("the carp-ebpf path is not UTF-8")?;
    aya_build::build_ebpf(
        [Package {
            name: "carp-ebpf",
            root_dir,
            ..Package::default()
        }],
        Toolchain::default(),
    )
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_file(candidate))
}

/// Where `cargo install` (as `cargo xtask setup` runs it) puts bpf-linker.
fn expected_linker() -> PathBuf {
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    cargo_home.join("bin").join("bpf-linker")
}

fn is_file(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file())
}
