//! Message bodies (layout in the module comment of `wire`).

use super::reader::Reader;
use super::record::{flow_len, key_len, put_flow, put_key, read_flow, read_key};
use super::{FlowError, Kind, Malformed};
use crate::sync::{Flow, FlowKey};

const TAG_UPSERT: u8 = 1;
const TAG_DELETE: u8 = 2;

/// One change to the peer's table, as conntrack reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    /// Install the flow, or update the one with its key.
    Upsert(Flow),
    Delete(FlowKey),
}

impl Change {
    /// Bytes of this change in an Update body (not checked).
    pub(super) fn encoded_len(&self) -> usize {
        1 + match self {
            Change::Upsert(flow) => flow_len(flow),
            Change::Delete(key) => key_len(key),
        }
    }

    fn put(&self, out: &mut Vec<u8>) -> Result<(), FlowError> {
        match self {
            Change::Upsert(flow) => {
                out.push(TAG_UPSERT);
                put_flow(out, flow)
            }
            Change::Delete(key) => {
                out.push(TAG_DELETE);
                put_key(out, key)
            }
        }
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, Malformed> {
        match reader.u8("change tag")? {
            TAG_UPSERT => read_flow(reader).map(Change::Upsert),
            TAG_DELETE => read_key(reader).map(Change::Delete),
            other => Err(Malformed::ChangeTag(other)),
        }
    }
}

/// A sync message: what one datagram carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Changes to the sender's table since its previous Update.
    Update(Vec<Change>),
    /// Asks the receiver for its whole table. A new request supersedes one
    /// being answered.
    BulkRequest { request_id: u32 },
    /// The answer to request `request_id` begins; the table is read after
    /// this is sent, so it covers every update sent before it.
    BulkStart { request_id: u32 },
    /// Part of the table, for request `request_id`.
    BulkRecords { request_id: u32, flows: Vec<Flow> },
    /// The answer is complete: `records` flows in all its `BulkRecords`, so
    /// the requester can tell whether it lost some.
    BulkEnd { request_id: u32, records: u32 },
    /// Liveness, whether the sender considers itself in sync, and the seq of
    /// the last state-channel message it sent (0: none yet), so the loss of
    /// a last update is noticed without waiting for the next one.
    Heartbeat { in_sync: bool, state_seq: u64 },
    /// The requester has received `records` flows of the answer to
    /// `request_id`: the responder's window moves on (flow control, so a
    /// bulk never outruns the requester's socket buffer).
    BulkProgress { request_id: u32, records: u32 },
}

impl Message {
    pub const fn kind(&self) -> Kind {
        match self {
            Message::Update(_) => Kind::Update,
            Message::BulkRequest { .. } => Kind::BulkRequest,
            Message::BulkStart { .. } => Kind::BulkStart,
            Message::BulkRecords { .. } => Kind::BulkRecords,
            Message::BulkEnd { .. } => Kind::BulkEnd,
            Message::Heartbeat { .. } => Kind::Heartbeat,
            Message::BulkProgress { .. } => Kind::BulkProgress,
        }
    }

    /// Bytes of the body (flows not checked).
    pub(super) fn body_len(&self) -> usize {
        match self {
            Message::Update(changes) => changes.iter().map(Change::encoded_len).sum(),
            Message::BulkRequest { .. } | Message::BulkStart { .. } => 4,
            Message::BulkRecords { flows, .. } => 4 + flows.iter().map(flow_len).sum::<usize>(),
            Message::BulkEnd { .. } | Message::BulkProgress { .. } => 8,
            Message::Heartbeat { .. } => 9,
        }
    }

    pub(super) fn put_body(&self, out: &mut Vec<u8>) -> Result<(), FlowError> {
        match self {
            Message::Update(changes) => {
                for change in changes {
                    change.put(out)?;
                }
            }
            Message::BulkRequest { request_id } | Message::BulkStart { request_id } => {
                out.extend_from_slice(&request_id.to_be_bytes());
            }
            Message::BulkRecords { request_id, flows } => {
                out.extend_from_slice(&request_id.to_be_bytes());
                for flow in flows {
                    put_flow(out, flow)?;
                }
            }
            Message::BulkEnd {
                request_id,
                records,
            }
            | Message::BulkProgress {
                request_id,
                records,
            } => {
                out.extend_from_slice(&request_id.to_be_bytes());
                out.extend_from_slice(&records.to_be_bytes());
            }
            Message::Heartbeat { in_sync, state_seq } => {
                out.extend_from_slice(&state_seq.to_be_bytes());
                out.push(u8::from(*in_sync));
            }
        }
        Ok(())
    }

    /// Parses an authenticated body of `kind`. Lists grow one parsed record
    /// at a time: nothing is sized from a claim in the body.
    pub(super) fn read_body(kind: Kind, body: &[u8]) -> Result<Self, Malformed> {
        let mut reader = Reader::new(body);
        let message = match kind {
            Kind::Update => {
                let mut changes = Vec::new();
                while !reader.is_empty() {
                    changes.push(Change::read(&mut reader)?);
                }
                Message::Update(changes)
            }
            Kind::BulkRequest => Message::BulkRequest {
                request_id: reader.u32("request id")?,
            },
            Kind::BulkStart => Message::BulkStart {
                request_id: reader.u32("request id")?,
            },
            Kind::BulkRecords => {
                let request_id = reader.u32("request id")?;
                let mut flows = Vec::new();
                while !reader.is_empty() {
                    flows.push(read_flow(&mut reader)?);
                }
                Message::BulkRecords { request_id, flows }
            }
            Kind::BulkEnd => Message::BulkEnd {
                request_id: reader.u32("request id")?,
                records: reader.u32("record count")?,
            },
            Kind::BulkProgress => Message::BulkProgress {
                request_id: reader.u32("request id")?,
                records: reader.u32("record count")?,
            },
            Kind::Heartbeat => {
                let state_seq = reader.u64("state seq")?;
                let in_sync = match reader.u8("in_sync")? {
                    0 => false,
                    1 => true,
                    other => return Err(Malformed::Bool(other)),
                };
                Message::Heartbeat { in_sync, state_seq }
            }
        };
        reader.finish()?;
        Ok(message)
    }
}
