//! The table's figures as JSON (`--json FILE`), so runs can be compared
//! over time: the same rows, with every run's sample kept.

use serde_json::{Map, Value, json};

use super::impls::{self, Implementation};
use super::table::{Cell, Results, ping_rate, rows};

/// Microsecond precision is all the capture gives for a time in ms.
fn rounded(value: f64) -> f64 {
    (value * 1e3).round() / 1e3
}

fn cell(cell: &Cell) -> Value {
    let samples: Vec<Option<f64>> = cell.samples.iter().map(|s| s.map(rounded)).collect();
    json!({
        "min": cell.summary.map(|s| rounded(s.min)),
        "median": cell.summary.map(|s| rounded(s.median)),
        "max": cell.summary.map(|s| rounded(s.max)),
        "samples": samples,
        "runs": cell.runs,
        "no_takeover_runs": cell.failed,
        "not_seen_runs": cell.missing,
    })
}

/// `commit`: what was measured (`git describe`), when known.
pub fn document(results: &Results, commit: Option<&str>, unix_time: u64) -> Value {
    let implementations = results.mode.implementations();
    let settings: Map<String, Value> = implementations
        .iter()
        .map(|implementation| {
            (
                implementation.name().to_owned(),
                json!({
                    "settings": impls::describe(*implementation, results.mode),
                    "master_down_ms": impls::master_down(*implementation, results.mode).as_secs_f64() * 1e3,
                }),
            )
        })
        .collect();
    let rows: Vec<Value> = rows(results)
        .iter()
        .map(|row| {
            let results: Map<String, Value> = row
                .cells
                .iter()
                .map(|(implementation, c)| (implementation.name().to_owned(), cell(c)))
                .collect();
            json!({
                "event": row.event.key(),
                "metric": row.metric.key(),
                "results": results,
                "carpd_vs_master_down": row.vs_bound,
                "carpd_vs_best_peer": row.vs_best_peer,
            })
        })
        .collect();
    let steady: Map<String, Value> = results
        .steady
        .iter()
        .map(|(implementation, steady): (&Implementation, _)| {
            (
                implementation.name().to_owned(),
                json!({
                    "seconds": results.steady_secs,
                    "load": results.steady_load,
                    "changes_of_master": steady.transitions,
                    "backup_adverts": steady.backup_adverts,
                    "echo_requests": steady.requests,
                    "lost_echo_replies": steady.lost,
                }),
            )
        })
        .collect();
    json!({
        "benchmark": "failover",
        "mode": results.mode.name(),
        "runs": results.runs,
        "unix_time": unix_time,
        "commit": commit,
        "planned_handover": results.planned_method,
        "ping_rate_hz": ping_rate(results),
        "implementations": settings,
        "rows": rows,
        "steady": steady,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::bench::impls::Mode;
    use crate::bench::measure::{Outcome, SteadyOutcome};
    use crate::bench::scenario::Event;

    #[test]
    fn rows_carry_every_sample_and_the_ratios() {
        let crash = Outcome {
            advert: Some(Duration::from_millis(20)),
            garp: Some(Duration::from_millis(21)),
            reply: None,
            lost: 2,
            requests: 50,
            observed: Duration::from_millis(500),
            duplicate: Duration::ZERO,
            took_over: true,
        };
        let mut samples = BTreeMap::new();
        samples.insert((Implementation::Carpd, Event::Crash), vec![crash; 2]);
        samples.insert((Implementation::Keepalived, Event::Crash), vec![crash; 2]);
        let mut steady = BTreeMap::new();
        steady.insert(
            Implementation::Carpd,
            SteadyOutcome {
                transitions: 0,
                backup_adverts: 0,
                requests: 2000,
                lost: 0,
            },
        );
        let results = Results {
            mode: Mode::Fast,
            runs: 2,
            samples,
            steady,
            steady_secs: 20,
            steady_load: false,
            planned_method: "SIGTERM".into(),
        };
        let doc = document(&results, Some("abc123"), 1_700_000_000);
        assert_eq!(doc["mode"], "fast");
        assert_eq!(doc["commit"], "abc123");
        let rows = doc["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 5, "one event, five figures");
        let advert = &rows[0];
        assert_eq!(advert["event"], "crash");
        assert_eq!(advert["metric"], "advert_ms");
        assert_eq!(advert["results"]["carpd"]["samples"], json!([20.0, 20.0]));
        assert_eq!(
            json!(rounded(4_165.031_779_999_999)).to_string(),
            "4165.032"
        );
        assert_eq!(advert["carpd_vs_best_peer"], 1.0);
        let reply = &rows[2];
        assert_eq!(reply["results"]["keepalived"]["median"], Value::Null);
        assert_eq!(reply["results"]["keepalived"]["not_seen_runs"], 2);
        assert_eq!(doc["steady"]["carpd"]["echo_requests"], 2000);
        assert!(doc["implementations"]["keepalived"]["master_down_ms"].is_number());
    }
}
