//! `cargo xtask setup`: what the build and the tests need, installed only
//! when missing, so a second run costs a few process starts and no network.
//!
//! - nightly's rust-src: the eBPF crate is built with `-Z build-std=core`;
//! - bpf-linker, built against the nightly's own libLLVM (no system LLVM,
//!   no prebuilt download: see docs/TOOLCHAIN.md);
//! - Debian packages the namespace tests call.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::tools::{cargo, command, is_root, run as run_command, stdout, succeeds};

/// Debian packages the tests, the lab and the benchmark use.
pub const PACKAGES: [&str; 8] = [
    "iproute2",
    "tcpdump",
    "ucarp",
    "nftables",
    "iputils-ping",
    // The lab turns GRO on for its switch ports: a veth delivers the XDP
    // program's XDP_TX frames (balanced ARP replies) only to a peer with NAPI.
    "ethtool",
    // `cargo xtask bench failover` measures carpd against it.
    "keepalived",
    // `cargo xtask bench sync` measures carpd's state sync against it.
    "conntrackd",
];

pub fn run() -> Result<()> {
    let started = Instant::now();
    let mut installed = Vec::new();
    let sysroot = nightly_sysroot()?;
    if ensure_rust_src(&sysroot)? {
        installed.push("rust-src");
    }
    if ensure_bpf_linker(&sysroot)? {
        installed.push("bpf-linker");
    }
    if ensure_packages()? {
        installed.push("Debian packages");
    }
    let took = started.elapsed().as_secs_f64();
    if installed.is_empty() {
        println!("setup: rust-src, bpf-linker and packages present ({took:.2}s)");
    } else {
        println!("setup: installed {} ({took:.1}s)", installed.join(", "));
    }
    Ok(())
}

