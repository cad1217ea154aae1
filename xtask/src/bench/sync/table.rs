//! The results as rows (a cell per daemon, carpd's ratio to the best
//! conntrackd) and as the printed table. Pure: unit-tested below.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::daemons::Implementation;
use super::scenario::{Bulk, Latency};
use crate::bench::stats::Summary;

/// Everything one benchmark run measured.
pub struct Results {
    pub runs: usize,
    /// The daemons measured, in the table's column order.
    pub implementations: Vec<Implementation>,
    /// Table sizes, smallest first.
    pub sizes: Vec<u64>,
    pub bulk: BTreeMap<(u64, Implementation), Vec<Bulk>>,
    pub latency: BTreeMap<Implementation, Vec<Latency>>,
    pub probes: u32,
    pub probe_rate: f64,
}

/// What carpd is held to, against the best conntrackd of the run.
pub const GOAL: &str =
    "bulk rate above conntrackd's at every size, p99 update latency below conntrackd's";

/// The `q` quantile of `sorted` (ascending), nearest rank: the smallest
/// sample with at least `q` of all samples at or below it.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a rank between 1 and the sample count"
    )]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Latency figures over every run of one daemon, pooled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pooled {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub sent: u64,
    pub lost: u64,
    pub overruns: u64,
}

pub fn pooled(runs: &[Latency]) -> Option<Pooled> {
    let mut samples: Vec<f64> = runs
        .iter()
        .flat_map(|run| run.samples.iter().map(ms))
        .collect();
    samples.sort_by(f64::total_cmp);
    Some(Pooled {
        p50_ms: percentile(&samples, 0.50)?,
        p99_ms: percentile(&samples, 0.99)?,
        max_ms: *samples.last()?,
        sent: runs.iter().map(|run| u64::from(run.sent)).sum(),
        lost: runs.iter().map(|run| u64::from(run.lost)).sum(),
        overruns: runs.iter().map(|run| run.overruns).sum(),
    })
}

fn ms(duration: &Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Milliseconds from B's start to its first entry, over every run.
pub fn first_entry_ms(runs: &[Bulk]) -> Option<Summary> {
    let ms: Vec<f64> = runs
        .iter()
        .filter_map(|run| run.first.map(|first| first.as_secs_f64() * 1e3))
        .collect();
    Summary::of(&ms)
}

/// Seconds to all entries over the runs that completed.
pub fn bulk_seconds(runs: &[Bulk]) -> Option<Summary> {
    let seconds: Vec<f64> = runs
        .iter()
        .filter_map(|run| run.took.map(|took| took.as_secs_f64()))
        .collect();
    Summary::of(&seconds)
}

/// Entries per second over the runs that completed.
pub fn bulk_rate(runs: &[Bulk]) -> Option<Summary> {
    let rates: Vec<f64> = runs.iter().filter_map(Bulk::rate).collect();
    Summary::of(&rates)
}

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Better {
    Lower,
    Higher,
}

/// carpd's value over the best conntrackd's, when both are there.
fn ratio(values: &[(Implementation, Option<f64>)], better: Better) -> Option<f64> {
    let carpd = values
        .iter()
        .find(|(implementation, _)| *implementation == Implementation::Carpd)
        .and_then(|(_, value)| *value)?;
    let peers = values
        .iter()
        .filter(|(implementation, _)| implementation.is_conntrackd())
        .filter_map(|(_, value)| *value);
    let best = match better {
        Better::Lower => peers.reduce(f64::min),
        Better::Higher => peers.reduce(f64::max),
    }?;
    (best > 0.0).then(|| carpd / best)
}

struct Row {
    label: String,
    cells: Vec<String>,
    ratio: Option<f64>,
}

const LABEL_WIDTH: usize = 28;
const CELL_WIDTH: usize = 27;
const RATIO_WIDTH: usize = 16;

pub fn render(results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "State-sync benchmark: {} run(s) of each size per daemon, min / median / max over the runs",
        results.runs
    );
    for implementation in &results.implementations {
        let _ = writeln!(out, "  {implementation}: {}", implementation.setup());
    }
    let _ = writeln!(
        out,
        "  bulk: A's table filled with N TCP ESTABLISHED entries, A's daemon started, then B's; timed from B's daemon start until B's kernel table holds N"
    );
    let _ = writeln!(
        out,
        "  latency: {} entries created on A, one every {:.1} ms, each from its create request on A to its NEW event in B's kernel; all runs pooled",
        results.probes,
        1e3 / results.probe_rate
    );
    out.push('\n');
    let _ = write!(out, "{:<LABEL_WIDTH$}", "");
    for implementation in &results.implementations {
        let _ = write!(out, "{:>CELL_WIDTH$}", implementation.name());
    }
    let _ = writeln!(out, "{:>RATIO_WIDTH$}", "carpd/best");
    for &size in &results.sizes {
        let _ = writeln!(out, "bulk sync of {size} entries");
        for row in bulk_rows(results, size) {
            push_row(&mut out, &row);
        }
    }
    if !results.latency.is_empty() {
        let _ = writeln!(out, "update latency");
        for row in latency_rows(results) {
            push_row(&mut out, &row);
        }
    }
    let _ = writeln!(
        out,
        "carpd/best: carpd's median over the best conntrackd's of the run; - where one is missing"
    );
    if results
        .implementations
        .contains(&Implementation::ConntrackdCommit)
    {
        let _ = writeln!(
            out,
            "conntrackd-commit has no latency figures: an update stays in B's cache until the next commit"
        );
    }
    let missed = missed_goals(results);
    let _ = writeln!(
        out,
        "goal: {GOAL}: {}",
        if missed.is_empty() {
            "met".to_owned()
        } else {
            format!("missed ({})", missed.join("; "))
        }
    );
    out
}

