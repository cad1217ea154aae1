//! `cargo xtask bench sync`: carpd's conntrack state sync against
//! conntrackd's, on the same pair of namespaces, in the same run.
//!
//! - Bulk: node A's table is filled with N entries (100k and 1M by
//!   default), A's daemon started, then B's; the time from B's start until
//!   B's kernel table holds all N is the figure, and N over it the rate.
//! - Latency: with both in sync, entries are created on A one at a time
//!   (1000 at 250/s by default) and each is timed from its creation on A to
//!   its NEW event on B; p50, p99 and max over every run.
//!
//! conntrackd runs in both of its ways to keep the peer's state (see
//! `daemons`): injected into the kernel as it arrives, or cached and
//! committed; carpd's ratio is to the better of the two.
//!
//! `inside`: threads in a namespace; `kernel`: filling, counting, probing
//! (over ctnetlink, with carpd's own adapter); `flows`: the synthetic
//! entries; `daemons`: the daemons' configs; `limits`: the host's
//! conntrack limits, raised and put back; `scenario`: one run; `table`,
//! `json`: the output.

mod daemons;
mod flows;
mod inside;
mod json;
mod kernel;
mod limits;
mod scenario;
mod table;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use self::daemons::Implementation;
use self::limits::HostLimits;
use self::scenario::{Context, Report};
use self::table::Results;
use crate::release;
use crate::tools::{command, is_root, stdout};

/// Table sizes without `--entries`.
const DEFAULT_SIZES: [u64; 2] = [100_000, 1_000_000];
/// `--quick` leaves out sizes above this.
const QUICK_LIMIT: u64 = 100_000;

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Table sizes to bulk-sync, comma-separated.
    #[arg(long, value_name = "N,...", value_delimiter = ',', default_values_t = DEFAULT_SIZES)]
    entries: Vec<u64>,
    /// Only the sizes up to 100000 (skips the slow million).
    #[arg(long)]
    quick: bool,
    /// The daemons to measure, comma-separated: carpd, conntrackd-inject,
    /// conntrackd-commit.
    #[arg(long, value_name = "NAME,...", value_delimiter = ',', default_values = ["carpd", "conntrackd-inject", "conntrackd-commit"], value_parser = parse_daemon)]
    daemons: Vec<Implementation>,
    /// Runs of each size per daemon.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Entries created one at a time on A for the latency figures (on the
    /// runs of the smallest size).
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    probes: u32,
    /// Probes created per second.
    #[arg(long, value_name = "HZ", default_value_t = 250, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    probe_rate: u32,
    /// Seconds a bulk may take before it counts as incomplete (default:
    /// 75 + 1 per 20000 entries).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    bulk_limit: Option<u64>,
    /// Also write the figures (every run's sample) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Keep every run's configs and daemon logs (normally only those of a
    /// failed benchmark are kept).
    #[arg(long)]
    keep: bool,
}

