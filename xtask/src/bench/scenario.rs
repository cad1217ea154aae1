//! One run of one scenario: a fresh three-node segment (two gateways and a
//! client on one bridge), the daemon pair, a 100 Hz pinger, the action, and
//! the figures read off the capture.
//!
//! ```text
//!   gw1    10.0.9.2   ─┐
//!   gw2    10.0.9.3   ─┼─ seg      VIP 10.0.9.1 (vhid / vrid 1)
//!   client 10.0.9.100 ─┘          ping -i 0.0099 VIP
//! ```

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::thread;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use carp_tests::{NodeSpec, Process, Signal, Topology, TopologySpec};

use super::capture::{Sniffer, now};
use super::daemons::{self, Daemon, Gateway, Place, Tools};
use super::events::Nanos;
use super::impls::{self, IFNAME, Implementation, Mode, PREFIX_LEN, Rank};
use super::measure::{self, Outcome, Roles, Span, SteadyOutcome};

/// Namespaces are `bench-<pid>-<n>-{sw,gw1,gw2,client}`; a later run sweeps
/// what a killed one left.
const PREFIX: &str = "bench";
const BRIDGE: &str = "seg";
pub const VIP: &str = "10.0.9.1";
const VIP_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 1);
const CLIENT: &str = "client";
const CLIENT_ADDRESS: &str = "10.0.9.100";
const MASTER: Gateway = Gateway {
    name: "gw1",
    address: "10.0.9.2",
    rank: Rank::Master,
};
const BACKUP: Gateway = Gateway {
    name: "gw2",
    address: "10.0.9.3",
    rank: Rank::Backup,
};
/// About 100 Hz: a lost reply is 10 ms of outage. Not `0.01`: iputils
/// ping (20221126) paces an interval of exactly 10 ms at about 16 ms here,
/// anything below at the interval asked. The table shows the real rate.
const PING_INTERVAL: &str = "0.0099";
/// Replies in a row from one node before it counts as serving the VIP.
const SERVING_REPLIES: usize = 10;
/// Master adverts before acting: carpd and ucarp send their second
/// gratuitous ARP with the third, so the start-up announcements are over.
const STEADY_ADVERTS: usize = 3;
const STEADY_REPLIES: usize = 20;
/// How often the waits look at the capture.
const POLL: Duration = Duration::from_millis(10);
/// The old master must have been silent for two and a half of its
/// intervals (a live master misses none)...
const QUIET_HALF_INTERVALS: u32 = 5;
/// ...and at least this long (sub-second modes), for a handover to count.
const MIN_QUIET: Duration = Duration::from_millis(250);
/// Observation goes on this long after the new master serves, to catch a
/// late duplicate.
const SETTLE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    Crash,
    Link,
    Planned,
}

impl Scenario {
    pub const ALL: [Self; 3] = [Self::Crash, Self::Link, Self::Planned];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Crash => "crash",
            Self::Link => "link",
            Self::Planned => "planned",
        }
    }
}

/// What a figure is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Event {
    /// SIGKILL of every process of the master's daemon.
    Crash,
    /// The master's carpdev set down.
    LinkDown,
    /// ... and up again: the master should take the VIP back.
    LinkUp,
    /// The master's daemon told to go (SIGTERM, or `carpctl down`).
    Planned,
}

impl Event {
    pub const ALL: [Self; 4] = [Self::Crash, Self::LinkDown, Self::LinkUp, Self::Planned];

    pub const fn key(self) -> &'static str {
        match self {
            Self::Crash => "crash",
            Self::LinkDown => "link_down",
            Self::LinkUp => "fail_back",
            Self::Planned => "planned",
        }
    }
}

