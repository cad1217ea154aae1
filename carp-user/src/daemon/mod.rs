//! The agent: one task owns every vhid's election and all protocol state
//! (an actor). Advertisements from the XDP ring buffer, control-socket calls
//! and timers are its inputs; sockets, rtnetlink and BPF maps its outputs.

mod commands;
mod control;
mod demotion;
mod heartbeat;
mod notify;
mod setup;
mod status;
mod tracking;
mod vhid;

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::api::{Request, Response, Status};
use crate::clock::{self, Mono};
use crate::config::Config;
use crate::dataplane::{AdvertReceiver, ClaimReceiver, Dataplane, ReceivedAdvert};
use crate::fsm::{Ignored, Interval, Output, PeerAdvert, State};
use crate::groups::Groups;
use crate::hooks::Hooks;
use crate::net::link::Links;
use crate::net::link_monitor::{CarrierEvent, LinkMonitor};
use crate::net::sysctl::Sysctls;
use crate::sync::service::SyncHandle;
use crate::track::{CheckResult, Trackers};
use crate::wire::Advertisement;
use demotion::Boot;
use heartbeat::Heartbeat;
use tracking::Tracker;
use vhid::Vhid;

/// Commands queued for the agent; bounded so a burst of clients cannot grow memory.
const COMMAND_QUEUE: usize = 64;
/// Carrier events and check results queued for the agent (bounded; their
/// senders wait when it is full).
const EVENT_QUEUE: usize = 256;
/// Agent-side drops not tied to a configured vhid.
const DROP_BADVHID: &str = "badvhid";
/// Timer steps taken per vhid per wake-up; the machine needs at most two
/// (advert, then delayed announce), the bound only guards against a bug.
const MAX_TIMER_STEPS: usize = 8;

enum Command {
    Call {
        request: Request,
        reply: oneshot::Sender<Response>,
    },
}

/// A cheap, cloneable way to talk to the running agent.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
}

impl Handle {
    /// Sends a control request and waits for the answer.
    pub async fn call(&self, request: Request) -> Response {
        let (reply, answer) = oneshot::channel();
        if self
            .commands
            .send(Command::Call { request, reply })
            .await
            .is_err()
        {
            return Response::Error {
                message: "carpd is stopping".into(),
            };
        }
        answer.await.unwrap_or(Response::Error {
            message: "carpd is stopping".into(),
        })
    }

    /// A status snapshot, or None while the agent stops.
    pub async fn status(&self) -> Option<Status> {
        match self.call(Request::Status).await {
            Response::Status(status) => Some(status),
            _ => None,
        }
    }
}

/// Everything the agent owns.
struct Agent {
    vhids: Vec<Vhid>,
    groups: Groups,
    trackers: Vec<Tracker>,
    hooks: Hooks,
    boot: Boot,
    dataplane: Dataplane,
    links: Links,
    sysctls: Sysctls,
    /// carpdev ifindex -> name, for status and badvhid accounting.
    carpdevs: BTreeMap<u32, String>,
    /// Agent-side drops per carpdev that match no vhid.
    carpdev_drops: BTreeMap<u32, BTreeMap<String, u64>>,
    /// Every carp interface we created or adopted, removed on shutdown even
    /// when setup failed half way.
    carp_interfaces: Vec<(String, u32)>,
    /// Send-error demotions (vhid, demoted) waiting for `settle_send_errors`.
    send_error_changes: Vec<(usize, bool)>,
    heartbeat: Heartbeat,
    /// `carpctl detach` asked us to exit leaving the dataplane pinned.
    detach_requested: bool,
    /// We adopted a predecessor's pinned dataplane (a hitless restart).
    resumed: bool,
    /// Conntrack state sync with the peer (`[sync]`).
    sync: Option<SyncHandle>,
    /// What the sync service was last told: MASTER of any vhid.
    sync_told_master: bool,
}

/// How the agent leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    /// SIGTERM/SIGINT: bow out, remove the carp interfaces and the pins.
    BowOut,
    /// `carpctl detach`: leave everything in place for the next carpd.
    Detach,
}

/// The agent's inputs besides control calls.
struct Inputs {
    adverts: AdvertReceiver,
    claims: ClaimReceiver,
    carrier: mpsc::Receiver<CarrierEvent>,
    checks: mpsc::Receiver<CheckResult>,
    /// Kept alive for as long as the agent runs.
    _link_monitor: LinkMonitor,
    _trackers: Trackers,
    /// The sync service's demotion of group carp.
    sync_demotion: Option<watch::Receiver<u8>>,
}

