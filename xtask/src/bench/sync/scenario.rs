//! One run: a fresh gateway pair, node A's table filled, both daemons
//! started, B's bulk timed; on the runs that measure latency, probes
//! created on A one at a time and their arrival on B stamped.
//!
//! ```text
//!   gwa  eth-sync 10.0.3.2 ─┬─ sync    (the sync link)
//!   gwb  eth-sync 10.0.3.3 ─┘
//!   gwa  eth0     10.0.9.2 ─┬─ lan     (carpd's carpdev; VIP 10.0.9.1)
//!   gwb  eth0     10.0.9.3 ─┘
//! ```

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use carp_tests::{NodeSpec, Signal, Topology, TopologySpec};

use super::daemons::{self, Daemon, Implementation, Node, Place};
use super::kernel::{self, Arrivals, Created};

/// Namespaces are `bsync-<pid>-<n>-{sw,gwa,gwb}`; a later run sweeps what a
/// killed one left.
const PREFIX: &str = "bsync";
const SYNC_BRIDGE: &str = "sync";
const LAN_BRIDGE: &str = "lan";
pub const NODE_A: Node = Node {
    name: "gwa",
    sync: "10.0.3.2/24",
    lan: "10.0.9.2/24",
    advskew: 0,
    bulk_timeout: 1,
};
/// B's `bulk_timeout` leaves room for the largest table: a bulk is never
/// given up by carpd before the benchmark's own limit.
pub const NODE_B: Node = Node {
    name: "gwb",
    sync: "10.0.3.3/24",
    lan: "10.0.9.3/24",
    advskew: 100,
    bulk_timeout: 3600,
};
const POLL: Duration = Duration::from_millis(10);
/// How long carpd on A takes to give its own start-up request up
/// (`bulk_timeout` 1 s, then the next tick).
const A_SETTLES: Duration = Duration::from_secs(10);
/// How long `conntrackd -c` may take to return once the table is full.
const COMMIT_EXIT: Duration = Duration::from_secs(30);
/// How often B's conntrackd cache is looked at (`conntrackd -s`, a process).
const CACHE_POLL: Duration = Duration::from_millis(10);
/// How often a long bulk says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// After the last probe: later arrivals count as lost.
const PROBE_GRACE: Duration = Duration::from_secs(3);

/// What every run shares.
pub struct Context<'a> {
    pub dir: &'a Path,
    pub interrupts: &'a Receiver<Signal>,
    pub probes: u32,
    pub probe_interval: Duration,
    /// `--bulk-limit`: the same for every size; else [`bulk_limit`].
    pub bulk_limit: Option<Duration>,
}

impl Context<'_> {
    /// Fails if Ctrl-C (or SIGTERM, SIGHUP) came: every guard then drops
    /// on the way out, which kills the daemons and deletes the namespaces.
    pub fn check_interrupt(&self) -> Result<()> {
        match self.interrupts.try_recv() {
            Ok(signal) => bail!("interrupted ({signal})"),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => Ok(()),
        }
    }

    fn bulk_limit(&self, entries: u64) -> Duration {
        self.bulk_limit.unwrap_or_else(|| bulk_limit(entries))
    }

    fn pause(&self, duration: Duration) -> Result<()> {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.check_interrupt()?;
            thread::sleep(POLL);
        }
        Ok(())
    }
}

/// One bulk: how long B took to hold every entry of A.
#[derive(Debug, Clone)]
pub struct Bulk {
    pub entries: u64,
    /// From B's daemon start to B's table holding all entries; `None` if
    /// it did not within the limit.
    pub took: Option<Duration>,
    /// From B's daemon start to its first entry.
    pub first: Option<Duration>,
    /// B's entries when the run ended.
    pub final_count: u64,
    /// How long the bulk was given.
    pub limit: Duration,
    /// Filling A's table (not measured; for the log).
    pub fill: Duration,
    /// What the daemon said about it (carpd's bulk state and drops).
    pub note: String,
}

