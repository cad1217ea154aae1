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
    if !on_path("bpf-linker") {
        println!(
            "cargo:warning=bpf-linker not found: carpd is built without its XDP program (run `cargo xtask setup`)"
        );
        println!("cargo:rerun-if-changed={}", ebpf_dir.display());
        let stub = out_dir.join(PROGRAM);
        fs::write(&stub, []).with_context(|| format!("writing {}", stub.display()))?;
        return Ok(());
    }
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

fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| is_file(&dir.join(program))))
}

fn is_file(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file())
}