fn nightly_sysroot() -> Result<PathBuf> {
    let sysroot = stdout(command("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("the nightly toolchain is needed to build the eBPF program")?;
    Ok(PathBuf::from(sysroot.trim()))
}

/// Returns whether it had to install.
fn ensure_rust_src(sysroot: &Path) -> Result<bool> {
    if sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        return Ok(false);
    }
    println!("setup: adding rust-src to the nightly toolchain");
    run_command(command("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))?;
    Ok(true)
}

fn ensure_bpf_linker(sysroot: &Path) -> Result<bool> {
    if succeeds(command("bpf-linker").arg("--version")) {
        return Ok(false);
    }
    let lib_dir = sysroot.join("lib");
    let llvm = find_llvm_dylib(&lib_dir)?;
    println!(
        "setup: building bpf-linker against the nightly's {} (LLVM {}), about a minute",
        llvm.file_name, llvm.major
    );
    let lib_dir = lib_dir.to_string_lossy();
    // Link the nightly's libLLVM dynamically and find it at run time through
    // an rpath: no system LLVM needed, and the LLVM matches rustc's.
    let rustflags = format!(
        "-L {lib_dir} -l dylib={} -C link-arg=-Wl,-rpath,{lib_dir}",
        llvm.link_name
    );
    run_command(
        cargo()
            .args([
                "+nightly",
                "install",
                "bpf-linker",
                "--no-default-features",
                "--features",
            ])
            .arg(format!("llvm-{},no-llvm-linking", llvm.major))
            .env("RUSTFLAGS", rustflags),
    )?;
    if !succeeds(command("bpf-linker").arg("--version")) {
        bail!("bpf-linker was installed but `bpf-linker --version` still fails");
    }
    Ok(true)
}

/// The nightly's libLLVM, e.g. `libLLVM-22-rust-1.97.0-nightly.so`.
#[derive(Debug, PartialEq, Eq)]
struct LlvmDylib {
    file_name: String,
    /// For `-l dylib=`: the file name without `lib` and `.so`.
    link_name: String,
    major: u32,
}

fn find_llvm_dylib(lib_dir: &Path) -> Result<LlvmDylib> {
    let entries =
        fs::read_dir(lib_dir).with_context(|| format!("cannot list {}", lib_dir.display()))?;
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .find_map(|name| parse_llvm_dylib(&name))
        .with_context(|| {
            format!(
                "no libLLVM-<major>-rust-*.so in {}: is the nightly toolchain complete?",
                lib_dir.display()
            )
        })
}

fn parse_llvm_dylib(file_name: &str) -> Option<LlvmDylib> {
    let link_name = file_name.strip_prefix("lib")?.strip_suffix(".so")?;
    let rest = link_name.strip_prefix("LLVM-")?;
    let (major, tail) = rest.split_once('-')?;
    if !tail.starts_with("rust-") {
        return None;
    }
    Some(LlvmDylib {
        file_name: file_name.to_owned(),
        link_name: link_name.to_owned(),
        major: major.parse().ok()?,
    })
}

fn ensure_packages() -> Result<bool> {
    let missing = missing_packages()?;
    if missing.is_empty() {
        return Ok(false);
    }
    if !is_root() {
        bail!(
            "setup must install {} and that needs root: run `sudo -E cargo xtask setup`",
            missing.join(" ")
        );
    }
    println!("setup: installing {}", missing.join(" "));
    run_command(
        command("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run_command(
        command("apt-get")
            .args(["install", "-y"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let still = missing_packages()?;
    if !still.is_empty() {
        bail!("apt-get did not install {}", still.join(" "));
    }
    Ok(true)
}

fn missing_packages() -> Result<Vec<&'static str>> {
    // dpkg-query exits 1 when a package is unknown to dpkg; what it printed
    // for the others is still right, so read stdout whatever the status.
    let out = command("dpkg-query")
        .args(["-W", "-f", "${Package} ${Status}\\n"])
        .args(PACKAGES)
        .output()
        .context("cannot run dpkg-query: setup expects a Debian-based system")?;
    Ok(not_installed(
        &String::from_utf8_lossy(&out.stdout),
        &PACKAGES,
    ))
}

/// The packages of `wanted` that `dpkg-query` output does not show as
/// "install ok installed".
fn not_installed(dpkg_output: &str, wanted: &[&'static str]) -> Vec<&'static str> {
    wanted
        .iter()
        .copied()
        .filter(|package| {
            !dpkg_output.lines().any(|line| {
                line.split_once(' ').is_some_and(|(name, status)| {
                    name == *package && status == "install ok installed"
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_llvm_major_from_the_nightly_dylib_name() {
        assert_eq!(
            parse_llvm_dylib("libLLVM-22-rust-1.97.0-nightly.so"),
            Some(LlvmDylib {
                file_name: "libLLVM-22-rust-1.97.0-nightly.so".into(),
                link_name: "LLVM-22-rust-1.97.0-nightly".into(),
                major: 22,
            })
        );
        assert_eq!(
            parse_llvm_dylib("libLLVM-23-rust-1.99.0-nightly.so").map(|l| l.major),
            Some(23)
        );
    }

    #[test]
    fn ignores_other_libraries() {
        // The versioned soname is a second name for the same library.
        assert_eq!(
            parse_llvm_dylib("libLLVM.so.22.1-rust-1.97.0-nightly"),
            None
        );
        assert_eq!(
            parse_llvm_dylib("librustc_driver-b5a965480ee51f9a.so"),
            None
        );
        assert_eq!(parse_llvm_dylib("libLLVM-x-rust-1.97.0-nightly.so"), None);
        assert_eq!(parse_llvm_dylib("libLLVM-22.so"), None);
    }

    #[test]
    fn finds_packages_that_are_not_installed() {
        let dpkg = "iproute2 install ok installed\n\
                    tcpdump deinstall ok config-files\n\
                    nftables install ok installed\n";
        assert_eq!(
            not_installed(dpkg, &["iproute2", "tcpdump", "ucarp", "nftables"]),
            ["tcpdump", "ucarp"]
        );
        assert!(not_installed(dpkg, &["iproute2", "nftables"]).is_empty());
    }

    #[test]
    fn finds_the_llvm_of_the_installed_nightly() -> Result<()> {
        // Holds on any machine where setup can build bpf-linker at all.
        let sysroot = nightly_sysroot()?;
        let llvm = find_llvm_dylib(&sysroot.join("lib"))?;
        assert!(llvm.major >= 17, "{llvm:?}");
        assert!(sysroot.join("lib").join(&llvm.file_name).is_file());
        Ok(())
    }
}
