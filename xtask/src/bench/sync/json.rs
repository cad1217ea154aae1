//! The figures as JSON (`--json FILE`), every run's sample kept, so runs
//! can be compared over time.

use serde_json::{Map, Value, json};

use super::scenario::{Bulk, Latency};
use super::table::{Results, bulk_rate, bulk_seconds, first_entry_ms, pooled};
use crate::bench::stats::Summary;

fn rounded(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn summary(summary: Option<Summary>, digits: i32) -> Value {
    summary.map_or(Value::Null, |s| {
        json!({
            "min": rounded(s.min, digits),
            "median": rounded(s.median, digits),
            "max": rounded(s.max, digits),
        })
    })
}

fn bulk_run(run: &Bulk) -> Value {
    json!({
        "seconds": run.took.map(|took| rounded(took.as_secs_f64(), 4)),
        "first_entry_seconds": run.first.map(|first| rounded(first.as_secs_f64(), 4)),
        "entries_per_second": run.rate().map(|rate| rounded(rate, 0)),
        "final_count": run.final_count,
        "fill_seconds": rounded(run.fill.as_secs_f64(), 3),
        "note": run.note,
    })
}

fn latency(runs: &[Latency]) -> Value {
    let pooled = pooled(runs);
    let samples: Vec<Vec<f64>> = runs
        .iter()
        .map(|run| {
            run.samples
                .iter()
                .map(|sample| rounded(sample.as_secs_f64() * 1e3, 4))
                .collect()
        })
        .collect();
    json!({
        "p50_ms": pooled.map(|p| rounded(p.p50_ms, 4)),
        "p99_ms": pooled.map(|p| rounded(p.p99_ms, 4)),
        "max_ms": pooled.map(|p| rounded(p.max_ms, 4)),
        "sent": pooled.map(|p| p.sent),
        "lost": pooled.map(|p| p.lost),
        "watcher_overruns": pooled.map(|p| p.overruns),
        "samples_ms": samples,
    })
}

/// `commit`: what was measured (`git describe`), when known.
pub fn document(results: &Results, commit: Option<&str>, unix_time: u64) -> Value {
    let setup: Map<String, Value> = results
        .implementations
        .iter()
        .map(|implementation| {
            (
                implementation.name().to_owned(),
                Value::from(implementation.setup()),
            )
        })
        .collect();
    let bulk: Vec<Value> = results
        .sizes
        .iter()
        .map(|&size| {
            let by: Map<String, Value> = results
                .implementations
                .iter()
                .map(|&implementation| {
                    let runs = results
                        .bulk
                        .get(&(size, implementation))
                        .map_or(&[][..], Vec::as_slice);
                    (
                        implementation.name().to_owned(),
                        json!({
                            "first_entry_ms": summary(first_entry_ms(runs), 1),
                            "seconds": summary(bulk_seconds(runs), 4),
                            "entries_per_second": summary(bulk_rate(runs), 0),
                            "runs": runs.iter().map(bulk_run).collect::<Vec<_>>(),
                        }),
                    )
                })
                .collect();
            json!({ "entries": size, "results": by })
        })
        .collect();
    let latency: Map<String, Value> = results
        .latency
        .iter()
        .map(|(implementation, runs)| (implementation.name().to_owned(), latency(runs)))
        .collect();
    json!({
        "benchmark": "sync",
        "runs": results.runs,
        "unix_time": unix_time,
        "commit": commit,
        "setup": setup,
        "probes": results.probes,
        "probe_rate_hz": rounded(results.probe_rate, 1),
        "bulk": bulk,
        "latency": latency,
        "missed_goals": super::table::missed_goals(results),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::daemons::Implementation;
    use super::*;

    #[test]
    fn every_run_is_kept_with_its_summary() {
        let run = |seconds: Option<f64>| Bulk {
            entries: 1000,
            took: seconds.map(Duration::from_secs_f64),
            first: Some(Duration::from_millis(30)),
            final_count: 1000,
            limit: Duration::from_mins(1),
            fill: Duration::from_millis(5),
            note: String::new(),
        };
        let results = Results {
            runs: 2,
            implementations: vec![Implementation::Carpd, Implementation::ConntrackdInject],
            sizes: vec![1000],
            bulk: [(
                (1000, Implementation::Carpd),
                vec![run(Some(0.5)), run(None)],
            )]
            .into(),
            latency: [(
                Implementation::Carpd,
                vec![Latency {
                    samples: vec![Duration::from_micros(1500)],
                    sent: 1,
                    lost: 0,
                    overruns: 0,
                }],
            )]
            .into(),
            probes: 1,
            probe_rate: 250.0,
        };
        let document = document(&results, Some("abc123"), 1_700_000_000);
        let carpd = &document["bulk"][0]["results"]["carpd"];
        assert_eq!(carpd["runs"].as_array().map(Vec::len), Some(2));
        assert_eq!(carpd["runs"][1]["seconds"], Value::Null);
        assert_eq!(carpd["entries_per_second"]["median"], json!(2000.0));
        assert_eq!(
            document["bulk"][0]["results"]["conntrackd-inject"]["seconds"],
            Value::Null
        );
        assert_eq!(document["latency"]["carpd"]["p99_ms"], json!(1.5));
        assert_eq!(document["commit"], json!("abc123"));
    }
}
