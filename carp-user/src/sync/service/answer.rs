//! Answering the peer's bulk request: `BulkStart`, then the whole table as
//! paced `BulkRecords`, then `BulkEnd` with the count, so the peer can tell
//! a complete answer from one that lost datagrams.

use tracing::{info, warn};

use super::Service;
use crate::sync::conntrack::Family;
use crate::sync::wire::{DEFAULT_MTU_PAYLOAD, Message, RecordBatcher};

impl Service {
    pub(super) async fn answer_bulk(&mut self, request_id: u32) {
        let Ok(mut batcher) = RecordBatcher::new(DEFAULT_MTU_PAYLOAD, request_id) else {
            return;
        };
        // Started before the table is read: every update sent after this
        // reaches the peer after the start, so the two together cover all.
        self.send(Message::BulkStart { request_id }).await;
        // The kernel hands the dump over one netlink datagram at a time and
        // the callback cannot wait on the socket: the encoded answer is
        // kept (about 60 bytes an entry) and sent after, each send waiting
        // for room in the socket's queue.
        let mut answer: Vec<Message> = Vec::new();
        let mut refused = 0u64;
        let protocols = self.protocols.clone();
        let ignore = self.ignore.clone();
        let replicated = |flow: &crate::sync::Flow| {
            let tuple = &flow.original;
            protocols.contains(&tuple.proto)
                && !ignore
                    .iter()
                    .any(|net| net.contains(&tuple.src) || net.contains(&tuple.dst))
        };
        let dumped = self
            .conntrack
            .dump_each(Family::Any, |flow| {
                if !replicated(&flow) {
                    return;
                }
                match batcher.push(flow) {
                    Ok(Some(full)) => answer.push(full),
                    Ok(None) => {}
                    Err(_) => refused += 1,
                }
            })
            .await;
        if let Err(error) = dumped {
            // The peer's bulk then ends short and it retries.
            warn!("sync: reading the conntrack table for a bulk update: {error}");
        }
        let (last, end) = batcher.finish();
        let records = match &end {
            Message::BulkEnd { records, .. } => *records,
            _ => 0,
        };
        for message in answer.into_iter().chain(last) {
            self.send(message).await;
        }
        self.send(end).await;
        self.status.bulks_answered += 1;
        if refused > 0 {
            *self.status.drops.entry("unreplicable".into()).or_default() += refused;
        }
        info!("sync: answered bulk request {request_id} with {records} entries");
    }
}
