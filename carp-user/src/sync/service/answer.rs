//! Answering the peer's bulk request: `BulkStart`, then the whole table as
//! `BulkRecords`, then `BulkEnd` with the count, so the peer can tell a
//! complete answer from one that lost datagrams. Flow control: at most
//! [`WINDOW_RECORDS`] records beyond the requester's last `BulkProgress`
//! are in flight, so a bulk of any size never overruns its socket buffer.

use std::collections::VecDeque;
use std::time::Duration;

use tracing::{info, warn};

use super::{Service, replicated};
use crate::clock::{self, Mono};
use crate::sync::conntrack::Family;
use crate::sync::wire::{DEFAULT_MTU_PAYLOAD, Message, RecordBatcher};

/// Records in flight beyond the requester's acknowledgement: about 190
/// full datagrams, a small part of the 4 MiB socket buffer.
pub(super) const WINDOW_RECORDS: u32 = 4096;
/// The requester acknowledges every this many `BulkRecords` datagrams.
pub(super) const PROGRESS_EVERY: u32 = 16;
/// Window full and no progress for this long: send one more window anyway,
/// so a lost `BulkProgress` delays the answer instead of stalling it.
const PROGRESS_TIMEOUT: Duration = Duration::from_millis(250);
/// No progress at all for this long: the requester is gone.
const ABANDON_AFTER: Duration = Duration::from_secs(10);
/// Datagrams sent per turn of the service loop, so the rest of the
/// service (updates, heartbeats) keeps running during a bulk.
const BURST: usize = 64;

/// A bulk answer in flight.
pub(super) struct Answer {
    request_id: u32,
    /// `BulkRecords` messages, then the `BulkEnd`.
    queue: VecDeque<Message>,
    sent_records: u32,
    acked_records: u32,
    last_progress: Mono,
    total: u32,
}

impl Answer {
    fn window_open(&self) -> bool {
        self.sent_records.saturating_sub(self.acked_records) < WINDOW_RECORDS
    }

    /// When the service must look at this answer again without news.
    pub(super) fn deadline(&self) -> Mono {
        self.last_progress + PROGRESS_TIMEOUT
    }

    /// Whether a burst may go out now.
    pub(super) fn ready(&self, now: Mono) -> bool {
        self.window_open() || now >= self.deadline()
    }
}

impl Service {
    /// Reads the table for request `request_id` and queues the answer; the
    /// service loop sends it as the requester's progress allows.
    pub(super) async fn answer_bulk(&mut self, request_id: u32) {
        let Ok(mut batcher) = RecordBatcher::new(DEFAULT_MTU_PAYLOAD, request_id) else {
            return;
        };
        if let Some(previous) = self.answer.take() {
            info!(
                "sync: bulk request {request_id} supersedes {}",
                previous.request_id
            );
        }
        // Started before the table is read: every update sent after this
        // reaches the peer after the start, so the two together cover all.
        self.send(Message::BulkStart { request_id }).await;
        // The kernel hands the dump over one netlink datagram at a time and
        // the callback cannot wait on the socket: the encoded answer is kept
        // (about 60 bytes an entry, bounded by the conntrack table's size).
        let mut queue: VecDeque<Message> = VecDeque::new();
        let mut refused = 0u64;
        // Disjoint fields: the dump borrows the socket, the filter the rest.
        let (conntrack, protocols, ignore) = (&mut self.conntrack, &self.protocols, &self.ignore);
        let dumped = conntrack
            .dump_each(Family::Any, |flow| {
                if !replicated(protocols, ignore, &flow.key()) {
                    return;
                }
                match batcher.push(flow) {
                    Ok(Some(full)) => queue.push_back(full),
                    Ok(None) => {}
                    Err(_) => refused += 1,
                }
            })
            .await;
        if let Err(error) = dumped {
            // The peer's bulk then ends short and it retries.
            warn!("sync: reading the conntrack table for a bulk update: {error}");
        }
        let total = batcher.records();
        let (last, end) = batcher.finish();
        queue.extend(last);
        queue.push_back(end);
        if refused > 0 {
            *self.status.drops.entry("unreplicable".into()).or_default() += refused;
        }
        self.answer = Some(Answer {
            request_id,
            queue,
            sent_records: 0,
            acked_records: 0,
            last_progress: clock::now(),
            total,
        });
    }

    /// The requester's acknowledgement of an answer in flight.
    pub(super) fn on_progress(&mut self, request_id: u32, records: u32) {
        if let Some(answer) = &mut self.answer
            && answer.request_id == request_id
            && records > answer.acked_records
        {
            answer.acked_records = records;
            answer.last_progress = clock::now();
        }
    }

    /// Sends what the window allows (a whole window after a progress
    /// timeout), at most a burst.
    pub(super) async fn send_answer_burst(&mut self) {
        let now = clock::now();
        let Some(answer) = &mut self.answer else {
            return;
        };
        if now.saturating_sub(answer.last_progress) > ABANDON_AFTER {
            warn!(
                "sync: bulk request {} abandoned: no progress from the peer for {} s",
                answer.request_id,
                ABANDON_AFTER.as_secs()
            );
            self.answer = None;
            return;
        }
        if !answer.window_open() {
            // Progress was lost, or is slow: one more window, then wait again.
            answer.acked_records = answer.sent_records;
            answer.last_progress = now;
        }
        let mut burst = Vec::with_capacity(BURST);
        while burst.len() < BURST && answer.window_open() {
            let Some(message) = answer.queue.pop_front() else {
                break;
            };
            if let Message::BulkRecords { flows, .. } = &message {
                let records = u32::try_from(flows.len()).unwrap_or(u32::MAX);
                answer.sent_records = answer.sent_records.saturating_add(records);
            }
            burst.push(message);
        }
        let finished = answer.queue.is_empty();
        let (request_id, total) = (answer.request_id, answer.total);
        for message in burst {
            self.send(message).await;
        }
        if finished {
            self.answer = None;
            self.status.bulks_answered += 1;
            info!("sync: answered bulk request {request_id} with {total} entries");
        }
    }
}
