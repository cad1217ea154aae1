//! The results as rows (one per event and figure, a min / median / max cell
//! per implementation, carpd's ratios) and as the printed table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::impls::{self, Implementation, Mode};
use super::measure::{Outcome, SteadyOutcome};
use super::scenario::Event;
use super::stats::Summary;

/// Everything one benchmark run measured.
pub struct Results {
    pub mode: Mode,
    pub runs: usize,
    pub samples: BTreeMap<(Implementation, Event), Vec<Outcome>>,
    /// Fast mode: one steady run per implementation.
    pub steady: BTreeMap<Implementation, SteadyOutcome>,
    pub steady_secs: u64,
    /// The steady run had both cores busy and extra traffic (`--load`).
    pub steady_load: bool,
    pub planned_method: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Advert,
    Garp,
    Reply,
    Lost,
    Duplicate,
}

impl Metric {
    pub const ALL: [Self; 5] = [
        Self::Advert,
        Self::Garp,
        Self::Reply,
        Self::Lost,
        Self::Duplicate,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Advert => "first advert (ms)",
            Self::Garp => "first gratuitous ARP (ms)",
            Self::Reply => "first echo reply (ms)",
            Self::Lost => "lost echo replies",
            Self::Duplicate => "duplicate master (ms)",
        }
    }

    pub const fn key(self) -> &'static str {
        match self {
            Self::Advert => "advert_ms",
            Self::Garp => "garp_ms",
            Self::Reply => "echo_reply_ms",
            Self::Lost => "lost_echo_replies",
            Self::Duplicate => "duplicate_master_ms",
        }
    }

    /// Compared with the master-down time: the takeover figures.
    const fn against_bound(self) -> bool {
        matches!(self, Self::Advert | Self::Garp | Self::Reply)
    }

    pub fn value(self, outcome: &Outcome) -> Option<f64> {
        let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
        match self {
            Self::Advert => outcome.advert.map(ms),
            Self::Garp => outcome.garp.map(ms),
            Self::Reply => outcome.reply.map(ms),
            Self::Lost => Some(f64::from(outcome.lost)),
            Self::Duplicate => Some(ms(outcome.duplicate)),
        }
    }
}

/// One implementation's figure over its runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Over the runs in which the new master took over.
    pub summary: Option<Summary>,
    /// Per run; `None` where the event was not seen.
    pub samples: Vec<Option<f64>>,
    pub runs: usize,
    /// Runs in which the new master did not take over in time.
    pub failed: usize,
    /// Runs in which it took over but this event was not seen.
    pub missing: usize,
}

impl Cell {
    fn of(outcomes: &[Outcome], metric: Metric) -> Self {
        let samples: Vec<Option<f64>> = outcomes.iter().map(|o| metric.value(o)).collect();
        let counted: Vec<f64> = outcomes
            .iter()
            .zip(&samples)
            .filter(|(outcome, _)| outcome.took_over)
            .filter_map(|(_, sample)| *sample)
            .collect();
        let failed = outcomes.iter().filter(|o| !o.took_over).count();
        Self {
            summary: Summary::of(&counted),
            missing: outcomes.len() - failed - counted.len(),
            samples,
            runs: outcomes.len(),
            failed,
        }
    }

    fn text(&self, event: Event) -> String {
        let failure = match event {
            Event::LinkUp => "no fail-back",
            _ => "no takeover",
        };
        if self.runs == 0 {
            return "-".into();
        }
        if self.failed == self.runs {
            return failure.into();
        }
        let Some(summary) = self.summary else {
            return "none".into();
        };
        let mut text = format!(
            "{} / {} / {}",
            number(summary.min),
            number(summary.median),
            number(summary.max)
        );
        if self.missing > 0 {
            let _ = write!(text, " (none x{})", self.missing);
        }
        if self.failed > 0 {
            let _ = write!(text, " ({failure} x{})", self.failed);
        }
        text
    }
}