impl Bulk {
    pub fn rate(&self) -> Option<f64> {
        #[expect(
            clippy::cast_precision_loss,
            reason = "entry counts are far below 2^52"
        )]
        self.took
            .map(|took| self.entries as f64 / took.as_secs_f64().max(1e-9))
    }
}

/// One latency run: each probe's time from creation on A to arrival on B.
#[derive(Debug, Clone)]
pub struct Latency {
    pub samples: Vec<Duration>,
    pub sent: u32,
    pub lost: u32,
    /// The watcher's own event queue overflowed (arrivals may be missing).
    pub overruns: u64,
}

/// What one run measured.
pub struct Report {
    pub bulk: Bulk,
    pub latency: Option<Latency>,
}

fn spec() -> TopologySpec {
    let node = |node: Node| {
        NodeSpec::new(node.name)
            .port("eth-sync", SYNC_BRIDGE, &[node.sync])
            .port("eth0", LAN_BRIDGE, &[node.lan])
    };
    TopologySpec::new()
        .bridge(SYNC_BRIDGE)
        .bridge(LAN_BRIDGE)
        .node(node(NODE_A))
        .node(node(NODE_B))
}

/// The time allowed for a bulk of `entries`: a bulk that has not
/// completed by then is reported as incomplete, with how far it got.
/// conntrackd-inject needs about a minute for 100k entries (it recovers
/// lost datagrams through its 30 s netlink overrun resync, twice).
pub fn bulk_limit(entries: u64) -> Duration {
    Duration::from_secs(75 + entries / 20_000)
}

/// Everything of one run. Fields drop in order: daemons killed first,
/// then the namespaces go (and with them both tables).
struct Stage {
    b: Option<Daemon>,
    a: Option<Daemon>,
    topology: Topology,
}

impl Stage {
    fn a(&mut self) -> Result<&mut Daemon> {
        self.a.as_mut().context("node A's daemon was not started")
    }

    fn b(&mut self) -> Result<&mut Daemon> {
        self.b.as_mut().context("node B's daemon was not started")
    }

    fn netns(&self, node: Node) -> Result<String> {
        Ok(self.topology.node(node.name)?.name().to_owned())
    }
}

/// Starts `implementation` on `node`.
fn start(
    topology: &Topology,
    implementation: Implementation,
    (node, peer): (Node, Node),
    ctx: &Context,
    tag: &str,
    entries: u64,
) -> Result<Daemon> {
    Daemon::start(
        implementation,
        &Place {
            netns: topology.node(node.name)?,
            node,
            peer,
            dir: ctx.dir,
            tag,
            entries: entries + u64::from(ctx.probes),
        },
    )
}

pub fn run(
    ctx: &Context,
    implementation: Implementation,
    entries: u64,
    tag: &str,
    latency: bool,
) -> Result<Report> {
    let mut stage = Stage {
        b: None,
        a: None,
        topology: Topology::build(PREFIX, &spec())?,
    };
    let filled = start_a(ctx, &mut stage, implementation, entries, tag)?;
    let (took, growth) = time_bulk(ctx, &mut stage, implementation, entries, tag)?;
    let bulk = Bulk {
        entries,
        took,
        first: growth.first,
        final_count: growth.last_count,
        limit: ctx.bulk_limit(entries),
        fill: filled,
        note: describe(ctx, &mut stage, tag)?,
    };
    let latency = if latency && bulk.took.is_some() {
        Some(measure_latency(ctx, &mut stage, implementation)?)
    } else {
        None
    };
    drop(stage);
    Ok(Report { bulk, latency })
}