fn push_row(out: &mut String, row: &Row) {
    let _ = write!(out, "  {:<width$}", row.label, width = LABEL_WIDTH - 2);
    for cell in &row.cells {
        let _ = write!(out, "{cell:>CELL_WIDTH$}");
    }
    let ratio = row.ratio.map_or_else(|| "-".to_owned(), format_ratio);
    let _ = writeln!(out, "{ratio:>RATIO_WIDTH$}");
}

fn format_ratio(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.0}x")
    } else if ratio >= 0.1 {
        format!("{ratio:.2}x")
    } else {
        format!("{ratio:.3}x")
    }
}

fn bulk_runs(results: &Results, size: u64, implementation: Implementation) -> &[Bulk] {
    results
        .bulk
        .get(&(size, implementation))
        .map_or(&[][..], Vec::as_slice)
}

fn bulk_rows(results: &Results, size: u64) -> Vec<Row> {
    let row = |label: &str,
               f: fn(&[Bulk]) -> Option<Summary>,
               better,
               format: fn(f64) -> String| {
        let summaries: Vec<(Implementation, Option<Summary>)> = results
            .implementations
            .iter()
            .map(|&implementation| (implementation, f(bulk_runs(results, size, implementation))))
            .collect();
        let medians: Vec<(Implementation, Option<f64>)> = summaries
            .iter()
            .map(|(implementation, summary)| (*implementation, summary.map(|s| s.median)))
            .collect();
        Row {
            label: label.to_owned(),
            cells: summaries
                .iter()
                .map(|(_, summary)| cell(*summary, format))
                .collect(),
            ratio: ratio(&medians, better),
        }
    };
    let complete: Vec<String> = results
        .implementations
        .iter()
        .map(|&implementation| {
            let all = bulk_runs(results, size, implementation);
            let done = all.iter().filter(|run| run.took.is_some()).count();
            format!("{done} of {}", all.len())
        })
        .collect();
    vec![
        row("first entry (ms)", first_entry_ms, Better::Lower, |v| {
            format!("{v:.0}")
        }),
        row("time to all (s)", bulk_seconds, Better::Lower, |v| {
            format!("{v:.2}")
        }),
        row("rate (entries/s)", bulk_rate, Better::Higher, |v| {
            format!("{:.1}k", v / 1e3)
        }),
        Row {
            label: "runs complete".into(),
            cells: complete,
            ratio: None,
        },
    ]
}