pub fn run(args: &SyncArgs) -> Result<()> {
    if !is_root() {
        bail!(
            "the benchmark creates network namespaces and runs the daemons: run it as root (`sudo -E cargo xtask bench sync`)"
        );
    }
    let sizes = sizes(&args.entries, args.quick)?;
    let mut daemons = args.daemons.clone();
    daemons.sort_unstable();
    daemons.dedup();
    if super::given_binaries() {
        println!("bench: using $CARPD_BIN and $CARPCTL_BIN, not building");
    } else {
        release::build()?;
    }
    if daemons.iter().any(|daemon| daemon.is_conntrackd()) {
        daemons::find_program("conntrackd")?;
    }
    let interrupts = crate::interrupt::interrupts()?;
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let limits = HostLimits::raise(largest, u64::from(args.probes))?;
    let dir = std::env::temp_dir().join(format!("carp-bench-sync-{}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ctx = Context {
        dir: &dir,
        interrupts: &interrupts,
        probes: args.probes,
        probe_interval: Duration::from_secs(1) / args.probe_rate,
        bulk_limit: args.bulk_limit.map(Duration::from_secs),
    };
    let started = Instant::now();
    let results = match measure_all(&ctx, args, &sizes, &daemons) {
        Ok(results) => results,
        Err(error) => {
            return Err(error.context(format!(
                "benchmark failed after {:.0}s (configs and logs in {})",
                started.elapsed().as_secs_f64(),
                dir.display()
            )));
        }
    };
    drop(limits);
    println!("\n{}", table::render(&results));
    if let Some(path) = &args.json {
        write_json(path, &results)?;
        println!("figures written to {}", path.display());
    }
    if args.keep {
        println!("configs and logs kept in {}", dir.display());
    } else {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    println!("took {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn parse_daemon(name: &str) -> Result<Implementation, String> {
    Implementation::ALL
        .into_iter()
        .find(|implementation| implementation.name() == name)
        .ok_or_else(|| {
            format!("{name:?} is not one of carpd, conntrackd-inject, conntrackd-commit")
        })
}

/// The sizes to run, smallest first, without repeats.
fn sizes(entries: &[u64], quick: bool) -> Result<Vec<u64>> {
    let mut sizes: Vec<u64> = entries
        .iter()
        .copied()
        .filter(|&size| !quick || size <= QUICK_LIMIT)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.contains(&0) {
        bail!("--entries: a table of 0 entries has nothing to sync");
    }
    if let Some(&too_many) = sizes.iter().find(|&&size| size > 10_000_000) {
        bail!("--entries: {too_many} is more than this benchmark makes (10000000)");
    }
    if sizes.is_empty() {
        bail!("no table size left to run (--quick keeps sizes up to {QUICK_LIMIT})");
    }
    Ok(sizes)
}

/// Every run of every size, the daemons taking turns so that a busy spell
/// of the machine does not fall on one of them only.
fn measure_all(
    ctx: &Context,
    args: &SyncArgs,
    sizes: &[u64],
    daemons: &[Implementation],
) -> Result<Results> {
    let runs = usize::try_from(args.runs).context("--runs is too large")?;
    let smallest = sizes.first().copied().unwrap_or(0);
    let mut bulk: BTreeMap<(u64, Implementation), Vec<_>> = BTreeMap::new();
    let mut latency: BTreeMap<Implementation, Vec<_>> = BTreeMap::new();
    for run in 1..=runs {
        for &size in sizes {
            for &implementation in daemons {
                ctx.check_interrupt()?;
                let tag = format!("{implementation}-{size}-{run}");
                let measure_latency = size == smallest && implementation.installs_updates();
                let Report {
                    bulk: outcome,
                    latency: probes,
                } = scenario::run(ctx, implementation, size, &tag, measure_latency)?;
                println!(
                    "{implementation:<17} {size:>8} run {run}/{runs}: {}",
                    bulk_progress(&outcome)
                );
                if let Some(probes) = &probes {
                    println!(
                        "{implementation:<17} {:>8} run {run}/{runs}: {}",
                        "latency",
                        latency_progress(probes)
                    );
                }
                if measure_latency && probes.is_none() {
                    println!(
                        "{implementation:<17} {:>8} run {run}/{runs}: no latency run (the bulk did not complete)",
                        "latency"
                    );
                }
                bulk.entry((size, implementation))
                    .or_default()
                    .push(outcome);
                if let Some(probes) = probes {
                    latency.entry(implementation).or_default().push(probes);
                }
            }
        }
    }
    Ok(Results {
        runs,
        implementations: daemons.to_vec(),
        sizes: sizes.to_vec(),
        bulk,
        latency,
        probes: args.probes,
        probe_rate: f64::from(args.probe_rate),
    })
}

fn bulk_progress(bulk: &scenario::Bulk) -> String {
    let first = bulk.first.map_or_else(
        || "-".to_owned(),
        |first| format!("{:.0} ms", first.as_secs_f64() * 1e3),
    );
    let outcome = match (bulk.took, bulk.rate()) {
        (Some(took), Some(rate)) => format!(
            "all {} entries in {:.2}s ({:.1}k/s)",
            bulk.entries,
            took.as_secs_f64(),
            rate / 1e3
        ),
        _ => format!(
            "INCOMPLETE: {} of {} entries after {}s",
            bulk.final_count,
            bulk.entries,
            bulk.limit.as_secs()
        ),
    };
    let note = if bulk.note.is_empty() {
        String::new()
    } else {
        format!(" [{}]", bulk.note)
    };
    format!(
        "{outcome}, first entry after {first} (A filled in {:.1}s){note}",
        bulk.fill.as_secs_f64()
    )
}

fn latency_progress(latency: &scenario::Latency) -> String {
    let pooled = table::pooled(std::slice::from_ref(latency));
    let figures = pooled.map_or_else(
        || "no sample".to_owned(),
        |p| {
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                p.p50_ms, p.p99_ms, p.max_ms
            )
        },
    );
    let overruns = if latency.overruns > 0 {
        format!(" [watcher overran {} time(s)]", latency.overruns)
    } else {
        String::new()
    };
    format!(
        "{figures}, {} of {} lost{overruns}",
        latency.lost, latency.sent
    )
}

fn write_json(path: &Path, results: &Results) -> Result<()> {
    // What was measured, when the tree is a git checkout.
    let commit = stdout(command("git").args(["describe", "--always", "--dirty"]))
        .ok()
        .map(|text| text.trim().to_owned());
    let unix_time = super::capture::now() / 1_000_000_000;
    let document = json::document(results, commit.as_deref(), unix_time);
    let text = serde_json::to_string_pretty(&document).context("cannot encode the figures")?;
    fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_sorted_and_quick_drops_the_million() -> Result<()> {
        assert_eq!(
            sizes(&[1_000_000, 100_000, 100_000], false)?,
            [100_000, 1_000_000]
        );
        assert_eq!(sizes(&DEFAULT_SIZES, true)?, [100_000]);
        assert!(sizes(&[1_000_000], true).is_err());
        assert!(sizes(&[0], false).is_err());
        Ok(())
    }
}
