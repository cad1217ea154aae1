//! The sync service: a task that replicates the local conntrack table to
//! the peer and installs the peer's, over the sync link. It wires the pure
//! protocol (`wire`, `freshness`, `bulk`) to the kernel (`conntrack`) and
//! the socket (`transport`); the agent talks to it through a [`SyncHandle`].
//!
//! - Local changes (conntrack events caused by packets or by other tools,
//!   not by our own installs, so nothing is echoed back) are batched for at
//!   as long as the kernel's burst of events lasts (at most [`FLUSH_DELAY`])
//!   and sent as Updates.
//! - Received Updates and bulk records are installed at once; before the
//!   agent takes a VIP it asks the service to drain what has arrived
//!   ([`SyncHandle::prepare_takeover`]): state first, then traffic, or the
//!   kernel resets connections the peer was carrying (conntrackd's window).
//! - A bulk update is requested at start and after lost sync; while it runs
//!   group carp is demoted (the requester decides, see `bulk`).

mod answer;
mod status;
mod transport;

use std::net::IpAddr;
use std::num::NonZeroU64;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::bulk::{Action, BulkConfig, BulkRequester, Event as BulkEvent};
use super::conntrack::{
    Conntrack, ConntrackError, DEFAULT_EVENT_BUFFER, Event, EventSocket, Origin,
};
use super::freshness::{Accepted, Freshness, Sequencer, new_session};
use super::wire::{
    Change, Channel, DEFAULT_MTU_PAYLOAD, Envelope, Message, SyncKey, UpdateBatcher,
};
use super::{Flow, FlowKey};
use crate::clock::{self, Mono};
use crate::config::SyncConfig;
pub use status::SyncStatus;
use transport::{SyncSocket, datagram_buffer};

/// Local changes wait at most this long for more to share a datagram.
pub const FLUSH_DELAY: Duration = Duration::from_millis(2);
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// The peer is down once this many heartbeats are missing.
const PEER_TIMEOUT_BEATS: u32 = 3;
/// Requests from the agent queued at most.
const REQUEST_QUEUE: usize = 16;
/// The longest a takeover waits for the received state to be installed.
pub const PREPARE_TIMEOUT: Duration = Duration::from_millis(200);

/// What the agent asks of the service.
enum Request {
    /// Install everything received so far, then answer.
    PrepareTakeover(oneshot::Sender<()>),
    /// Whether we are MASTER of at least one vhid.
    Master(bool),
    /// The syncdev's carrier.
    Link(bool),
}

