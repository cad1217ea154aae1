//! The kernel side of state sync: the local conntrack table over ctnetlink.
//!
//! - [`Conntrack`]: dump the table, look an entry up, install (create or
//!   update) and delete entries in batches.
//! - [`EventSocket`]: the table's changes as [`Event`]s, with their
//!   [`Origin`] (so state a peer gave us is not echoed back to it) and
//!   [`Event::Overrun`] when the kernel dropped events.
//! - [`convert`]: the pure mapping between kernel entries and [`Flow`]s,
//!   including which status bits and TCP flags an install sends and why.
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