/// Fills A's table and starts A's daemon; returns how long the fill took.
fn start_a(
    ctx: &Context,
    stage: &mut Stage,
    implementation: Implementation,
    entries: u64,
    tag: &str,
) -> Result<Duration> {
    let netns_a = stage.netns(NODE_A)?;
    let filled =
        kernel::fill(&netns_a, u32::try_from(entries)?)?.wait(|| ctx.check_interrupt(), None)?;
    let in_a = kernel::entries_in(&netns_a)?;
    if in_a != entries {
        bail!("node A holds {in_a} entries after installing {entries}");
    }
    stage.a = Some(start(
        &stage.topology,
        implementation,
        (NODE_A, NODE_B),
        ctx,
        tag,
        entries,
    )?);
    stage.a()?.ready()?;
    if implementation == Implementation::Carpd {
        wait_for_bulk_state(ctx, stage.a()?, &["failed", "done"], A_SETTLES)?;
    }
    Ok(filled.took)
}

/// How B's table grew after its daemon started.
struct Grown {
    first: Option<Duration>,
    last_count: u64,
}

/// Starts B's daemon (and asks conntrackd for its resync) with B's count
/// watched from before; returns the time to all `entries`, if they came.
fn time_bulk(
    ctx: &Context,
    stage: &mut Stage,
    implementation: Implementation,
    entries: u64,
    tag: &str,
) -> Result<(Option<Duration>, Grown)> {
    let latest = Arc::new(AtomicU64::new(0));
    let watcher = kernel::watch_growth(&stage.netns(NODE_B)?, entries, Arc::clone(&latest))?;
    let started = Instant::now();
    stage.b = Some(start(
        &stage.topology,
        implementation,
        (NODE_B, NODE_A),
        ctx,
        tag,
        entries,
    )?);
    let limit = ctx.bulk_limit(entries);
    let mut commit = None;
    if implementation.is_conntrackd() {
        stage.b()?.request_resync()?;
        if implementation == Implementation::ConntrackdCommit
            && wait_for_cache(ctx, stage, entries, started + limit)?
        {
            commit = Some(stage.b()?.start_commit()?);
        }
    }
    let mut reported = Instant::now();
    let growth = watcher.wait(
        || {
            ctx.check_interrupt()?;
            stage.a()?.ensure_running()?;
            stage.b()?.ensure_running()?;
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                println!(
                    "  {:.0}s: B holds {} of {entries}",
                    started.elapsed().as_secs_f64(),
                    latest.load(Ordering::Relaxed)
                );
            }
            Ok(())
        },
        Some(started + limit),
    )?;
    if let Some(mut commit) = commit {
        // The client returns once the daemon reports the commit done, a
        // moment after the last entry is in; its output says what failed.
        let deadline = Instant::now() + COMMIT_EXIT;
        let status = loop {
            ctx.check_interrupt()?;
            if let Some(status) = commit.try_wait()? {
                break Some(status);
            }
            if growth.done.is_none() || Instant::now() >= deadline {
                break None;
            }
            thread::sleep(POLL);
        };
        if !status.is_some_and(|status| status.success()) {
            println!(
                "  `conntrackd -c` {}: see {}",
                status.map_or_else(|| "did not return".to_owned(), |s| format!("failed ({s})")),
                ctx.dir.display()
            );
        }
    }
    Ok((
        growth.done.map(|done| done - started),
        Grown {
            first: growth.first.map(|first| first - started),
            last_count: growth.last_count,
        },
    ))
}

