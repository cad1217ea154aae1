//! Answering the peer's bulk request: `BulkStart`, then the whole table as
//! `BulkRecords`, then `BulkEnd` with the count, so the peer can tell a
//! complete answer from one that lost datagrams. Flow control: at most
//! [`WINDOW_RECORDS`] records beyond the requester's last `BulkProgress`
//! are in flight, so a bulk of any size never overruns its socket buffer.
//!
//! The table is read by a task of its own, on its own ctnetlink socket,
//! and handed over in chunks as the kernel produces it: the first records
//! leave while the rest of the table is still being read.

use std::collections::VecDeque;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{Service, replicated};
use crate::clock::{self, Mono};
use crate::sync::Flow;
use crate::sync::conntrack::{Conntrack, Family};
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
/// Entries the table reader hands over at a time.
const CHUNK: usize = 512;

/// A bulk answer in flight.
pub(super) struct Answer {
    request_id: u32,
    /// `BulkRecords` messages ready to go; the `BulkEnd` last, once the
    /// table has been read.
    queue: VecDeque<Message>,
    /// The table being read, while it is.
    reading: Option<Reading>,
    sent_records: u32,
    acked_records: u32,
    last_progress: Mono,
}

/// The table reader of an answer and the records it has handed over.
struct Reading {
    chunks: mpsc::UnboundedReceiver<Vec<Flow>>,
    batcher: RecordBatcher,
    /// Entries the wire format cannot carry.
    refused: u64,
    _reader: Reader,
}

/// The reader's task: a superseded or abandoned answer stops reading.
struct Reader(JoinHandle<()>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Answer {
    fn window_open(&self) -> bool {
        self.sent_records.saturating_sub(self.acked_records) < WINDOW_RECORDS
    }

    /// When the service must look at this answer again without news: only
    /// while it has something to send.
    pub(super) fn deadline(&self) -> Option<Mono> {
        (!self.queue.is_empty()).then_some(self.last_progress + PROGRESS_TIMEOUT)
    }

    /// Whether a burst may go out now.
    pub(super) fn ready(&self, now: Mono) -> bool {
        self.deadline()
            .is_some_and(|deadline| self.window_open() || now >= deadline)
    }

    /// Whether the table is still being read.
    pub(super) fn reading(&self) -> bool {
        self.reading.is_some()
    }
}

/// The next chunk of the table for the answer in flight; None once the
/// reader is done. Never ready without a reader (the caller checks).
pub(super) async fn next_chunk(answer: &mut Option<Answer>) -> Option<Vec<Flow>> {
    match answer.as_mut().and_then(|answer| answer.reading.as_mut()) {
        Some(reading) => reading.chunks.recv().await,
        None => std::future::pending().await,
    }
}

/// Reads the table on a socket of its own and hands over the flows the
/// filter replicates, a chunk at a time; the channel closes at the end.
async fn read_table(
    protocols: Vec<u8>,
    ignore: Vec<IpNet>,
    chunks: mpsc::UnboundedSender<Vec<Flow>>,
) {
    let mut conntrack = match Conntrack::open() {
        Ok(conntrack) => conntrack,
        Err(error) => {
            // The peer's bulk then ends short and it retries.
            warn!("sync: opening ctnetlink for a bulk update: {error}");
            return;
        }
    };
    let mut chunk = Vec::with_capacity(CHUNK);
    let dumped = conntrack
        .dump_each(Family::Any, |flow| {
            if replicated(&protocols, &ignore, &flow.key()) {
                chunk.push(flow);
                if chunk.len() == CHUNK {
                    let _ = chunks.send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)));
                }
            }
        })
        .await;
    if !chunk.is_empty() {
        let _ = chunks.send(chunk);
    }
    if let Err(error) = dumped {
        warn!("sync: reading the conntrack table for a bulk update: {error}");
    }
}

impl Service {
    /// Starts the answer to request `request_id`: `BulkStart` at once, the
    /// records as the table reader hands them over (`on_chunk`); the
    /// service loop sends them as the requester's progress allows.
    pub(super) async fn answer_bulk(&mut self, request_id: u32) {
        let Ok(batcher) = RecordBatcher::new(DEFAULT_MTU_PAYLOAD, request_id) else {
            return;
        };
        if let Some(previous) = self.answer.take() {
            info!(
                "sync: bulk request {request_id} supersedes {}",
                previous.request_id
            );
        }
        // Sent before the table is read: every update sent after this
        // reaches the peer after the start, so the two together cover all.
        self.send(Message::BulkStart { request_id }).await;
        // Unbounded, as the table is: the dump outruns the window, and
        // what it has read waits here (about 60 bytes an entry).
        let (sender, chunks) = mpsc::unbounded_channel();
        let task = tokio::spawn(read_table(
            self.protocols.clone(),
            self.ignore.clone(),
            sender,
        ));
        self.answer = Some(Answer {
            request_id,
            queue: VecDeque::new(),
            reading: Some(Reading {
                chunks,
                batcher,
                refused: 0,
                _reader: Reader(task),
            }),
            sent_records: 0,
            acked_records: 0,
            last_progress: clock::now(),
        });
    }

    /// A chunk of the table for the answer in flight, or (None) the end of
    /// it: the records are queued, and after the last one the `BulkEnd`.
    pub(super) fn on_chunk(&mut self, chunk: Option<Vec<Flow>>) {
        let Some(answer) = &mut self.answer else {
            return;
        };
        let Some(flows) = chunk else {
            let Some(reading) = answer.reading.take() else {
                return;
            };
            let (last, end) = reading.batcher.finish();
            answer.queue.extend(last);
            answer.queue.push_back(end);
            if reading.refused > 0 {
                *self.status.drops.entry("unreplicable".into()).or_default() += reading.refused;
            }
            return;
        };
        let Some(reading) = &mut answer.reading else {
            return;
        };
        for flow in flows {
            match reading.batcher.push(flow) {
                Ok(Some(full)) => answer.queue.push_back(full),
                Ok(None) => {}
                Err(_) => reading.refused += 1,
            }
        }
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
        let finished = answer.queue.is_empty() && !answer.reading();
        let (request_id, total) = (answer.request_id, answer.sent_records);
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