/// Whole numbers from 100 up, one decimal below.
fn number(value: f64) -> String {
    if value.abs() >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub event: Event,
    pub metric: Metric,
    pub cells: Vec<(Implementation, Cell)>,
    /// carpd's median over its master-down time.
    pub vs_bound: Option<f64>,
    /// carpd's median over the best peer's median.
    pub vs_best_peer: Option<f64>,
}

pub fn rows(results: &Results) -> Vec<Row> {
    let implementations = results.mode.implementations();
    let bound_ms = impls::master_down(Implementation::Carpd, results.mode).as_secs_f64() * 1e3;
    let mut rows = Vec::new();
    for event in Event::ALL {
        if !implementations
            .iter()
            .any(|i| results.samples.contains_key(&(*i, event)))
        {
            continue;
        }
        for metric in Metric::ALL {
            let cells: Vec<(Implementation, Cell)> = implementations
                .iter()
                .map(|&implementation| {
                    let outcomes = results
                        .samples
                        .get(&(implementation, event))
                        .map_or(&[][..], Vec::as_slice);
                    (implementation, Cell::of(outcomes, metric))
                })
                .collect();
            let median = |implementation: Implementation| {
                cells
                    .iter()
                    .find(|(i, _)| *i == implementation)
                    .and_then(|(_, cell)| cell.summary)
                    .map(|summary| summary.median)
            };
            let carpd = median(Implementation::Carpd);
            let best_peer = implementations
                .iter()
                .filter(|i| **i != Implementation::Carpd)
                .filter_map(|i| median(*i))
                .min_by(f64::total_cmp);
            rows.push(Row {
                event,
                metric,
                vs_bound: carpd
                    .filter(|_| metric.against_bound())
                    .map(|carpd| carpd / bound_ms),
                vs_best_peer: carpd.zip(best_peer).and_then(|(c, p)| ratio(c, p)),
                cells,
            });
        }
    }
    rows
}

/// Echo requests per second the pinger really sent, over every event.
pub fn ping_rate(results: &Results) -> Option<f64> {
    let (requests, seconds) =
        results
            .samples
            .values()
            .flatten()
            .fold((0.0, 0.0), |(requests, seconds), outcome| {
                (
                    requests + f64::from(outcome.requests),
                    seconds + outcome.observed.as_secs_f64(),
                )
            });
    ratio(requests, seconds).filter(|rate| rate.is_finite())
}

/// `numerator / denominator`: none for 0 / 0 (both lost no reply: nothing
/// to compare), infinite for more than nothing over nothing.
fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    if denominator > 0.0 {
        Some(numerator / denominator)
    } else if numerator > 0.0 {
        Some(f64::INFINITY)
    } else {
        None
    }
}

fn heading(event: Event, results: &Results) -> String {
    match event {
        Event::Crash => "crash failover: SIGKILL of the master's daemon".into(),
        Event::LinkDown => "link failover: master's carpdev (eth0) down".into(),
        Event::LinkUp => "fail-back: master's carpdev up again".into(),
        Event::Planned => format!("planned handover: {}", results.planned_method),
    }
}

