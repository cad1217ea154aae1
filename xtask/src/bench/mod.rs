//! `cargo xtask bench failover`: carpd against ucarp and keepalived on the
//! same namespace segment, same VIP, equivalent timers, N runs each of a
//! crash, a link failure (and fail-back) and a planned handover; one table
//! of min / median / max per implementation, carpd's figures also as ratios
//! to its own master-down time and to the best peer of the same run.
//!
//! - `events`: tcpdump lines -> events; `measure`: events -> figures;
//!   `stats`, `table`, `json`: figures -> output (all pure, unit-tested).
//! - `impls`: the daemons' settings; `daemons`: running them;
//!   `capture`: the tcpdump; `scenario`: one run from setup to figures;
//!
//! The steady check that precedes every action fires on one of the master's
//! advertisements, so with advbase 1 the action follows an advertisement by
//! a few milliseconds: failover figures sit near the full master-down time,
//! the worst case, alike for every implementation.

mod capture;
mod daemons;
mod events;
mod impls;
mod json;
mod measure;
mod scenario;
mod stats;
mod sync;
mod table;
mod xdp;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};

use self::daemons::Tools;
use self::impls::{Implementation, Mode};
use self::measure::Outcome;
use self::scenario::{Context, Event, Scenario};
use self::table::Results;
use crate::release;
use crate::tools::{command, is_root, stdout};

#[derive(Subcommand, Debug)]
pub enum Bench {
    /// carpd against ucarp and keepalived: crash, link and planned failover.
    #[command(
        after_help = "Runs as root. Builds carpd and carpctl first, unless CARPD_BIN and CARPCTL_BIN both name the binaries to use."
    )]
    Failover(FailoverArgs),
    /// Nanoseconds per packet of the XDP program on each path, next to a
    /// bare `XDP_PASS` program measured in the same run (as root).
    Xdp,
    /// carpd's conntrack state sync against conntrackd's: bulk sync of
    /// 100k and 1M entries, and update latency (p50 / p99).
    #[command(
        after_help = "Runs as root. Builds carpd and carpctl first, unless CARPD_BIN and CARPCTL_BIN both name the binaries to use."
    )]
    Sync(sync::SyncArgs),
}

#[derive(Args, Debug)]
pub struct FailoverArgs {
    /// Runs of each scenario per implementation.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Also write the figures (every run's sample) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// carpd at advbase 0 (advskew 1 / 2) against keepalived at its fastest
    /// (VRRP version 3, an advertisement every 10 ms), plus a steady run
    /// that must see no failover.
    #[arg(long)]
    fast: bool,
    /// Length of the steady run of --fast, in seconds.
    #[arg(long, value_name = "S", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    steady_secs: u64,
    /// During the steady run keep both cores busy (a spinning process per
    /// core) and send 500 echo requests/s to the VIP.
    #[arg(long)]
    load: bool,
    /// Keep every run's configs, daemon logs and capture (normally only
    /// those of a failed run are kept).
    #[arg(long)]
    keep: bool,
}