/// Runs carpd until SIGTERM or SIGINT, then bows out and removes what it
/// created; or until `carpctl detach`, then exits leaving the pinned
/// dataplane to the next carpd. `fresh` discards a pinned dataplane that
/// cannot be resumed instead of refusing to start.
pub async fn run(config: Config, fresh: bool) -> anyhow::Result<()> {
    let control = control::ControlSocket::bind(&config.control_socket)?;
    let metrics_listener = match config.metrics_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("metrics_listen {address}"))?,
        ),
        None => None,
    };
    let (mut agent, mut inputs) = setup::build(&config, fresh).await?;
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let handle = Handle {
        commands: commands_tx,
    };

    let control_drained = control.drained();
    let control_task = {
        let handle = handle.clone();
        tokio::spawn(async move { control.serve(handle).await })
    };
    let metrics_task = metrics_listener.map(|listener| {
        let handle = handle.clone();
        tokio::spawn(crate::metrics::serve(listener, handle))
    });
    drop(handle);

    agent.start().await;
    let result = agent.run(&mut inputs, commands).await;
    let exit = *result.as_ref().unwrap_or(&Exit::BowOut);
    agent.shutdown(exit).await;
    control_task.abort();
    if exit == Exit::Detach {
        // The answer to `carpctl detach` is still on its way.
        control_drained.await;
    }
    if let Some(task) = metrics_task {
        task.abort();
    }
    result.map(|_| ())
}

impl Agent {
    fn demote_of(&self, index: usize) -> u8 {
        self.groups.demote_sum(&self.vhids[index].config.groups)
    }

    /// Every vhid that can run goes INIT -> BACKUP; the boot interlock holds
    /// `carp` demoted until the node is ready. After a hitless restart every
    /// vhid resumes the role its pinned dataplane holds instead, and there
    /// is no interlock: the node was up and ready, and a demotion now would
    /// hand a MASTER's vhids to the peer.
    async fn start(&mut self) {
        let now = clock::now();
        // Before anything can become MASTER: without a beat nothing is owned.
        self.beat_if_due(now);
        if self.resumed {
            info!("hitless restart: no boot interlock");
            notify::ready();
        } else {
            self.begin_boot(now);
        }
        for index in 0..self.vhids.len() {
            if self.vhids[index].carpdev_carrier {
                if let Some(master) = self.vhids[index].resume_master {
                    self.resume(index, now, master).await;
                    continue;
                }
                let output = self.vhids[index].machine.start(now);
                self.apply(index, output).await;
            } else {
                // A predecessor's role must not outlive the carrier.
                self.set_role(index, false);
                warn!(
                    "{}: {} has no carrier: staying in INIT",
                    self.vhids[index].name(),
                    self.vhids[index].config.carpdev
                );
                self.set_carpdev_demotion(index, true).await;
            }
        }
        self.check_ready().await;
    }

