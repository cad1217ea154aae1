//! What the benchmark does to and reads from the gateways' conntrack
//! tables, each a [`Task`] inside the gateway's namespace: fill node A's
//! table, watch node B's fill up, create latency probes on A one at a time
//! and stamp their arrival on B.
//!
//! Times are `Instant`s, `CLOCK_MONOTONIC`, which every namespace of the
//! host shares: a probe's creation on A and its arrival on B compare.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use carp::sync::conntrack::{Conntrack, DEFAULT_EVENT_BUFFER, Event, EventSocket};

use super::flows::{self, Set, probe_index};
use super::inside::Task;

/// Entries per install call: a few netlink batches, and a Ctrl-C check.
const FILL_CHUNK: u32 = 4096;
/// How often node B's entry count is read during a bulk.
const COUNT_POLL: Duration = Duration::from_millis(2);
/// How long the probe watcher blocks before it looks at its stop flag.
const WATCH_TICK: Duration = Duration::from_millis(50);

/// What filling a table did.
#[derive(Debug, Clone, Copy)]
pub struct Filled {
    pub installed: u64,
    pub failed: u64,
    pub took: Duration,
}

/// Installs entries `0..count` of the bulk set in `netns`.
pub fn fill(netns: &str, count: u32) -> Result<Task<Filled>> {
    Task::spawn(netns, "fill", move |stop| async move {
        let started = Instant::now();
        let mut conntrack = Conntrack::open().context("conntrack socket")?;
        let mut filled = Filled {
            installed: 0,
            failed: 0,
            took: Duration::ZERO,
        };
        let mut next = 0;
        while next < count && !stop.raised() {
            let end = next.saturating_add(FILL_CHUNK).min(count);
            let chunk: Vec<_> = flows::flows(Set::Bulk, next..end).collect();
            let report = conntrack
                .install(&chunk)
                .await
                .context("installing the bulk entries")?;
            if let Some(first) = report.first_error {
                bail!(
                    "the kernel refused {} of {} entries, first {first} (is net.netfilter.nf_conntrack_max high enough?)",
                    report.failed,
                    chunk.len()
                );
            }
            filled.installed += report.applied() as u64;
            filled.failed += report.failed as u64;
            next = end;
        }
        filled.took = started.elapsed();
        Ok(filled)
    })
}

/// The entries in the calling thread's namespace (`nf_conntrack_count` is
/// per namespace; the `/proc/sys/net` a thread sees is its namespace's).
fn table_entries() -> Result<u64> {
    let text = fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
        .context("cannot read nf_conntrack_count")?;
    text.trim()
        .parse()
        .with_context(|| format!("nf_conntrack_count reads {text:?}"))
}

/// The entries in namespace `netns` now.
pub fn entries_in(netns: &str) -> Result<u64> {
    Task::spawn(netns, "count", |_stop| async { table_entries() })?.wait(|| Ok(()), None)
}

/// UDP datagrams the namespace `netns` dropped because a socket's receive
/// queue was full (`RcvbufErrors` of `/proc/net/snmp`).
pub fn udp_receive_errors(netns: &str) -> Result<u64> {
    Task::spawn(netns, "snmp", |_stop| async {
        // thread-self: /proc/self/net is the main thread's namespace.
        let text = fs::read_to_string("/proc/thread-self/net/snmp")
            .context("cannot read /proc/thread-self/net/snmp")?;
        snmp_counter(&text, "Udp", "RcvbufErrors").context("no Udp RcvbufErrors in /proc/net/snmp")
    })?
    .wait(|| Ok(()), None)
}

/// A counter of `/proc/net/snmp`: a line of names, then a line of values,
/// both starting with `<group>:`.
fn snmp_counter(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|line| line.starts_with(&prefix));
    let names = lines.next()?;
    let values = lines.next()?;
    let position = names.split_whitespace().position(|field| field == name)?;
    values.split_whitespace().nth(position)?.parse().ok()
}

/// How a table filled up, seen from inside.
#[derive(Debug, Clone, Copy)]
pub struct Growth {
    /// The first time the count was above the start.
    pub first: Option<Instant>,
    /// The first time it reached the target.
    pub done: Option<Instant>,
    pub last_count: u64,
}