/// The agent's end: requests in, demotion and status out. Dropping it
/// stops the service.
pub struct SyncHandle {
    requests: mpsc::Sender<Request>,
    pub demotion: watch::Receiver<u8>,
    pub status: watch::Receiver<SyncStatus>,
    pub syncdev_index: u32,
    task: JoinHandle<()>,
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SyncHandle {
    /// Waits (at most `PREPARE_TIMEOUT`) until what the peer sent has been
    /// installed. False if the service did not answer in time.
    pub async fn prepare_takeover(&self) -> bool {
        let (reply, done) = oneshot::channel();
        if self
            .requests
            .send(Request::PrepareTakeover(reply))
            .await
            .is_err()
        {
            return false;
        }
        matches!(
            tokio::time::timeout(PREPARE_TIMEOUT, done).await,
            Ok(Ok(()))
        )
    }

    pub async fn set_master(&self, master: bool) {
        let _ = self.requests.send(Request::Master(master)).await;
    }

    pub async fn link(&self, up: bool) {
        let _ = self.requests.send(Request::Link(up)).await;
    }
}

/// Starts the service on `syncdev` (index `syncdev_index`, address `local`
/// of the family the sync link uses). Must be called inside the runtime.
pub fn start(
    config: &SyncConfig,
    syncdev_index: u32,
    local: IpAddr,
    syncdev_carrier: bool,
) -> anyhow::Result<SyncHandle> {
    use anyhow::Context as _;
    let key = SyncKey::new(config.key.as_bytes()).context("sync key")?;
    let socket = SyncSocket::open(&config.syncdev, local, config.peer, config.port)
        .with_context(|| format!("sync socket on {}", config.syncdev))?;
    let conntrack = Conntrack::open().context("conntrack socket")?;
    let mut events = EventSocket::subscribe(DEFAULT_EVENT_BUFFER).context("conntrack events")?;
    events
        .ignore_ours(conntrack.port_id())
        .context("filtering our own conntrack events")?;
    let session = new_session(&mut rand::thread_rng());
    let mut ignore = config.ignore.clone();
    // The sync traffic itself is never replicated.
    ignore.push(IpNet::from(local));
    ignore.extend(config.peer.map(IpNet::from));
    let (requests_tx, requests) = mpsc::channel(REQUEST_QUEUE);
    let (demotion_tx, demotion) = watch::channel(0);
    let (status_tx, status) = watch::channel(SyncStatus {
        syncdev: config.syncdev.clone(),
        ..SyncStatus::default()
    });
    let bulk = BulkRequester::new(BulkConfig {
        max_duration: config.bulk_timeout,
        retry_interval: (config.bulk_timeout / 3).max(Duration::from_millis(500)),
        ..BulkConfig::default()
    });
    let service = Service {
        key,
        socket,
        conntrack,
        events,
        sequencer: Sequencer::new(session),
        freshness: Freshness::new(session),
        bulk,
        outgoing: UpdateBatcher::new(DEFAULT_MTU_PAYLOAD)
            .map_err(|error| anyhow::anyhow!("sync batch size: {error}"))?,
        flush_at: None,
        protocols: config.protocols.iter().copied().collect(),
        ignore,
        peer_heard_at: None,
        peer_ready: false,
        answered: None,
        peer_state_seq: 0,
        sender: NonZeroU64::MIN,
        answer: None,
        receiving: None,
        status: SyncStatus {
            syncdev: config.syncdev.clone(),
            ..SyncStatus::default()
        },
        status_tx,
        demotion_tx,
        link_up: syncdev_carrier,
    };
    let task = tokio::spawn(service.run(requests));
    Ok(SyncHandle {
        requests: requests_tx,
        demotion,
        status,
        syncdev_index,
        task,
    })
}

struct Service {
    key: SyncKey,
    socket: SyncSocket,
    conntrack: Conntrack,
    events: EventSocket,
    sequencer: Sequencer,
    freshness: Freshness,
    bulk: BulkRequester,
    /// Local changes waiting to go out.
    outgoing: UpdateBatcher,
    flush_at: Option<Mono>,
    protocols: Vec<u8>,
    ignore: Vec<IpNet>,
    peer_heard_at: Option<Mono>,
    /// The peer has shown it heard us (it takes our requests).
    peer_ready: bool,
    /// The last bulk request we answered: the requester's session and the
    /// request id (ids start over with every carpd start).
    answered: Option<(NonZeroU64, u32)>,
    /// The highest state-channel seq received from the peer.
    peer_state_seq: u64,
    /// The session of the message being handled.
    sender: NonZeroU64,
    /// Our answer to the peer's bulk request, while in flight.
    answer: Option<answer::Answer>,
    /// The bulk we are receiving: its request id and the `BulkRecords`
    /// datagrams and records received, for our `BulkProgress`.
    receiving: Option<(u32, u32, u32)>,
    status: SyncStatus,
    status_tx: watch::Sender<SyncStatus>,
    demotion_tx: watch::Sender<u8>,
    link_up: bool,
}

impl Service {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut buffer = datagram_buffer();
        let now = clock::now();
        self.bulk_event(now, BulkEvent::Link { up: self.link_up })
            .await;
        self.bulk_event(now, BulkEvent::Start).await;
        self.heartbeat().await;
        let mut next_beat = now + HEARTBEAT_INTERVAL;
        loop {
            let deadline = [
                Some(next_beat),
                self.flush_at,
                self.bulk.next_deadline(),
                self.answer.as_ref().and_then(answer::Answer::deadline),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(next_beat);
            let answer_ready = self
                .answer
                .as_ref()
                .is_some_and(|answer| answer.ready(clock::now()));
            let answer_reading = self.answer.as_ref().is_some_and(answer::Answer::reading);
            let mut strangers = 0;
            // Not biased: on a busy gateway local events never stop, and
            // during a bulk neither do datagrams; each must get its turn
            // (our own installs' events would otherwise overrun their socket).
            tokio::select! {
                request = requests.recv() => {
                    let Some(request) = request else { return };
                    self.on_request(request, &mut buffer).await;
                }
                received = self.socket.recv(&mut buffer, &mut strangers) => match received {
                    Ok(length) => {
                        let datagram = buffer[..length].to_vec();
                        self.on_datagram(&datagram).await;
                    }
                    Err(error) => {
                        warn!("sync: receiving: {error}");
                        tokio::time::sleep(HEARTBEAT_INTERVAL).await;
                    }
                },
                // Before local events: on a busy gateway they never stop,
                // and the window keeps a burst short.
                () = std::future::ready(()), if answer_ready => self.send_answer_burst().await,
                chunk = answer::next_chunk(&mut self.answer), if answer_reading => self.on_chunk(chunk),
                event = self.events.next() => match event {
                    Ok(event) => self.on_local(event).await,
                    Err(error) => {
                        warn!("sync: reading conntrack events: {error}");
                        tokio::time::sleep(HEARTBEAT_INTERVAL).await;
                    }
                },
                () = sleep_until(deadline) => {}
            }
            if strangers > 0 {
                *self.status.drops.entry("stranger".into()).or_default() += strangers;
            }
            let now = clock::now();
            if self.flush_at.is_some_and(|at| at <= now) {
                self.flush().await;
            }
            if self.bulk.next_deadline().is_some_and(|at| at <= now) {
                self.bulk_event(now, BulkEvent::Tick).await;
            }
            if next_beat <= now {
                next_beat = now + HEARTBEAT_INTERVAL;
                self.heartbeat().await;
                self.publish(now);
            }
        }
    }