    async fn run(
        &mut self,
        inputs: &mut Inputs,
        mut commands: mpsc::Receiver<Command>,
    ) -> anyhow::Result<Exit> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut interrupt =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        loop {
            let deadline = self.next_deadline();
            // Biased: a pending advertisement is handled before a timer that
            // expired at the same time, so a live master is never declared down.
            tokio::select! {
                biased;
                _ = terminate.recv() => {
                    info!("SIGTERM: bowing out");
                    return Ok(Exit::BowOut);
                }
                _ = interrupt.recv() => {
                    info!("SIGINT: bowing out");
                    return Ok(Exit::BowOut);
                }
                received = inputs.adverts.recv() => {
                    let advert = received.context("reading advertisements from the XDP ring buffer")?;
                    self.on_advert(&advert).await;
                }
                Some(event) = inputs.carrier.recv() => self.on_carrier(event).await,
                claim = inputs.claims.recv() => {
                    let conflict = claim.context("reading VIP claims from the XDP ring buffer")?;
                    self.on_conflict(&conflict);
                }
                Some(result) = inputs.checks.recv() => self.on_check(result).await,
                Some(demotion) = sync_demotion(&mut inputs.sync_demotion) => {
                    self.set_contribution(crate::groups::CARP_GROUP, SYNC_SOURCE, u32::from(demotion)).await;
                }
                Some(command) = commands.recv() => self.on_command(command).await,
                () = sleep_until(deadline) => self.on_timers().await,
            }
            self.settle_send_errors().await;
            if self.detach_requested {
                return Ok(Exit::Detach);
            }
        }
    }

    fn next_deadline(&self) -> Option<Mono> {
        self.vhids
            .iter()
            .filter_map(|v| v.machine.next_deadline())
            .chain(self.boot.deadline())
            .chain([self.heartbeat.next()])
            .chain(self.trackers.iter().filter_map(Tracker::coherence_due))
            .min()
    }

    async fn on_advert(&mut self, received: &ReceivedAdvert) {
        let vhid_number = received.header[1];
        let Some(index) = self.find_vhid(received.ifindex, vhid_number, received) else {
            let drops = self.carpdev_drops.entry(received.ifindex).or_default();
            *drops.entry(DROP_BADVHID.to_owned()).or_insert(0) += 1;
            return;
        };
        let demote = self.demote_of(index);
        let vhid = &mut self.vhids[index];
        vhid.counters.adverts_received += 1;
        let advert = match Advertisement::decode(&received.header) {
            Ok(advert) => advert,
            Err(error) => {
                // XDP already checked these; a mismatch means the two disagree.
                vhid.count_drop(error.reason());
                return;
            }
        };
        if !vhid.auth.verify(advert.counter, &advert.digest) {
            vhid.note_badauth(received.source);
            return;
        }
        let peer = PeerAdvert {
            interval: Interval {
                advbase: advert.advbase,
                advskew: advert.advskew,
            },
            demote: advert.demote,
            counter: advert.counter,
        };
        let result = vhid
            .machine
            .advert_received(received.timestamp, &peer, demote);
        match result {
            Ok(output) => self.apply(index, output).await,
            Err(Ignored::Loop) => self.vhids[index].note_loop(received.source),
            Err(Ignored::NotRunning) => {}
        }
    }

    /// The index of `vhid` configured on the carpdev `ifindex`.
    fn vhid_on(&self, ifindex: u32, vhid: u8) -> Option<usize> {
        self.vhids
            .iter()
            .position(|v| v.carpdev_index == ifindex && v.config.vhid == vhid)
    }

    /// The vhid an advertisement is for. Like OpenBSD, an IPv4 vhid with a
    /// unicast peer listens only to unicast and one without only to multicast.
    fn find_vhid(&self, ifindex: u32, vhid: u8, received: &ReceivedAdvert) -> Option<usize> {
        self.vhids.iter().position(|v| {
            v.carpdev_index == ifindex
                && v.config.vhid == vhid
                && match received.source {
                    IpAddr::V4(_) => received.multicast == v.config.peer.is_none(),
                    IpAddr::V6(_) => true,
                }
        })
    }

    async fn on_timers(&mut self) {
        let now = clock::now();
        self.beat_if_due(now);
        for index in 0..self.vhids.len() {
            for _ in 0..MAX_TIMER_STEPS {
                if self.vhids[index]
                    .machine
                    .next_deadline()
                    .is_none_or(|deadline| deadline > now)
                {
                    break;
                }
                let demote = self.demote_of(index);
                let output = self.vhids[index].machine.poll_timers(now, demote);
                self.apply(index, output).await;
            }
        }
        self.on_coherence_timers(now).await;
        if self.boot.expired(now) {
            self.release_boot().await;
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Call { request, reply } => {
                let response = self.handle_request(request).await;
                // The client may have gone; nothing to do then.
                let _ = reply.send(response);
            }
        }
    }

    /// Carries out what the state machine decided. Taking over, in OpenBSD's
    /// order: take the addresses, advertise, announce. Stepping down: stop
    /// the datapath, advertise (the bow-out lets the peer take over at
    /// once), and only then take the carp interface down, which costs
    /// rtnetlink milliseconds the peer should not wait for. This is the one
    /// path every state change of a vhid takes.
    async fn apply(&mut self, index: usize, output: Output) {
        let mut stepped_down = false;
        if let Some(transition) = &output.transition {
            self.vhids[index].log_transition(transition);
            self.hooks.transition(
                self.vhids[index].name(),
                self.vhids[index].config.vhid,
                transition.from,
                transition.to,
            );
            let was_master = transition.from == State::Master;
            let is_master = transition.to == State::Master;
            if is_master && !was_master {
                // State before traffic: the replicated connections must be
                // in the kernel before the VIP draws their packets here.
                if let Some(sync) = &self.sync
                    && !sync.prepare_takeover().await
                {
                    warn!(
                        "{}: sync did not confirm the replicated state in time; taking over anyway",
                        self.vhids[index].name()
                    );
                }
                self.set_role(index, true);
                self.set_link(index, true).await;
            } else if was_master && !is_master {
                self.set_role(index, false);
                stepped_down = true;
            }
        }
        if let Some(advert) = output.send_advert {
            let sent = self.vhids[index].send_advert(advert);
            self.note_send(index, sent);
        }
        if output.announce {
            self.vhids[index].announce();
        }
        // A balanced interface stays up while we are MASTER of any node.
        let shared_with_a_master = self.vhids.iter().any(|v| {
            v.carp_index == self.vhids[index].carp_index && v.machine.state() == State::Master
        });
        if stepped_down && !shared_with_a_master {
            self.set_link(index, false).await;
        }
        if output.transition.is_some() {
            self.tell_sync_our_role().await;
        }
    }

    /// The sync service never holds a bulk demotion on a MASTER.
    async fn tell_sync_our_role(&mut self) {
        let master = self
            .vhids
            .iter()
            .any(|v| v.machine.state() == State::Master);
        if let Some(sync) = &self.sync
            && master != self.sync_told_master
        {
            self.sync_told_master = master;
            sync.set_master(master).await;
        }
    }

    /// The datapath changes hands in one map write: before the gratuitous
    /// ARP draws traffic to us, and before a new BACKUP could take one more
    /// packet for an address its peer now owns.
    fn set_role(&mut self, index: usize, owner: bool) {
        let vhid = &self.vhids[index];
        if let Err(error) = self
            .dataplane
            .set_role(vhid.carpdev_index, vhid.config.vhid, owner)
        {
            warn!("{}: cannot set the XDP role: {error}", vhid.name());
        }
    }

    /// Brings the carp interface up (we own the VIPs) or down (we must not
    /// answer ARP/ND for them nor accept their traffic).
    async fn set_link(&mut self, index: usize, owner: bool) {
        let vhid = &self.vhids[index];
        if let Err(error) = self.links.set_up(vhid.carp_index, owner).await {
            warn!(
                "{}: cannot set the interface {}: {error}",
                vhid.name(),
                if owner { "up" } else { "down" }
            );
            return;
        }
        if owner {
            // Addresses survive link down (keep_addr_on_down), but refresh
            // them in case someone removed one by hand.
            for net in &vhid.config.addresses {
                if let Err(error) = self.links.add_address(vhid.carp_index, *net).await {
                    warn!("{}: cannot add {net}: {error}", vhid.name());
                }
            }
        }
    }

    /// Adopts a predecessor's role for a vhid without a transition: the
    /// map already holds it; a MASTER's carp interface must be up.
    async fn resume(&mut self, index: usize, now: Mono, master: bool) {
        let demote = self.demote_of(index);
        let output = self.vhids[index].machine.resume(now, master, demote);
        info!(
            "{}: resumed as {}",
            self.vhids[index].name(),
            self.vhids[index].machine.state()
        );
        self.set_role(index, master);
        if master {
            self.set_link(index, true).await;
        }
        self.apply(index, output).await;
    }

    /// Undoes a setup that failed half way: bows out and removes what it
    /// created; adopting, leaves the predecessor's dataplane as it was.
    async fn abandon_setup(&mut self) {
        let exit = if self.resumed {
            Exit::Detach
        } else {
            Exit::BowOut
        };
        self.shutdown(exit).await;
    }

    /// Bow out on every vhid we are master of, then remove what we created;
    /// or, detaching, leave it all to the next carpd.
    async fn shutdown(&mut self, exit: Exit) {
        if exit == Exit::Detach {
            // A last beat gives the successor the whole bound to start in.
            let now = clock::now();
            if let Err(error) = self.dataplane.beat(now, self.heartbeat.bound()) {
                warn!("cannot write the XDP heartbeat: {error}");
            }
            info!(
                "detached: the dataplane stays pinned for {} ms",
                self.heartbeat.bound().as_millis()
            );
            return;
        }
        for index in 0..self.vhids.len() {
            let demote = self.demote_of(index);
            let output = self.vhids[index].machine.bow_out(demote);
            self.apply(index, output).await;
        }
        for (name, index) in &self.carp_interfaces {
            if let Err(error) = self.links.delete(*index).await {
                warn!("{name}: cannot remove the interface: {error}");
            }
        }
        if let Err(error) = self.dataplane.unpin() {
            warn!("cannot remove the pinned dataplane: {error}");
        }
        self.sysctls.restore();
        info!("stopped");
    }
}

/// Pause after a failed accept (out of file descriptors, say) so a server
/// loop does not spin on an error that will not clear at once.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

pub(crate) async fn accept_failed(server: &str, error: &std::io::Error) {
    tracing::debug!(%error, "{server}: accept failed");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

/// The contribution the sync service makes to group carp's counter.
const SYNC_SOURCE: &str = "sync";

/// The sync service's next demotion; never, without sync.
async fn sync_demotion(receiver: &mut Option<watch::Receiver<u8>>) -> Option<u8> {
    match receiver {
        Some(receiver) => {
            receiver.changed().await.ok()?;
            Some(*receiver.borrow_and_update())
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Mono>) {
    match deadline {
        Some(deadline) => {
            let wait = deadline.saturating_sub(clock::now());
            tokio::time::sleep(wait).await;
        }
        None => std::future::pending().await,
    }
}
