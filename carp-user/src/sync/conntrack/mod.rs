//! The kernel side of state sync: the local conntrack table over ctnetlink.
//!
//! - [`Conntrack`]: dump the table, look an entry up, install (create or
//!   update) and delete entries in batches.
//! - [`EventSocket`]: the table's changes as [`Event`]s, with their
//!   [`Origin`], and [`Event::Overrun`] when the kernel dropped events.
//! - [`convert`]: the pure mapping between kernel entries and [`Flow`]s,
//!   including which status bits and TCP flags an install sends and why.
//!
//! How the pieces are meant to be used, and what they decide:
//! - Subscribe to events before the initial dump, so no change falls
//!   between the two; after an `Overrun`, dump again.
//! - Own writes: ctnetlink stamps an event with the port id of the socket
//!   whose request caused it (0 for packets and timeouts). Mark the
//!   installing socket's [`Conntrack::port_id`] with
//!   [`EventSocket::mark_ours`]: the state a peer sent comes back as
//!   [`Origin::Ours`] and is not echoed to it; later changes by traffic are
//!   [`Origin::Kernel`] again.
//! - Batches: many requests per `sendmsg`, an ACK asked for only on the
//!   last of each (the kernel answers every failure anyway, in order), so a
//!   clean batch costs one read; failures are counted per entry
//!   ([`BatchReport`]), never a panic, never the end of the batch.
//! - TCP flows are installed with `IP_CT_TCP_FLAG_BE_LIBERAL` by default
//!   ([`TcpWindow`]): a window-tracked flow stalls when the first packet
//!   the new master sees is a retransmission answered by an ACK beyond it.
//! - Installs always carry `IPS_CONFIRMED`: the kernel refuses a status that
//!   does not (see [`convert::install_status`]).
//!
//! Not replicated: NAT bindings, helpers and expectations, labels,
//! accounting, SCTP and DCCP state (those entries are skipped), zones that
//! apply to one direction only.
//!
//! [`Flow`]: crate::sync::Flow

pub mod convert;
mod events;
mod message;
mod report;
mod socket;
mod uapi;

pub use convert::{EncodeError, Skip, TcpWindow};
pub use events::{DEFAULT_EVENT_BUFFER, Event, EventSocket, Origin};
pub use report::{BatchReport, Cause, ConntrackError, Dump, DumpStats, EntryError};
pub use socket::{Conntrack, Family};