/// What every run shares.
pub struct Context<'a> {
    pub mode: Mode,
    pub tools: &'a Tools,
    pub dir: &'a Path,
    pub interrupts: &'a Receiver<Signal>,
    /// Keep every run's capture and logs in `dir`.
    pub keep: bool,
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

    /// Sleeps `duration` in small steps, checking for Ctrl-C.
    fn pause(&self, duration: Duration) -> Result<()> {
        let until = now() + nanos(duration);
        while now() < until {
            self.check_interrupt()?;
            thread::sleep(POLL);
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        match self.mode {
            // Master-down is about 4 s for every daemon here; ucarp's poll
            // loop can add an interval. Fail-back needs the old backup's
            // quiet time (2.5 x 1.4 s) on top.
            Mode::Normal => Limits {
                steady: Duration::from_secs(20),
                takeover: Duration::from_secs(15),
                fail_back: Duration::from_secs(20),
            },
            Mode::Fast => Limits {
                steady: Duration::from_secs(10),
                takeover: Duration::from_secs(5),
                fail_back: Duration::from_secs(5),
            },
        }
    }
}

struct Limits {
    steady: Duration,
    takeover: Duration,
    fail_back: Duration,
}

fn nanos(duration: Duration) -> Nanos {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn port(node: &str) -> String {
    format!("{node}-{IFNAME}")
}

fn spec() -> TopologySpec {
    let address = |ip: &str| format!("{ip}/{PREFIX_LEN}");
    TopologySpec::new()
        .bridge(BRIDGE)
        .node(NodeSpec::new(MASTER.name).port(IFNAME, BRIDGE, &[&address(MASTER.address)]))
        .node(NodeSpec::new(BACKUP.name).port(IFNAME, BRIDGE, &[&address(BACKUP.address)]))
        .node(NodeSpec::new(CLIENT).port(IFNAME, BRIDGE, &[&address(CLIENT_ADDRESS)]))
}

/// Everything of one run. Fields drop in order: the pinger and daemons are
/// killed, then tcpdump, then the namespaces go (killing any leftover).
struct Stage {
    pinger: Process,
    master: Daemon,
    backup: Daemon,
    sniffer: Sniffer,
    topology: Topology,
    implementation: Implementation,
    tag: String,
}

impl Stage {
    fn start(ctx: &Context, implementation: Implementation, tag: String) -> Result<Self> {
        let topology = Topology::build(PREFIX, &spec())?;
        let ports = [port(MASTER.name), port(BACKUP.name), port(CLIENT)];
        let sniffer = Sniffer::start(topology.switch(), &ports, implementation.speaks_carp())?;
        let mut daemons = Vec::new();
        for gateway in [MASTER, BACKUP] {
            let place = Place {
                netns: topology.node(gateway.name)?,
                gateway,
                dir: ctx.dir,
                tag: &tag,
                vip: VIP,
            };
            daemons.push(Daemon::start(implementation, ctx.mode, &place, ctx.tools)?);
        }
        let (Some(mut backup), Some(mut master)) = (daemons.pop(), daemons.pop()) else {
            bail!("two daemons were started");
        };
        master.ready()?;
        backup.ready()?;
        let pinger = topology
            .node(CLIENT)?
            .spawn(["ping", "-i", PING_INTERVAL, "-n", "-q", VIP], None)?;
        let mut stage = Self {
            pinger,
            master,
            backup,
            sniffer,
            topology,
            implementation,
            tag,
        };
        stage.wait_steady(ctx)?;
        Ok(stage)
    }

    /// gw1 advertises alone and answers the pinger.
    fn wait_steady(&mut self, ctx: &Context) -> Result<()> {
        let limit = ctx.limits().steady;
        let deadline = now() + nanos(limit);
        let (master, backup) = (port(MASTER.name), port(BACKUP.name));
        loop {
            ctx.check_interrupt()?;
            self.master.ensure_running()?;
            self.backup.ensure_running()?;
            self.pinger.ensure_running()?;
            let steady = self.sniffer.with_events(|events| {
                measure::steady(
                    events,
                    &master,
                    &backup,
                    VIP_ADDRESS,
                    STEADY_ADVERTS,
                    STEADY_REPLIES,
                )
            });
            if steady {
                return Ok(());
            }
            if now() >= deadline {
                bail!(
                    "{}: {} did not become the only master answering for {VIP} within {}s\n--- {} ---\n{}\n--- {} ---\n{}",
                    self.implementation,
                    MASTER.name,
                    limit.as_secs(),
                    self.master.label(),
                    self.master.log_tail(15),
                    self.backup.label(),
                    self.backup.log_tail(15),
                );
            }
            thread::sleep(POLL);
        }
    }

    fn quiet(&self, ctx: &Context, rank: Rank) -> Nanos {
        let interval = impls::interval(self.implementation, ctx.mode, rank);
        nanos((interval * QUIET_HALF_INTERVALS / 2).max(MIN_QUIET))
    }

    /// Waits (at most `limit`) until `roles.new` advertises and serves the
    /// VIP and `roles.old` has gone quiet, then a little longer; returns the
    /// figures since `start`. A timeout is a result (no takeover), not an error.
    fn observe(
        &self,
        ctx: &Context,
        roles: &Roles,
        start: Nanos,
        limit: Duration,
        quiet: Nanos,
    ) -> Result<Outcome> {
        let deadline = start + nanos(limit);
        let end = loop {
            ctx.check_interrupt()?;
            let at = now();
            let done = at.saturating_sub(start) >= quiet
                && self.sniffer.with_events(|events| {
                    measure::handed_over(events, roles, Span { start, end: at }, quiet)
                        && measure::serving(events, roles.new, roles.vip, start, SERVING_REPLIES)
                });
            if done {
                ctx.pause(SETTLE)?;
                break now();
            }
            if at >= deadline {
                break at;
            }
            thread::sleep(POLL);
        };
        Ok(self
            .sniffer
            .with_events(|events| measure::measure(events, roles, Span { start, end }, quiet)))
    }

    /// Stops the capture (returning its drop count) and saves it if `keep`.
    /// Errors here only lose diagnostics: they are printed, not returned,
    /// so they cannot hide why a run failed.
    fn finish(&mut self, ctx: &Context, keep: bool) -> Option<u64> {
        let drops = self.sniffer.stop().unwrap_or_else(|error| {
            eprintln!("bench: {}: stopping tcpdump: {error:#}", self.tag);
            None
        });
        if keep {
            let path = ctx.dir.join(format!("{}-capture.txt", self.tag));
            if let Err(error) = self.sniffer.save(&path) {
                eprintln!("bench: {error:#}");
            }
        }
        drops
    }
}

fn roles<'a>(new: &'a str, old: &'a str, client: &'a str) -> Roles<'a> {
    Roles {
        new,
        old,
        client,
        vip: VIP_ADDRESS,
    }
}