    async fn on_request(&mut self, request: Request, buffer: &mut [u8]) {
        let now = clock::now();
        match request {
            Request::PrepareTakeover(reply) => {
                let mut strangers = 0;
                loop {
                    match self.socket.try_recv(buffer, &mut strangers) {
                        Ok(Some(length)) => {
                            let datagram = buffer[..length].to_vec();
                            self.on_datagram(&datagram).await;
                        }
                        Ok(None) => break,
                        Err(error) => {
                            warn!("sync: draining before a takeover: {error}");
                            break;
                        }
                    }
                }
                let _ = reply.send(());
            }
            Request::Master(master) => self.bulk_event(now, BulkEvent::Master(master)).await,
            Request::Link(up) => {
                if up != self.link_up {
                    info!(
                        "sync: {} {}",
                        self.status.syncdev,
                        if up { "up" } else { "down" }
                    );
                }
                self.link_up = up;
                self.bulk_event(now, BulkEvent::Link { up }).await;
            }
        }
    }

    /// One datagram from the sync link: authenticated, fresh, then applied.
    async fn on_datagram(&mut self, datagram: &[u8]) {
        let envelope = match Envelope::decode(datagram, &self.key) {
            Ok(envelope) => envelope,
            Err(error) => {
                debug!("sync: dropped a datagram: {error}");
                self.drop_counted(error.label());
                return;
            }
        };
        let accepted = match self.freshness.check(&envelope) {
            Ok(accepted) => accepted,
            Err(rejected) => {
                self.drop_counted(rejected.label());
                return;
            }
        };
        let now = clock::now();
        self.status.messages_received += 1;
        self.peer_heard_at = Some(now);
        let learned = matches!(accepted, Accepted::Learned { .. });
        if learned {
            info!("sync: peer session {:016x}", envelope.sender_session);
            // Answer at once: the peer takes our state only once it has heard us.
            self.heartbeat().await;
        }
        let ready = self.freshness.hears_us(envelope.sender_session);
        if ready && !self.peer_ready {
            self.peer_ready = true;
            self.bulk_event(now, BulkEvent::PeerReady).await;
        }
        self.peer_ready = ready;
        if accepted.gap() > 0 {
            warn!(
                "sync: {} state message(s) from the peer lost: resyncing",
                accepted.gap()
            );
            self.bulk_event(now, BulkEvent::LostSync).await;
        }
        let late = matches!(accepted, Accepted::Late);
        self.sender = envelope.sender_session;
        if envelope.message.kind().channel() == Channel::State && !late {
            self.peer_state_seq = envelope.seq.get();
        }
        self.on_message(envelope.message, late).await;
    }