/// Watches `netns`'s entry count until it reaches `target` (or the task is
/// stopped); `latest` follows the count for progress reports.
pub fn watch_growth(netns: &str, target: u64, latest: Arc<AtomicU64>) -> Result<Task<Growth>> {
    Task::spawn(netns, "count", move |stop| async move {
        let start = table_entries()?;
        let mut growth = Growth {
            first: None,
            done: None,
            last_count: start,
        };
        loop {
            let count = table_entries()?;
            let now = Instant::now();
            latest.store(count, Ordering::Relaxed);
            growth.last_count = count;
            if count > start && growth.first.is_none() {
                growth.first = Some(now);
            }
            if count >= target {
                growth.done = Some(now);
                return Ok(growth);
            }
            if stop.raised() {
                return Ok(growth);
            }
            tokio::time::sleep(COUNT_POLL).await;
        }
    })
}

/// When each probe was created on A.
#[derive(Debug, Clone)]
pub struct Created {
    pub at: Vec<Instant>,
    pub failed: u64,
}

/// Creates probes `0..count` in `netns`, one install each, `interval` apart.
pub fn create_probes(netns: &str, count: u32, interval: Duration) -> Result<Task<Created>> {
    Task::spawn(netns, "probes", move |stop| async move {
        let mut conntrack = Conntrack::open().context("conntrack socket")?;
        let mut created = Created {
            at: Vec::with_capacity(count as usize),
            failed: 0,
        };
        let start = tokio::time::Instant::now();
        for index in 0..count {
            if stop.raised() {
                break;
            }
            tokio::time::sleep_until(start + interval * index).await;
            let flow = flows::flow(Set::Probe, index);
            // Stamped before the request: the kernel creates the entry, and
            // queues its event to the daemon, inside this call.
            let at = Instant::now();
            let report = conntrack
                .install(&[flow])
                .await
                .context("installing a probe")?;
            created.failed += report.failed as u64;
            created.at.push(at);
        }
        Ok(created)
    })
}

/// When each probe arrived on B (`None`: not seen).
#[derive(Debug, Clone)]
pub struct Arrivals {
    pub at: Vec<Option<Instant>>,
    /// The watcher's own event queue overflowed: arrivals may be missing.
    pub overruns: u64,
}

/// Stamps the first NEW or UPDATE event of each probe `0..count` in
/// `netns`; `ready` turns true once subscribed (create probes only then).
pub fn watch_probes(netns: &str, count: u32, ready: Arc<AtomicBool>) -> Result<Task<Arrivals>> {
    Task::spawn(netns, "arrivals", move |stop| async move {
        let mut events =
            EventSocket::subscribe(DEFAULT_EVENT_BUFFER).context("conntrack events")?;
        ready.store(true, Ordering::Relaxed);
        let mut arrivals = Arrivals {
            at: vec![None; count as usize],
            overruns: 0,
        };
        let mut missing = count;
        while missing > 0 && !stop.raised() {
            let Ok(event) = tokio::time::timeout(WATCH_TICK, events.next()).await else {
                continue;
            };
            let now = Instant::now();
            match event.context("reading conntrack events")? {
                Event::Upsert { flow, .. } => {
                    let slot = probe_index(&flow.original)
                        .and_then(|index| arrivals.at.get_mut(index as usize));
                    if let Some(slot @ None) = slot {
                        *slot = Some(now);
                        missing -= 1;
                    }
                }
                Event::Overrun => arrivals.overruns += 1,
                Event::Delete { .. } => {}
            }
        }
        Ok(arrivals)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_counter_of_proc_net_snmp() {
        let text = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    Udp: 53520 2 325879 363523 325879 0\n\
                    UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    UdpLite: 0 0 0 0 7 0\n";
        assert_eq!(snmp_counter(text, "Udp", "RcvbufErrors"), Some(325_879));
        assert_eq!(snmp_counter(text, "UdpLite", "RcvbufErrors"), Some(7));
        assert_eq!(snmp_counter(text, "Udp", "Nothing"), None);
        assert_eq!(snmp_counter(text, "Tcp", "RcvbufErrors"), None);
    }
}