fn cell(summary: Option<Summary>, format: fn(f64) -> String) -> String {
    summary.map_or_else(
        || "-".to_owned(),
        |s| {
            format!(
                "{} / {} / {}",
                format(s.min),
                format(s.median),
                format(s.max)
            )
        },
    )
}

/// Each daemon's latency runs pooled, in table order.
fn pooled_latency(results: &Results) -> Vec<(Implementation, Option<Pooled>)> {
    results
        .implementations
        .iter()
        .map(|&implementation| {
            (
                implementation,
                results
                    .latency
                    .get(&implementation)
                    .and_then(|runs| pooled(runs)),
            )
        })
        .collect()
}

fn latency_rows(results: &Results) -> Vec<Row> {
    let pooled = pooled_latency(results);
    let figure = |label: &str, f: fn(&Pooled) -> f64| {
        let values: Vec<(Implementation, Option<f64>)> = pooled
            .iter()
            .map(|(implementation, p)| (*implementation, p.as_ref().map(f)))
            .collect();
        Row {
            label: label.to_owned(),
            cells: values
                .iter()
                .map(|(_, v)| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}")))
                .collect(),
            ratio: ratio(&values, Better::Lower),
        }
    };
    vec![
        figure("p50 (ms)", |p| p.p50_ms),
        figure("p99 (ms)", |p| p.p99_ms),
        figure("max (ms)", |p| p.max_ms),
        Row {
            label: "lost (of sent)".into(),
            cells: pooled
                .iter()
                .map(|(_, p)| {
                    p.map_or_else(|| "-".to_owned(), |p| format!("{} of {}", p.lost, p.sent))
                })
                .collect(),
            ratio: None,
        },
    ]
}