    async fn on_message(&mut self, message: Message, late: bool) {
        let now = clock::now();
        match message {
            Message::Heartbeat {
                in_sync, state_seq, ..
            } => {
                self.status.peer_in_sync = in_sync;
                // State messages the peer has sent that have not reached us.
                self.status.lag = state_seq.saturating_sub(self.peer_state_seq);
            }
            // A late update may be older than what has been applied since;
            // its loss was reported as a gap and is being resynced.
            Message::Update(_) if late => self.drop_counted("late"),
            Message::Update(changes) => self.apply_changes(changes).await,
            Message::BulkRequest { request_id } => {
                self.bulk_event(now, BulkEvent::PeerBulkRequest).await;
                // A request resent (`PeerReady`) while answering is a duplicate.
                let request = (self.sender, request_id);
                if self.answered != Some(request) {
                    self.answered = Some(request);
                    self.answer_bulk(request_id).await;
                }
            }
            Message::BulkStart { request_id } => {
                self.receiving = Some((request_id, 0, 0));
                self.bulk_event(now, BulkEvent::BulkStart { request_id })
                    .await;
            }
            Message::BulkProgress {
                request_id,
                records,
            } => self.on_progress(request_id, records),
            Message::BulkRecords { request_id, flows } => {
                let records = u32::try_from(flows.len()).unwrap_or(u32::MAX);
                self.install(&flows).await;
                self.acknowledge(request_id, records).await;
                self.bulk_event(
                    now,
                    BulkEvent::BulkRecords {
                        request_id,
                        records,
                    },
                )
                .await;
            }
            Message::BulkEnd {
                request_id,
                records,
            } => {
                self.bulk_event(
                    now,
                    BulkEvent::BulkEnd {
                        request_id,
                        records,
                    },
                )
                .await;
            }
        }
    }

    /// Counts a `BulkRecords` of the answer we are receiving and tells the
    /// responder how far we are every few datagrams.
    async fn acknowledge(&mut self, request_id: u32, records: u32) {
        let Some((id, datagrams, received)) = &mut self.receiving else {
            return;
        };
        if *id != request_id {
            return;
        }
        *datagrams += 1;
        *received = received.saturating_add(records);
        if (*datagrams).is_multiple_of(answer::PROGRESS_EVERY) {
            let records = *received;
            self.send(Message::BulkProgress {
                request_id,
                records,
            })
            .await;
        }
    }

    async fn apply_changes(&mut self, changes: Vec<Change>) {
        self.status.updates_received += changes.len() as u64;
        let mut upserts: Vec<Flow> = Vec::new();
        let mut deletes: Vec<FlowKey> = Vec::new();
        for change in changes {
            match change {
                Change::Upsert(flow) => upserts.push(flow),
                Change::Delete(key) => deletes.push(key),
            }
        }
        self.install(&upserts).await;
        if !deletes.is_empty() {
            match self.conntrack.delete(&deletes).await {
                Ok(report) => {
                    self.status.updates_applied += (report.applied() + report.absent) as u64;
                    self.status.updates_failed += report.failed as u64;
                }
                Err(error) => self.conntrack_failed("deleting", &error, deletes.len()),
            }
        }
    }

    async fn install(&mut self, flows: &[Flow]) {
        if flows.is_empty() {
            return;
        }
        match self.conntrack.install(flows).await {
            Ok(report) => {
                self.status.updates_applied += report.applied() as u64;
                self.status.updates_failed += report.failed as u64;
                if let Some(first) = report.first_error {
                    debug!(
                        "sync: {} of {} not installed, first: {first}",
                        report.failed,
                        flows.len()
                    );
                }
            }
            Err(error) => self.conntrack_failed("installing", &error, flows.len()),
        }
    }

    fn conntrack_failed(&mut self, what: &str, error: &ConntrackError, entries: usize) {
        warn!("sync: {what} {entries} entries: {error}");
        self.status.updates_failed += entries as u64;
    }

