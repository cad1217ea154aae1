//! The sync wire format: authenticated datagrams between two carpd peers on
//! the sync link, one message per UDP datagram (default port
//! [`DEFAULT_PORT`]). Pure: no I/O.
//!
//! pfsync has no authentication (anyone on the sync link can inject states);
//! every datagram here carries an HMAC-SHA256 under a shared key, checked
//! before a single byte of the body is parsed.
//!
//! # Datagram
//!
//! All integers in network byte order.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      'C'      |      'S'      |      'Y'      |      'N'      |  0
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  version (1)  |     kind      |           flags (0)           |  4
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                sender_session (64 bits, not 0)                |  8
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        peer_session (64 bits, 0: not heard from yet)          | 16
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     seq (64 bits, not 0)                      | 24
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     body length (32 bits)                     | 32
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     body (body length bytes)                  | 36
//! ~                                                               ~
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     HMAC-SHA256 (32 bytes) over everything above: the 36      |
//! ~     header bytes and the body                                 ~
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! - kind: 1 Update, 2 `BulkRequest`, 3 `BulkStart`, 4 `BulkRecords`,
//!   5 `BulkEnd`, 6 Heartbeat, 7 `BulkProgress`.
//! - flags: none are defined in version 1. Senders write 0 and receivers
//!   refuse any set bit: a flag that changes the meaning of a message must
//!   not be silently ignored by an older peer.
//! - `sender_session`: random, drawn at every carpd start. `peer_session`:
//!   the session this sender last heard from the receiver, so a receiver can
//!   tell messages meant for it from replays of traffic meant for its previous
//!   incarnation (see [`super::freshness`]).
//! - seq: counts from 1 per sender session and per *channel*: Heartbeat,
//!   `BulkRequest` and `BulkProgress` are the control channel, Update and the three bulk answers
//!   the state channel ([`Channel`]). Two counters, so that a gap in the state
//!   channel means lost *state*: a heartbeat or bulk request lost while the
//!   sync link flaps must not make a node that is in sync believe it is not
//!   (the `OpenBSD` 5.1 story in PROTOCOL.md).
//! - The datagram is exactly 36 + body length + 32 bytes: shorter is
//!   truncated, longer is malformed.
//!
//! # Bodies
//!
//! ```text
//! Update        change*           change = tag (1 upsert | 2 delete), record
//!               upsert: flow record; delete: key record
//! BulkRequest   request_id (32)
//! BulkStart     request_id (32)
//! BulkRecords   request_id (32), flow record*
//! BulkEnd       request_id (32), records (32)
//! Heartbeat     state_seq (64), in_sync (8: 0 | 1)
//! BulkProgress  request_id (32), records (32)
//! ```
//!
//! `BulkProgress` is the requester's acknowledgement of the records it has
//! received: the responder keeps at most a window of records beyond it in
//! flight, so a bulk of a million entries never overruns the requester's
//! socket buffer (UDP has no flow control of its own).
//!
//! Lists carry no count: the body length delimits them, and they are parsed
//! record by record, so a hostile length never makes us allocate more than
//! the datagram holds.
//!
//! `state_seq` in a heartbeat is the seq of the last state-channel message
//! its sender sent. Without it, losing the last update before a quiet period
//! would go unnoticed until the next update, which may be hours away; with
//! it, the receiver sees the loss within a heartbeat interval.
//!
//! No other message is needed: a peer's restart shows as a new sender
//! session (no "hello"/"goodbye"), a new `BulkRequest` supersedes a bulk
//! answer in progress (no "abort"), and the bulk answer's own end count
//! detects loss (no acknowledgements).
//!
//! # Flow records
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | family (4|6)  |     proto     |    l4 kind    |     flags     |  key
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |             zone              | original src (4 or 16 bytes)  ~
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ~ original dst (4 or 16 bytes), original l4 (0 or 4 bytes)      ~
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  ----
//! ~ reply src, reply dst (4 or 16 bytes each), reply l4 (0 or 4)  ~  flow
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  only
//! |                        status (32 bits)                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      timeout (32 bits, s)                     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         mark (32 bits)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | TCP info if flags bit 0: state, wscale orig, wscale reply,    |
//! |   flags orig, flags reply (5 bytes)                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! - l4 kind: 0 none (addresses only), 1 ports (src port, dst port),
//!   2 ICMP (id (16), type (8), code (8)).
//! - flags: bit 0, TCP info follows. Other bits, and bit 0 in a key record
//!   (a delete), are malformed.
//! - A key record (what a delete carries) is the first part alone: a flow
//!   record starts with its key.
//! - One family, protocol and l4 kind for both tuples: a flow whose tuples
//!   mix families or protocols cannot be written, and the encoder refuses
//!   such a flow ([`FlowError`]). On top of that, decoding refuses records
//!   conntrack cannot hold: ICMP without its id/type/code, TCP or UDP without
//!   ports, ICMP over IPv6 or `ICMPv6` over IPv4, TCP info on a non-TCP flow.
//!   The encoder applies the same rules, so it never writes what a peer
//!   refuses.
//!
//! An IPv4 TCP flow takes 47 bytes, an IPv6 one 95: about 29 resp. 14 per
//! 1472-byte datagram.

mod auth;
mod batch;
mod datagram;
mod error;
mod header;
mod message;
mod reader;
mod record;

#[cfg(test)]
mod golden;
#[cfg(test)]
pub(crate) mod strategies;

pub use auth::{KeyError, MAC_LEN, MIN_KEY_LEN, SyncKey};
pub use batch::{LimitError, MIN_BATCH_LIMIT, RecordBatcher, UpdateBatcher};
pub use datagram::Envelope;
pub use error::{DecodeError, EncodeError, FlowError, Malformed};
pub use header::{Channel, HEADER_LEN, Kind, MAGIC, VERSION};
pub use message::{Change, Message};
pub use record::{MAX_FLOW_RECORD, check_flow, check_key};

/// carpd's default sync port: 7240, after pfsync's IP protocol number
/// (240). A choice of ours, not an IANA assignment.
pub const DEFAULT_PORT: u16 = 7240;

/// The largest UDP payload over IPv4 (65535 - 20 - 8): anything longer is
/// refused before it is looked at.
pub const MAX_DATAGRAM: usize = 65507;

/// The UDP payload of one unfragmented datagram on a 1500-byte IPv4 link
/// (1500 - 20 - 8): the default limit for batching records.
pub const DEFAULT_MTU_PAYLOAD: usize = 1472;