/// What one run measured.
pub struct Report<T> {
    pub figures: T,
    /// Packets the kernel dropped before tcpdump read them (`None`: unknown).
    pub capture_drops: Option<u64>,
}

/// Runs `scenario` once for `implementation`; returns the figures of each
/// event it contains.
pub fn run(
    ctx: &Context,
    implementation: Implementation,
    scenario: Scenario,
    run: usize,
) -> Result<Report<Vec<(Event, Outcome)>>> {
    let tag = format!("{}-{}-{run}", implementation.name(), scenario.name());
    let mut stage = Stage::start(ctx, implementation, tag.clone())
        .with_context(|| format!("{tag}: setting up"))?;
    let result = act(ctx, &stage, scenario);
    let capture_drops = stage.finish(ctx, ctx.keep || result.is_err());
    let figures = result.with_context(|| format!("{tag} (files in {})", ctx.dir.display()))?;
    Ok(Report {
        figures,
        capture_drops,
    })
}

fn act(ctx: &Context, stage: &Stage, scenario: Scenario) -> Result<Vec<(Event, Outcome)>> {
    let limits = ctx.limits();
    let (gw1, gw2, client) = (port(MASTER.name), port(BACKUP.name), port(CLIENT));
    let to_backup = roles(&gw2, &gw1, &client);
    let quiet_master = stage.quiet(ctx, Rank::Master);
    let master_netns = stage.topology.node(MASTER.name)?;
    match scenario {
        Scenario::Crash => {
            let start = daemons::crash(master_netns, &stage.master)?;
            stage.sniffer.mark(start, "SIGKILL of every process on gw1");
            let outcome = stage.observe(ctx, &to_backup, start, limits.takeover, quiet_master)?;
            Ok(vec![(Event::Crash, outcome)])
        }
        Scenario::Link => {
            // `ip` takes a few milliseconds to start (about 4 ms here): the
            // instant is taken before it, so link figures include that.
            let start = now();
            master_netns.link_down(IFNAME)?;
            stage.sniffer.mark(start, "gw1 eth0 down");
            let down = stage.observe(ctx, &to_backup, start, limits.takeover, quiet_master)?;
            let back = roles(&gw1, &gw2, &client);
            let start = now();
            master_netns.link_up(IFNAME)?;
            stage.sniffer.mark(start, "gw1 eth0 up");
            let quiet_backup = stage.quiet(ctx, Rank::Backup);
            let up = stage.observe(ctx, &back, start, limits.fail_back, quiet_backup)?;
            Ok(vec![(Event::LinkDown, down), (Event::LinkUp, up)])
        }
        Scenario::Planned => {
            let start = stage.master.step_down()?;
            stage.sniffer.mark(start, "planned handover on gw1");
            let outcome = stage.observe(ctx, &to_backup, start, limits.takeover, quiet_master)?;
            Ok(vec![(Event::Planned, outcome)])
        }
    }
}