    /// A change of our own table, to replicate.
    async fn on_local(&mut self, event: Event) {
        let change = match event {
            // Installed from the peer's state: not echoed back.
            Event::Upsert {
                origin: Origin::Ours,
                ..
            }
            | Event::Delete {
                origin: Origin::Ours,
                ..
            } => return,
            Event::Upsert { flow, .. } if self.replicated(&flow.key()) => Change::Upsert(flow),
            Event::Delete { key, .. } if self.replicated(&key) => Change::Delete(key),
            Event::Upsert { .. } | Event::Delete { .. } => return,
            Event::Overrun => {
                warn!("sync: conntrack events were lost: the peer will resync");
                self.status.overruns += 1;
                // The peer sees a gap in our state messages and asks for a bulk.
                self.sequencer.skip_state();
                return;
            }
        };
        self.status.pending += 1;
        match self.outgoing.push(change) {
            Ok(Some(full)) => {
                self.send_state(full).await;
            }
            Ok(None) => {}
            Err(error) => {
                debug!("sync: a local change cannot be replicated: {error}");
                self.status.pending -= 1;
                self.drop_counted("unreplicable");
            }
        }
        // The rest of a burst the kernel delivered at once shares the
        // datagram; a lone change goes out now. FLUSH_DELAY only bounds a
        // burst that keeps coming.
        if !self.events.has_buffered() {
            self.flush().await;
        } else if self.flush_at.is_none() {
            self.flush_at = Some(clock::now() + FLUSH_DELAY);
        }
    }

    fn replicated(&self, key: &FlowKey) -> bool {
        replicated(&self.protocols, &self.ignore, key)
    }

    async fn flush(&mut self) {
        self.flush_at = None;
        if let Some(message) = self.outgoing.flush() {
            self.send_state(message).await;
        }
    }

    /// An Update (or bulk answer) to the peer; before we have heard it, the
    /// seq is spent instead, so the peer sees a gap once it hears us.
    async fn send_state(&mut self, message: Message) {
        let count = match &message {
            Message::Update(changes) => changes.len() as u64,
            _ => 0,
        };
        self.status.pending = self.status.pending.saturating_sub(count);
        if self.freshness.last_heard() == 0 {
            self.sequencer.skip_state();
            return;
        }
        self.send(message).await;
        self.status.updates_sent += count;
    }

    async fn heartbeat(&mut self) {
        let in_sync = self.bulk.state().label() == "done";
        self.send(Message::Heartbeat {
            in_sync,
            state_seq: 0,
        })
        .await;
    }

    async fn send(&mut self, message: Message) {
        let Ok(envelope) = self
            .sequencer
            .envelope(message, self.freshness.last_heard())
        else {
            return;
        };
        match envelope.encode(&self.key) {
            Ok(datagram) => match self.socket.send(&datagram).await {
                Ok(()) => self.status.messages_sent += 1,
                Err(error) => debug!("sync: sending: {error}"),
            },
            Err(error) => warn!("sync: cannot encode a message: {error}"),
        }
    }

    async fn bulk_event(&mut self, now: Mono, event: BulkEvent) {
        let before = self.bulk.state().label();
        for action in self.bulk.on_event(now, event) {
            match action {
                Action::SendRequest { request_id } => {
                    self.send(Message::BulkRequest { request_id }).await;
                }
                Action::Demote(demotion) => {
                    self.status.demotion = demotion;
                    self.demotion_tx.send_replace(demotion);
                }
                Action::Log(report) => info!("sync: bulk update: {report}"),
            }
        }
        if self.bulk.state().label() != before {
            self.publish(now);
        }
    }

    fn drop_counted(&mut self, reason: &str) {
        *self.status.drops.entry(reason.to_owned()).or_default() += 1;
    }

    fn publish(&mut self, now: Mono) {
        let heard_ago = self.peer_heard_at.map(|at| now.saturating_sub(at));
        self.status.peer_up =
            heard_ago.is_some_and(|ago| ago < HEARTBEAT_INTERVAL * PEER_TIMEOUT_BEATS);
        self.status.peer_heard_ms_ago =
            heard_ago.map(|ago| u64::try_from(ago.as_millis()).unwrap_or(u64::MAX));
        let peer = self.freshness.last_heard();
        self.status.peer_session = (peer != 0).then(|| format!("{peer:016x}"));
        self.bulk.state().label().clone_into(&mut self.status.bulk);
        self.status.entries = table_entries();
        self.status_tx.send_replace(self.status.clone());
    }
}

/// Whether a flow is the peer's business: one of the protocols, and no
/// endpoint in an ignored network.
fn replicated(protocols: &[u8], ignore: &[IpNet], key: &FlowKey) -> bool {
    let tuple = &key.original;
    protocols.contains(&tuple.proto)
        && !ignore
            .iter()
            .any(|net| net.contains(&tuple.src) || net.contains(&tuple.dst))
}

/// Entries in this namespace's conntrack table.
fn table_entries() -> u64 {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

async fn sleep_until(deadline: Mono) {
    tokio::time::sleep(deadline.saturating_sub(clock::now())).await;
}