/// The table as printed and as pasted into the README.
pub fn render(results: &Results) -> String {
    let implementations = results.mode.implementations();
    let rows = rows(results);
    let label_width = 28;
    let widths: Vec<usize> = implementations
        .iter()
        .enumerate()
        .map(|(column, implementation)| {
            rows.iter()
                .map(|row| row.cells[column].1.text(row.event).len())
                .chain([implementation.name().len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Failover benchmark, {} mode: {} run(s) each, min / median / max",
        results.mode.name(),
        results.runs
    );
    for implementation in implementations {
        let _ = writeln!(out, "  {}", impls::describe(*implementation, results.mode));
    }
    let _ = writeln!(
        out,
        "  times in ms from the action (kill, link change, stop) to the frame entering the switch"
    );
    if let Some(rate) = ping_rate(results) {
        let _ = writeln!(
            out,
            "  pinger in the client: {rate:.0} echo requests/s to the VIP (lost replies x 1/rate = outage)"
        );
    }
    let _ = write!(out, "\n{:label_width$}", "");
    for (implementation, width) in implementations.iter().zip(&widths) {
        let _ = write!(out, "  {:>width$}", implementation.name());
    }
    let _ = writeln!(out, "  {:>9}  {:>9}", "carpd/md", "carpd/peer");
    let mut last_event = None;
    for row in &rows {
        if last_event != Some(row.event) {
            let _ = writeln!(out, "{}", heading(row.event, results));
            last_event = Some(row.event);
        }
        let _ = write!(
            out,
            "  {:label_width$}",
            row.metric.label(),
            label_width = label_width - 2
        );
        for ((_, cell), width) in row.cells.iter().zip(&widths) {
            let _ = write!(out, "  {:>width$}", cell.text(row.event));
        }
        let _ = writeln!(
            out,
            "  {:>9}  {:>9}",
            times(row.vs_bound),
            times(row.vs_best_peer)
        );
    }
    if !results.steady.is_empty() {
        render_steady(&mut out, results, label_width, &widths);
    }
    let _ = writeln!(
        out,
        "carpd/md: carpd's median over its master-down time (3 x the backup's interval); carpd/peer: over the best peer's median"
    );
    out
}

/// One number of a steady run.
type SteadyFigure = fn(&SteadyOutcome) -> u32;

fn render_steady(out: &mut String, results: &Results, label_width: usize, widths: &[usize]) {
    let _ = writeln!(
        out,
        "steady run: {} s, nothing done{}",
        results.steady_secs,
        if results.steady_load {
            " (both cores kept busy, 500 echo requests/s to the master)"
        } else {
            ""
        }
    );
    let figures: [(&str, SteadyFigure); 3] = [
        ("changes of master", |s| s.transitions),
        ("backup advertisements", |s| s.backup_adverts),
        ("lost echo replies", |s| s.lost),
    ];
    for (label, figure) in figures {
        let _ = write!(out, "  {label:width$}", width = label_width - 2);
        for (implementation, width) in results.mode.implementations().iter().zip(widths) {
            let text = results
                .steady
                .get(implementation)
                .map_or_else(|| "-".to_owned(), |steady| figure(steady).to_string());
            let _ = write!(out, "  {text:>width$}");
        }
        let _ = writeln!(out);
    }
}

/// `1.16x`; three decimals below 0.1 so a planned handover's tiny share of
/// the master-down time does not read as zero, none from 10 up.
fn times(ratio: Option<f64>) -> String {
    match ratio {
        None => "-".to_owned(),
        Some(ratio) if ratio.is_infinite() => "inf".to_owned(),
        Some(ratio) if ratio >= 10.0 => format!("{ratio:.0}x"),
        Some(ratio) if ratio >= 0.1 => format!("{ratio:.2}x"),
        Some(ratio) => format!("{ratio:.3}x"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(advert_ms: u64, lost: u32, took_over: bool) -> Outcome {
        Outcome {
            advert: Some(Duration::from_millis(advert_ms)),
            garp: Some(Duration::from_millis(advert_ms)),
            reply: None,
            lost,
            requests: 100,
            observed: Duration::from_secs(1),
            duplicate: Duration::ZERO,
            took_over,
        }
    }

    fn results() -> Results {
        let mut samples = BTreeMap::new();
        samples.insert(
            (Implementation::Carpd, Event::Crash),
            vec![
                outcome(4100, 0, true),
                outcome(4200, 2, true),
                outcome(4150, 0, true),
            ],
        );
        samples.insert(
            (Implementation::Ucarp, Event::Crash),
            vec![outcome(5000, 9, true); 3],
        );
        samples.insert(
            (Implementation::Keepalived, Event::Crash),
            vec![
                outcome(3000, 0, true),
                outcome(3600, 4, true),
                outcome(1, 0, false),
            ],
        );
        samples.insert(
            (Implementation::Ucarp, Event::LinkUp),
            vec![outcome(100, 0, false); 3],
        );
        Results {
            mode: Mode::Normal,
            runs: 3,
            samples,
            steady: BTreeMap::new(),
            steady_secs: 0,
            steady_load: false,
            planned_method: "SIGTERM".into(),
        }
    }

    fn row(rows: &[Row], event: Event, metric: Metric) -> Row {
        rows.iter()
            .find(|row| row.event == event && row.metric == metric)
            .cloned()
            .expect("the row exists")
    }

    #[test]
    fn carpd_is_compared_with_its_bound_and_the_best_peer() {
        let rows = rows(&results());
        let advert = row(&rows, Event::Crash, Metric::Advert);
        // carpd's median 4150 ms; master-down 4171.875 ms; best peer's
        // median 3300 ms (keepalived, over its two takeovers).
        let vs_bound = advert.vs_bound.expect("a time figure");
        assert!((vs_bound - 4150.0 / 4171.875).abs() < 1e-9, "{vs_bound}");
        let vs_peer = advert.vs_best_peer.expect("peers have medians");
        assert!((vs_peer - 4150.0 / 3300.0).abs() < 1e-9, "{vs_peer}");
        // Lost replies: no bound, and keepalived's median 2 is the best.
        let lost = row(&rows, Event::Crash, Metric::Lost);
        assert_eq!(lost.vs_bound, None);
        assert_eq!(lost.vs_best_peer, Some(0.0));
    }

    #[test]
    fn cells_say_what_was_not_seen() {
        let results = results();
        let rows = rows(&results);
        let cell = |event, metric, implementation: Implementation| {
            let row = row(&rows, event, metric);
            let (_, cell) = row
                .cells
                .iter()
                .find(|(i, _)| *i == implementation)
                .cloned()
                .expect("a cell per implementation");
            cell.text(event)
        };
        assert_eq!(
            cell(Event::Crash, Metric::Advert, Implementation::Carpd),
            "4100 / 4150 / 4200"
        );
        assert_eq!(
            cell(Event::Crash, Metric::Advert, Implementation::Keepalived),
            "3000 / 3300 / 3600 (no takeover x1)"
        );
        assert_eq!(
            cell(Event::Crash, Metric::Reply, Implementation::Carpd),
            "none"
        );
        assert_eq!(
            cell(Event::LinkUp, Metric::Advert, Implementation::Ucarp),
            "no fail-back"
        );
        assert_eq!(
            cell(Event::LinkUp, Metric::Advert, Implementation::Carpd),
            "-"
        );
    }

    #[test]
    fn the_table_has_a_section_per_measured_event() {
        let text = render(&results());
        assert!(text.contains("crash failover: SIGKILL"), "{text}");
        assert!(
            text.contains("fail-back: master's carpdev up again"),
            "{text}"
        );
        assert!(!text.contains("planned handover"), "{text}");
        assert!(text.contains("1.26x"), "{text}");
        assert!(text.contains("100 echo requests/s"), "{text}");
        // Every row of a section lines up: same length.
        let lengths: Vec<usize> = text
            .lines()
            .filter(|line| line.starts_with("  first"))
            .map(str::len)
            .collect();
        assert!(lengths.windows(2).all(|w| w[0] == w[1]), "{text}");
    }

    #[test]
    fn ratios_keep_their_significant_digits() {
        assert_eq!(times(Some(1.1567)), "1.16x");
        assert_eq!(times(Some(0.0038)), "0.004x");
        assert_eq!(times(Some(1908.0)), "1908x");
        assert_eq!(times(None), "-");
        assert_eq!(times(ratio(3.0, 0.0)), "inf");
        assert_eq!(ratio(0.0, 0.0), None);
    }

    #[test]
    fn numbers_keep_a_decimal_only_when_small() {
        assert_eq!(number(4171.875), "4172");
        assert_eq!(number(23.44), "23.4");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(7.0), "7");
    }
}
