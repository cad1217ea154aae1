//! One task per tracker: check every interval, report every result.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, error};

use super::ping::Ping;
use super::{Outcome, exec, link};
use crate::config::{TrackConfig, TrackKind};

/// One check's result, for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Index of the tracker in the configuration's list.
    pub tracker: usize,
    pub ok: bool,
    /// From the start of the check to its result (the timeout when it overran).
    pub latency: Duration,
    /// A short reason for the log: "exit status 1", "no reply from 192.0.2.254 within 500 ms".
    pub detail: String,
}

/// The running trackers; dropping this stops them all.
#[derive(Debug)]
pub struct Trackers {
    tasks: JoinSet<()>,
}

impl Trackers {
    /// How many trackers run (coherence trackers have no task).
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

/// Starts one task per tracker except coherence trackers. Results go to
/// `events` with `send().await`, so a slow agent slows the checks down
/// instead of queueing results; a task stops when `events` is closed.
/// Must be called within a tokio runtime; outside one, no tracker runs and the
/// error is logged.
pub fn spawn(trackers: &[TrackConfig], events: mpsc::Sender<CheckResult>) -> Trackers {
    let mut tasks = JoinSet::new();
    let runtime = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime,
        Err(error) => {
            error!("trackers not started: {error}");
            return Trackers { tasks };
        }
    };
    for (index, config) in trackers.iter().enumerate() {
        let Some(check) = Check::new(&config.kind) else {
            continue;
        };
        let task = run(index, config.clone(), check, events.clone());
        tasks.spawn_on(task, &runtime);
    }
    // Only the tasks hold senders now, so the agent sees the channel close
    // when every tracker has stopped.
    drop(events);
    Trackers { tasks }
}

/// The check a tracker repeats, with what it keeps between checks.
enum Check {
    Link { interface: String },
    Ping(Ping),
    Exec { command: String },
}

impl Check {
    fn new(kind: &TrackKind) -> Option<Self> {
        match kind {
            TrackKind::Link { interface } => Some(Check::Link {
                interface: interface.clone(),
            }),
            TrackKind::Ping { target, interface } => {
                Some(Check::Ping(Ping::new(*target, interface.clone())))
            }
            TrackKind::Exec { command } => Some(Check::Exec {
                command: command.clone(),
            }),
            TrackKind::Coherence => None,
        }
    }

    /// One check, done within `timeout` (an exec check also gets to kill
    /// and reap what it started).
    async fn run(&mut self, timeout: Duration) -> Outcome {
        match self {
            Check::Link { interface } => tokio::time::timeout(timeout, link::check(interface))
                .await
                .unwrap_or_else(|_elapsed| {
                    Outcome::bad(format!(
                        "{interface}: link state not read within {} ms",
                        timeout.as_millis()
                    ))
                }),
            Check::Ping(ping) => ping.check(timeout).await,
            Check::Exec { command } => exec::check(command, timeout).await,
        }
    }
}

async fn run(
    index: usize,
    config: TrackConfig,
    mut check: Check,
    events: mpsc::Sender<CheckResult>,
) {
    // The configuration keeps timeout <= interval, so checks never overlap;
    // Delay keeps the spacing after a slow check instead of bursting.
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let started = Instant::now();
        let outcome = check.run(config.timeout).await;
        let result = CheckResult {
            tracker: index,
            ok: outcome.ok,
            latency: started.elapsed(),
            detail: outcome.detail,
        };
        if events.send(result).await.is_err() {
            debug!(tracker = config.name, "agent gone, tracker stops");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn tracker(name: &str, kind: TrackKind, interval_ms: u64) -> TrackConfig {
        TrackConfig {
            name: name.into(),
            kind,
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(interval_ms),
            rise: 1,
            fall: 1,
            group: "carp".into(),
            demote: 1,
        }
    }

    async fn next(receiver: &mut mpsc::Receiver<CheckResult>) -> CheckResult {
        tokio::time::timeout(Duration::from_secs(10), receiver.recv())
            .await
            .unwrap_or_else(|_| panic!("no check result within 10 s"))
            .unwrap_or_else(|| panic!("every tracker stopped"))
    }

    #[tokio::test]
    async fn every_tracker_reports_under_its_index() {
        let configs = [
            tracker("same-role", TrackKind::Coherence, 10),
            tracker(
                "lo",
                TrackKind::Link {
                    interface: "lo".into(),
                },
                20,
            ),
            tracker(
                "good",
                TrackKind::Exec {
                    command: "true".into(),
                },
                20,
            ),
            tracker(
                "bad",
                TrackKind::Exec {
                    command: "exit 3".into(),
                },
                20,
            ),
            tracker(
                "loopback",
                TrackKind::Ping {
                    target: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    interface: None,
                },
                1000,
            ),
        ];
        let (sender, mut receiver) = mpsc::channel(4);
        let trackers = spawn(&configs, sender);
        assert_eq!(trackers.len(), 4, "no task for the coherence tracker");
        let mut seen = [0usize; 5];
        // The link and exec trackers report at least twice, the ping once (its first
        // check is immediate).
        while seen[1..4].iter().any(|&count| count < 2) || seen[4] < 1 {
            let result = next(&mut receiver).await;
            seen[result.tracker] += 1;
            let expected = match result.tracker {
                1 | 2 | 4 => true,
                3 => false,
                other => panic!("result for tracker {other}: {result:?}"),
            };
            assert_eq!(result.ok, expected, "{result:?}");
            if result.tracker == 3 {
                assert_eq!(result.detail, "exit status 3");
            }
            assert!(result.latency <= Duration::from_secs(1), "{result:?}");
        }
    }

    #[tokio::test]
    async fn dropping_the_trackers_stops_them() {
        let configs = [tracker(
            "lo",
            TrackKind::Link {
                interface: "lo".into(),
            },
            10,
        )];
        let (sender, mut receiver) = mpsc::channel(1);
        let trackers = spawn(&configs, sender);
        next(&mut receiver).await;
        drop(trackers);
        // The channel closes once the aborted task has dropped its sender.
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            while receiver.recv().await.is_some() {}
        })
        .await;
        assert!(
            end.is_ok(),
            "a tracker still runs after Trackers was dropped"
        );
    }

    #[tokio::test]
    async fn a_closed_channel_stops_the_trackers() {
        let configs = [tracker(
            "lo",
            TrackKind::Link {
                interface: "lo".into(),
            },
            10,
        )];
        let (sender, receiver) = mpsc::channel(1);
        let mut trackers = spawn(&configs, sender);
        drop(receiver);
        let joined = tokio::time::timeout(Duration::from_secs(5), trackers.tasks.join_next()).await;
        assert!(matches!(joined, Ok(Some(Ok(())))), "{joined:?}");
    }

    #[test]
    fn outside_a_runtime_nothing_starts_and_nothing_panics() {
        let (sender, _receiver) = mpsc::channel(1);
        let configs = [tracker(
            "lo",
            TrackKind::Link {
                interface: "lo".into(),
            },
            10,
        )];
        assert!(spawn(&configs, sender).is_empty());
    }
}