pub fn run(bench: Bench) -> Result<()> {
    let args = match bench {
        Bench::Failover(args) => args,
        Bench::Xdp => return xdp::run(),
        Bench::Sync(args) => return sync::run(&args),
    };
    if !is_root() {
        bail!(
            "the benchmark creates network namespaces and runs the daemons: run it as root (`sudo -E cargo xtask bench failover`)"
        );
    }
    if given_binaries() {
        println!("bench: using $CARPD_BIN and $CARPCTL_BIN, not building");
    } else {
        release::build()?;
    }
    let interrupts = crate::interrupt::interrupts()?;
    let mode = if args.fast { Mode::Fast } else { Mode::Normal };
    let tools = Tools::find(mode)?;
    let dir = std::env::temp_dir().join(format!("carp-bench-{}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ctx = Context {
        mode,
        tools: &tools,
        dir: &dir,
        interrupts: &interrupts,
        keep: args.keep,
    };
    let started = Instant::now();
    let results = match measure_all(&ctx, &args) {
        Ok(results) => results,
        Err(error) => {
            return Err(error.context(format!(
                "benchmark failed after {:.0}s (configs, logs and captures in {})",
                started.elapsed().as_secs_f64(),
                dir.display()
            )));
        }
    };
    println!("\n{}", table::render(&results));
    if let Some(path) = &args.json {
        write_json(path, &results)?;
        println!("figures written to {}", path.display());
    }
    if args.keep {
        println!("configs, logs and captures kept in {}", dir.display());
    } else {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    println!("took {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Both binaries named in the environment (as `cargo xtask test` does):
/// then those are measured, not a fresh release build.
fn given_binaries() -> bool {
    ["CARPD_BIN", "CARPCTL_BIN"]
        .iter()
        .all(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// Every run of every scenario, the implementations taking turns so that a
/// busy spell of the machine does not fall on one of them only.
fn measure_all(ctx: &Context, args: &FailoverArgs) -> Result<Results> {
    let runs = usize::try_from(args.runs).context("--runs is too large")?;
    let implementations = ctx.mode.implementations();
    let mut samples: BTreeMap<(Implementation, Event), Vec<Outcome>> = BTreeMap::new();
    for run in 1..=runs {
        for scenario in Scenario::ALL {
            for &implementation in implementations {
                ctx.check_interrupt()?;
                let report = scenario::run(ctx, implementation, scenario, run)?;
                for (event, outcome) in report.figures {
                    println!(
                        "{implementation:<10} {:<9} run {run}/{runs}: {}{}",
                        event.key(),
                        progress(&outcome),
                        drops_note(report.capture_drops)
                    );
                    samples
                        .entry((implementation, event))
                        .or_default()
                        .push(outcome);
                }
            }
        }
    }
    let mut steady = BTreeMap::new();
    if ctx.mode == Mode::Fast {
        let duration = Duration::from_secs(args.steady_secs);
        for &implementation in implementations {
            println!(
                "{implementation:<10} steady run of {}s{}",
                args.steady_secs,
                if args.load { " under load" } else { "" }
            );
            let report = scenario::steady(ctx, implementation, duration, args.load)?;
            println!(
                "{implementation:<10} steady: {} change(s) of master, {} backup advert(s), {} of {} echo replies lost{}",
                report.figures.transitions,
                report.figures.backup_adverts,
                report.figures.lost,
                report.figures.requests,
                drops_note(report.capture_drops)
            );
            steady.insert(implementation, report.figures);
        }
    }
    Ok(Results {
        mode: ctx.mode,
        runs,
        samples,
        steady,
        steady_secs: args.steady_secs,
        steady_load: args.load,
        planned_method: daemons::planned_method(ctx.mode),
    })
}

fn progress(outcome: &Outcome) -> String {
    let ms = |figure: Option<Duration>| {
        figure.map_or_else(
            || "-".to_owned(),
            |d| format!("{:.1} ms", d.as_secs_f64() * 1e3),
        )
    };
    format!(
        "advert {}, GARP {}, echo reply {}, lost {}, duplicate {:.1} ms{}",
        ms(outcome.advert),
        ms(outcome.garp),
        ms(outcome.reply),
        outcome.lost,
        outcome.duplicate.as_secs_f64() * 1e3,
        if outcome.took_over {
            ""
        } else {
            " (NO TAKEOVER)"
        }
    )
}

/// A warning when tcpdump lost packets: that run's figures may be late.
fn drops_note(drops: Option<u64>) -> String {
    match drops {
        Some(0) => String::new(),
        Some(dropped) => format!(" [capture dropped {dropped} packets: figures may be late]"),
        None => " [capture drop count unknown]".to_owned(),
    }
}

fn write_json(path: &Path, results: &Results) -> Result<()> {
    // What was measured, when the tree is a git checkout.
    let commit = stdout(command("git").args(["describe", "--always", "--dirty"]))
        .ok()
        .map(|text| text.trim().to_owned());
    let unix_time = capture::now() / 1_000_000_000;
    let document = json::document(results, commit.as_deref(), unix_time);
    let text = serde_json::to_string_pretty(&document).context("cannot encode the figures")?;
    fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}