/// The goals carpd missed, said in words; empty when all are met (or
/// when no conntrackd was measured to compare with).
pub fn missed_goals(results: &Results) -> Vec<String> {
    let mut missed = Vec::new();
    for &size in &results.sizes {
        let rates: Vec<(Implementation, Option<f64>)> = results
            .implementations
            .iter()
            .map(|&implementation| {
                (
                    implementation,
                    bulk_rate(bulk_runs(results, size, implementation)).map(|s| s.median),
                )
            })
            .collect();
        let carpd_done = rates.iter().any(|(implementation, rate)| {
            *implementation == Implementation::Carpd && rate.is_some()
        });
        if !carpd_done {
            missed.push(format!("bulk of {size}: carpd did not complete"));
        } else if ratio(&rates, Better::Higher).is_some_and(|ratio| ratio <= 1.0) {
            missed.push(format!("bulk of {size}: rate not above conntrackd's"));
        }
    }
    if results.latency.contains_key(&Implementation::Carpd) {
        let p99: Vec<(Implementation, Option<f64>)> = pooled_latency(results)
            .into_iter()
            .map(|(implementation, p)| (implementation, p.map(|p| p.p99_ms)))
            .collect();
        if ratio(&p99, Better::Lower).is_some_and(|ratio| ratio >= 1.0) {
            missed.push("p99 latency not below conntrackd's".to_owned());
        }
    } else if results.implementations.contains(&Implementation::Carpd) {
        missed.push("no latency figures for carpd".to_owned());
    }
    missed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(entries: u64, seconds: Option<f64>) -> Bulk {
        Bulk {
            entries,
            took: seconds.map(Duration::from_secs_f64),
            first: Some(Duration::from_millis(50)),
            final_count: entries,
            limit: Duration::from_mins(1),
            fill: Duration::ZERO,
            note: String::new(),
        }
    }

    fn latency(ms: &[u64], lost: u32) -> Latency {
        Latency {
            samples: ms.iter().map(|&ms| Duration::from_millis(ms)).collect(),
            sent: u32::try_from(ms.len()).unwrap_or(0) + lost,
            lost,
            overruns: 0,
        }
    }

    /// carpd, conntrackd-inject and conntrackd-commit; bulk seconds of
    /// each, latency samples of the first two.
    fn results(bulk_seconds: [f64; 3], latencies: (&[u64], &[u64])) -> Results {
        let [carpd, inject, commit] = bulk_seconds;
        Results {
            runs: 1,
            implementations: Implementation::ALL.to_vec(),
            sizes: vec![100_000],
            bulk: [
                (
                    (100_000, Implementation::Carpd),
                    vec![bulk(100_000, Some(carpd))],
                ),
                (
                    (100_000, Implementation::ConntrackdInject),
                    vec![bulk(100_000, Some(inject))],
                ),
                (
                    (100_000, Implementation::ConntrackdCommit),
                    vec![bulk(100_000, Some(commit))],
                ),
            ]
            .into(),
            latency: [
                (Implementation::Carpd, vec![latency(latencies.0, 0)]),
                (
                    Implementation::ConntrackdInject,
                    vec![latency(latencies.1, 1)],
                ),
            ]
            .into(),
            probes: 1000,
            probe_rate: 250.0,
        }
    }

    fn line<'a>(text: &'a str, label: &str) -> &'a str {
        text.lines()
            .find(|line| line.contains(label))
            .unwrap_or_else(|| panic!("no {label:?} row in\n{text}"))
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 0.50), Some(50.0));
        assert_eq!(percentile(&samples, 0.99), Some(99.0));
        assert_eq!(percentile(&samples, 1.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn latency_is_pooled_over_the_runs() {
        let runs = [latency(&[1, 2, 3], 0), latency(&[4, 5], 2)];
        let pooled = pooled(&runs).expect("samples");
        assert!((pooled.p50_ms - 3.0).abs() < 1e-9);
        assert!((pooled.max_ms - 5.0).abs() < 1e-9);
        assert_eq!((pooled.sent, pooled.lost), (7, 2));
    }

    #[test]
    fn rates_count_only_completed_runs() {
        let runs = [bulk(100_000, Some(0.5)), bulk(100_000, None)];
        let rate = bulk_rate(&runs).expect("one completed run");
        assert!((rate.median - 200_000.0).abs() < 1e-6);
        assert!(bulk_seconds(&[bulk(10, None)]).is_none());
    }

    #[test]
    fn the_ratio_is_against_the_best_conntrackd() {
        // conntrackd-commit is the faster conntrackd here: 1 s, not 4 s.
        let text = render(&results([0.5, 4.0, 1.0], (&[2, 3, 4], &[10, 20, 30])));
        assert!(text.contains("bulk sync of 100000 entries"), "{text}");
        let time = line(&text, "time to all");
        assert!(time.contains("0.50 / 0.50 / 0.50"), "{time}");
        assert!(time.trim_end().ends_with("0.50x"), "{time}");
        let rate = line(&text, "rate (entries/s)");
        assert!(rate.contains("200.0k"), "{rate}");
        assert!(rate.trim_end().ends_with("2.00x"), "{rate}");
        // Latency: conntrackd-commit has none, inject's is the best.
        let p99 = line(&text, "p99 (ms)");
        assert!(p99.trim_end().ends_with("0.13x"), "{p99}");
        let lost = line(&text, "lost (of sent)");
        assert!(lost.contains("0 of 3") && lost.contains("1 of 4"), "{lost}");
        assert!(text.trim_end().ends_with("met"), "{text}");
    }

    #[test]
    fn missed_goals_are_named() {
        let slower = results([3.0, 4.0, 2.0], (&[40], &[10]));
        assert_eq!(
            missed_goals(&slower),
            [
                "bulk of 100000: rate not above conntrackd's",
                "p99 latency not below conntrackd's"
            ]
        );
        assert!(missed_goals(&results([1.0, 4.0, 2.0], (&[1], &[10]))).is_empty());
        let mut stuck = results([1.0, 4.0, 2.0], (&[1], &[10]));
        stuck
            .bulk
            .insert((100_000, Implementation::Carpd), vec![bulk(100_000, None)]);
        assert_eq!(
            missed_goals(&stuck),
            ["bulk of 100000: carpd did not complete"]
        );
    }
}