/// What the daemons say once the bulk is over: in full next to the logs
/// (`<tag>-<node>.stats`), in short for the progress line.
fn describe(ctx: &Context, stage: &mut Stage, tag: &str) -> Result<String> {
    for (daemon, node) in [(&stage.a, NODE_A), (&stage.b, NODE_B)] {
        let Some(daemon) = daemon else { continue };
        let path = ctx.dir.join(format!("{tag}-{}.stats", node.name));
        let text = daemon
            .stats()
            .unwrap_or_else(|error| format!("{error:#}\n"));
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let dropped = kernel::udp_receive_errors(&stage.netns(NODE_B)?)?;
    let mut note = format!("B's sync socket dropped {dropped} datagrams (full receive queue)");
    // Best effort: a carpd too busy to answer must not fail the run.
    let status = stage.b()?.carpd_status().ok().flatten();
    if let Some(sync) = status.and_then(|status| status.sync) {
        let _ = write!(
            note,
            "; carpd on B: bulk {}, {} updates applied, {} failed, {} event overruns",
            sync.bulk, sync.updates_applied, sync.updates_failed, sync.overruns
        );
        for (reason, count) in &sync.drops {
            let _ = write!(note, ", {count} dropped as {reason}");
        }
    }
    Ok(note)
}

/// Probes on A one at a time, stamped on arrival in B.
fn measure_latency(
    ctx: &Context,
    stage: &mut Stage,
    implementation: Implementation,
) -> Result<Latency> {
    let netns_a = stage.netns(NODE_A)?;
    let netns_b = stage.netns(NODE_B)?;
    if implementation == Implementation::Carpd {
        wait_for_bulk_state(ctx, stage.b()?, &["done"], Duration::from_secs(30))?;
    }
    // What is still in flight after the bulk settles first.
    ctx.pause(Duration::from_secs(1))?;
    let ready = Arc::new(AtomicBool::new(false));
    let watcher = kernel::watch_probes(&netns_b, ctx.probes, Arc::clone(&ready))?;
    while !ready.load(Ordering::Relaxed) {
        if watcher.is_finished() {
            watcher.wait(|| Ok(()), None)?;
            bail!("the arrival watcher ended before it subscribed");
        }
        ctx.check_interrupt()?;
        thread::sleep(Duration::from_millis(1));
    }
    let created: Created = kernel::create_probes(&netns_a, ctx.probes, ctx.probe_interval)?
        .wait(|| ctx.check_interrupt(), None)?;
    let deadline = Instant::now() + PROBE_GRACE;
    let arrivals: Arrivals = watcher.wait(
        || {
            ctx.check_interrupt()?;
            stage.a()?.ensure_running()?;
            stage.b()?.ensure_running()
        },
        Some(deadline),
    )?;
    if created.failed > 0 {
        bail!("{} probes could not be installed on A", created.failed);
    }
    let mut samples = Vec::with_capacity(created.at.len());
    let mut lost = 0;
    for (sent, arrived) in created.at.iter().zip(&arrivals.at) {
        match arrived {
            Some(arrived) => samples.push(arrived.saturating_duration_since(*sent)),
            None => lost += 1,
        }
    }
    Ok(Latency {
        samples,
        sent: u32::try_from(created.at.len())?,
        lost,
        overruns: arrivals.overruns,
    })
}

/// Waits until B's conntrackd holds `entries` in its external cache, or
/// `deadline`; whether it does.
fn wait_for_cache(
    ctx: &Context,
    stage: &mut Stage,
    entries: u64,
    deadline: Instant,
) -> Result<bool> {
    loop {
        ctx.check_interrupt()?;
        let b = stage.b()?;
        b.ensure_running()?;
        let cached = daemons::cache_entries(&b.conntrackd(&["-s"])?, "external").unwrap_or(0);
        if cached >= entries {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            println!("  B's conntrackd cache holds {cached} of {entries}: no commit");
            return Ok(false);
        }
        thread::sleep(CACHE_POLL);
    }
}

/// Waits until carpd's bulk state (`carpctl status`) is one of `states`.
fn wait_for_bulk_state(
    ctx: &Context,
    daemon: &mut Daemon,
    states: &[&str],
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        ctx.check_interrupt()?;
        daemon.ensure_running()?;
        if let Some(sync) = daemon.carpd_status()?.and_then(|status| status.sync) {
            if states.contains(&sync.bulk.as_str()) {
                return Ok(());
            }
            last = sync.bulk;
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "{}: bulk state still {last:?} after {}s, waited for {}",
        daemon.label(),
        limit.as_secs(),
        states.join(" or ")
    )
}
