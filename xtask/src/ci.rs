//! `cargo xtask test`: every check CI makes, in the order that fails
//! cheapest first. The namespace tests use the release binaries, handed to
//! them in `CARPD_BIN` and `CARPCTL_BIN`.

use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::release;
use crate::setup;
use crate::test_summary;
use crate::tools::{cargo, describe, is_root, run as run_command};

pub fn run(cargo_test_args: &[String]) -> Result<()> {
    if !is_root() {
        bail!(
            "cargo xtask test must run as root: the namespace and BPF tests create network namespaces and load XDP programs (try `sudo -E cargo xtask test`)"
        );
    }
    let started = Instant::now();
    step("setup", setup::run)?;
    step_command("fmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    step_command(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let binaries = step("release build", release::compile)?;
    let mut tests = cargo();
    tests
        .args(["test", "--workspace"])
        .args(cargo_test_args)
        .env("CARPD_BIN", &binaries.carpd)
        .env("CARPCTL_BIN", &binaries.carpctl);
    announce("test", Some(&describe(&tests)));
    let totals = timed("test", || test_summary::run_counting(&mut tests))?;
    println!(
        "xtask test: all steps passed in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    // One closing line for all test binaries together.
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    Ok(())
}

fn step<T>(name: &str, action: impl FnOnce() -> Result<T>) -> Result<T> {
    announce(name, None);
    timed(name, action)
}

fn step_command(name: &str, command: &mut Command) -> Result<()> {
    announce(name, Some(&describe(command)));
    timed(name, || run_command(command))
}

fn announce(name: &str, command_line: Option<&str>) {
    match command_line {
        Some(line) => println!("==> {name}: {line}"),
        None => println!("==> {name}"),
    }
}

fn timed<T>(name: &str, action: impl FnOnce() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    match action() {
        Ok(value) => {
            println!("==> {name}: ok ({:.1}s)", started.elapsed().as_secs_f64());
            Ok(value)
        }
        Err(error) => bail!("step `{name}` failed: {error:#}"),
    }
}