/// The steady run (fast mode): both daemons up for `duration`, nothing done;
/// counts changes of master and lost echo replies.
pub fn steady(
    ctx: &Context,
    implementation: Implementation,
    duration: Duration,
    load: bool,
) -> Result<Report<SteadyOutcome>> {
    let tag = format!("{}-steady", implementation.name());
    let mut stage = Stage::start(ctx, implementation, tag.clone())
        .with_context(|| format!("{tag}: setting up"))?;
    // Killed when dropped, at the end of the run.
    let _load = if load {
        load_generators(&stage)?
    } else {
        Vec::new()
    };
    let start = now();
    let end = start + nanos(duration);
    while now() < end {
        ctx.check_interrupt()?;
        stage.master.ensure_running()?;
        stage.backup.ensure_running()?;
        thread::sleep(Duration::from_millis(100));
    }
    let (gw1, gw2, client) = (port(MASTER.name), port(BACKUP.name), port(CLIENT));
    let outcome = stage.sniffer.with_events(|events| {
        measure::steady_run(events, &roles(&gw2, &gw1, &client), Span { start, end })
    });
    let capture_drops = stage.finish(ctx, ctx.keep);
    Ok(Report {
        figures: outcome,
        capture_drops,
    })
}

/// Work that keeps both cores busy while the steady run watches for a
/// spurious failover: one spinning shell per core, and 500 echo requests/s
/// to the master's own address, through its XDP program (not to the VIP,
/// whose echoes the measurement counts; modest, so the capture keeps up).
fn load_generators(stage: &Stage) -> Result<Vec<Process>> {
    let mut load = Vec::new();
    for core in 0..2 {
        let mut spin = std::process::Command::new("sh");
        spin.args(["-c", "while :; do :; done"]);
        load.push(Process::spawn(format!("cpu load {core}"), &mut spin)?);
    }
    load.push(
        stage
            .topology
            .node(CLIENT)?
            .spawn(["ping", "-i", "0.002", "-n", "-q", MASTER.address], None)?,
    );
    Ok(load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_segment_is_valid_and_the_vip_is_one_address() -> Result<()> {
        spec().validate()?;
        assert_eq!(VIP.parse::<Ipv4Addr>()?, VIP_ADDRESS);
        assert_eq!(port(MASTER.name), "gw1-eth0");
        Ok(())
    }
}
