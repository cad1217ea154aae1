//! One tcpdump in the switch namespace on every port at once (`-i any -Q
//! in`: each frame once, as it enters the switch from the node that sent
//! it), its lines parsed into events as they arrive.
//!
//! Timing: tcpdump's `-tt` stamps are the kernel's capture time on the wall
//! clock; the benchmark takes its action instants with [`now`] on the same
//! clock, right before acting. Correlating the two wall clocks is fine for a
//! benchmark (the agent itself only ever uses the monotonic clock): a clock
//! step during a run would show up as an absurd figure, not a subtle one.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead as _, BufReader, Read};
use std::path::Path;

use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use carp_tests::{Netns, Process, Signal, Tcpdump};

use super::events::{self, Event, Nanos};

/// tcpdump prints its statistics and exits on SIGTERM in well under this.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// Adverts, gratuitous ARP and the pinger's ICMP: nothing else matters.
const FILTER: &str = "arp or icmp or ip proto 112";

/// Now on the wall clock, in the unit of tcpdump's stamps.
pub fn now() -> Nanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

#[derive(Default)]
struct Seen {
    events: Vec<Event>,
    lines: Vec<String>,
}

/// A running capture; tcpdump is killed when it drops.
pub struct Sniffer {
    seen: Arc<Mutex<Seen>>,
    /// What tcpdump printed on stderr (its drop count when it stops).
    said: Arc<Mutex<String>>,
    tcpdump: Process,
}

impl Sniffer {
    /// Starts capturing frames entering the switch from `ports`; returns once
    /// tcpdump listens. `carp`: decode protocol 112 as CARP, not VRRP.
    pub fn start(switch: &Netns, ports: &[String], carp: bool) -> Result<Self> {
        let label = format!("tcpdump in {}", switch.name());
        let mut command = switch.command("tcpdump");
        command.args([
            "-i",
            "any",
            "-Q",
            "in",
            // Small frames in a large ring: with the default 256 KiB
            // snapshot length and immediate mode, the ring has only a few
            // blocks and a burst at a takeover overflows it (tcpdump then
            // reports drops and first frames go missing). 256 bytes hold
            // every header parsed here.
            "-s",
            "256",
            "-B",
            "4096",
            "-tt",
            "--time-stamp-precision=nano",
            "-n",
            "-e",
            "-l",
            // Hand each packet over at once, not when a buffer block fills.
            "--immediate-mode",
        ]);
        if carp {
            command.args(["-T", "carp"]);
        }
        command.arg(FILTER);
        let Tcpdump {
            process: tcpdump,
            stdout,
            said,
        } = Tcpdump::start(&label, &mut command)?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let ports: BTreeSet<String> = ports.iter().cloned().collect();
        {
            let seen = Arc::clone(&seen);
            thread::spawn(move || collect(stdout, &ports, &seen));
        }
        Ok(Self {
            seen,
            said,
            tcpdump,
        })
    }

    /// Runs `look` over every event so far, oldest first.
    pub fn with_events<T>(&self, look: impl FnOnce(&[Event]) -> T) -> T {
        look(
            &self
                .seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .events,
        )
    }

    /// Stops tcpdump and returns how many packets the kernel dropped
    /// before tcpdump read them (`None` if it did not say): a figure from
    /// a capture with drops may be late.
    pub fn stop(&mut self) -> Result<Option<u64>> {
        self.tcpdump.kill(Signal::SIGTERM)?;
        self.tcpdump.wait_exit(STOP_TIMEOUT)?;
        // Its stderr reader finishes once the pipe closes at exit.
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            let said = self.said.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(dropped) = dropped_by_kernel(&said) {
                return Ok(Some(dropped));
            }
            drop(said);
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Notes an action in the saved lines, stamped like tcpdump's.
    pub fn mark(&self, at: Nanos, what: &str) {
        let line = format!("{}.{:09} # {what}", at / 1_000_000_000, at % 1_000_000_000);
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .lines
            .push(line);
    }

    /// Every captured line so far, to `path` (kept for a look at a run), in
    /// time order: a mark is noted after its action, when later frames may
    /// already have arrived.
    pub fn save(&self, path: &Path) -> Result<()> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let mut lines: Vec<&str> = seen.lines.iter().map(String::as_str).collect();
        lines.sort_by_key(|line| {
            line.split_whitespace()
                .next()
                .and_then(events::parse_timestamp)
        });
        let mut text = lines.join("\n");
        text.push('\n');
        fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// `3 packets dropped by kernel` from tcpdump's closing statistics.
fn dropped_by_kernel(said: &str) -> Option<u64> {
    said.lines()
        .find_map(|line| line.trim().strip_suffix(" packets dropped by kernel"))
        .and_then(|count| count.trim().parse().ok())
}

fn collect(stdout: impl Read, ports: &BTreeSet<String>, seen: &Mutex<Seen>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        // The bridge itself shows broadcast frames a second time: only the
        // ports' lines count. All of those are kept for a look at a run.
        if !line
            .split_whitespace()
            .nth(1)
            .is_some_and(|port| ports.contains(port))
        {
            continue;
        }
        let event = events::parse(&line);
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(event) = event {
            seen.events.push(event);
        }
        seen.lines.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_drop_count_from_tcpdump_statistics() {
        let said = "listening on any, link-type LINUX_SLL2\n1030 packets captured\n1100 packets received by filter\n7 packets dropped by kernel\n";
        assert_eq!(dropped_by_kernel(said), Some(7));
        assert_eq!(dropped_by_kernel("listening on any\n"), None);
    }
}
