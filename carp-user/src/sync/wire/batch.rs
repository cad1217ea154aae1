//! Packing changes and flows into datagrams no longer than a limit (the UDP
//! payload that fits the sync link's MTU), so no datagram is fragmented.

use super::record::{MAX_FLOW_RECORD, check_key, flow_len};
use super::{Change, FlowError, HEADER_LEN, MAC_LEN, MAX_DATAGRAM, Message};
use crate::sync::Flow;

/// The smallest limit that holds the largest single record (an IPv6 flow
/// with TCP info) in either message.
pub const MIN_BATCH_LIMIT: usize = HEADER_LEN + MAC_LEN + 4 + MAX_FLOW_RECORD;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("datagram limit {0} bytes, at least {MIN_BATCH_LIMIT}")]
    TooSmall(usize),
    #[error("datagram limit {0} bytes, at most {MAX_DATAGRAM}")]
    TooLarge(usize),
}

/// Items of one message being filled; `used` counts the whole datagram.
#[derive(Debug)]
struct Packer<T> {
    limit: usize,
    overhead: usize,
    used: usize,
    items: Vec<T>,
}

impl<T> Packer<T> {
    fn new(limit: usize, body_prefix: usize) -> Result<Self, LimitError> {
        if limit < MIN_BATCH_LIMIT {
            return Err(LimitError::TooSmall(limit));
        }
        if limit > MAX_DATAGRAM {
            return Err(LimitError::TooLarge(limit));
        }
        let overhead = HEADER_LEN + MAC_LEN + body_prefix;
        Ok(Self {
            limit,
            overhead,
            used: overhead,
            items: Vec::new(),
        })
    }

    /// Adds an item of `len` bytes; returns the items of the previous
    /// message if this one did not fit with them. Every item fits alone:
    /// `len` is at most a record's maximum and the limit at least that.
    fn push(&mut self, item: T, len: usize) -> Option<Vec<T>> {
        let full = if self.used + len > self.limit {
            self.take()
        } else {
            None
        };
        self.items.push(item);
        self.used += len;
        full
    }

    fn take(&mut self) -> Option<Vec<T>> {
        self.used = self.overhead;
        if self.items.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.items))
        }
    }
}

/// Packs changes into Update messages.
#[derive(Debug)]
pub struct UpdateBatcher {
    packer: Packer<Change>,
}

impl UpdateBatcher {
    /// `limit`: the longest datagram to produce, header and MAC included
    /// (e.g. [`super::DEFAULT_MTU_PAYLOAD`]).
    pub fn new(limit: usize) -> Result<Self, LimitError> {
        Ok(Self {
            packer: Packer::new(limit, 0)?,
        })
    }

    /// Adds a change; returns the previous Update when it is full. A change
    /// the wire cannot carry is refused and nothing is added.
    pub fn push(&mut self, change: Change) -> Result<Option<Message>, FlowError> {
        match &change {
            Change::Upsert(flow) => super::check_flow(flow)?,
            Change::Delete(key) => check_key(key)?,
        }
        let len = change.encoded_len();
        Ok(self.packer.push(change, len).map(Message::Update))
    }

    /// The Update being filled, if it has any change.
    pub fn flush(&mut self) -> Option<Message> {
        self.packer.take().map(Message::Update)
    }
}

/// Packs the flows of one bulk answer into `BulkRecords` messages and
/// counts them for the `BulkEnd`.
#[derive(Debug)]
pub struct RecordBatcher {
    request_id: u32,
    records: u32,
    packer: Packer<Flow>,
}

impl RecordBatcher {
    pub fn new(limit: usize, request_id: u32) -> Result<Self, LimitError> {
        Ok(Self {
            request_id,
            records: 0,
            packer: Packer::new(limit, 4)?,
        })
    }

    pub fn request_id(&self) -> u32 {
        self.request_id
    }

    /// Flows accepted so far.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// Adds a flow; returns the previous `BulkRecords` when it is full. A
    /// flow the wire cannot carry is refused, and not counted.
    pub fn push(&mut self, flow: Flow) -> Result<Option<Message>, FlowError> {
        super::check_flow(&flow)?;
        let len = flow_len(&flow);
        self.records = self.records.saturating_add(1);
        Ok(self.packer.push(flow, len).map(|flows| self.wrap(flows)))
    }

    /// The `BulkRecords` being filled, if it has any flow.
    pub fn flush(&mut self) -> Option<Message> {
        self.packer.take().map(|flows| self.wrap(flows))
    }

    /// The end of the answer: the last `BulkRecords` if any, and the
    /// `BulkEnd` with the count of every flow pushed.
    pub fn finish(mut self) -> (Option<Message>, Message) {
        let last = self.flush();
        let end = Message::BulkEnd {
            request_id: self.request_id,
            records: self.records,
        };
        (last, end)
    }

    fn wrap(&self, flows: Vec<Flow>) -> Message {
        Message::BulkRecords {
            request_id: self.request_id,
            flows,
        }
    }
}

#[cfg(test)]
mod tests;
