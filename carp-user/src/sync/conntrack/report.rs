//! What the conntrack operations return: errors of the operation as a whole,
//! and per-entry outcomes of batched installs and deletes.

use std::fmt;
use std::io;

use super::convert::{EncodeError, Skip};
use super::message::Malformed;
use crate::sync::flow::{Flow, FlowKey};

/// An operation that failed as a whole. Entries the kernel refused one by
/// one are not errors of the operation: see [`BatchReport`].
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("ctnetlink: {what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
    /// The kernel refused the request itself (a dump, a GET).
    #[error("ctnetlink: {what}: {}", io::Error::from_raw_os_error(*errno))]
    Kernel { what: &'static str, errno: i32 },
    /// The socket's receive queue overflowed while replies were due
    /// (ENOBUFS): which entries the kernel took is unknown, resync.
    #[error("ctnetlink: {what}: replies lost (receive queue overflowed), outcome unknown")]
    RepliesLost { what: &'static str },
    #[error("ctnetlink: {what}: {detail}")]
    Malformed {
        what: &'static str,
        detail: &'static str,
    },
    #[error("ctnetlink: {what}: {source}")]
    Encode {
        what: &'static str,
        source: EncodeError,
    },
    #[error("ctnetlink: {what}: entry not replicable: {source}")]
    Unrepresentable { what: &'static str, source: Skip },
}

impl ConntrackError {
    pub(super) fn io(what: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io { what, source }
    }

    pub(super) fn malformed(what: &'static str) -> impl FnOnce(Malformed) -> Self {
        move |error| Self::Malformed {
            what,
            detail: error.0,
        }
    }
}

/// Why one entry of a batch was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Not sent: it cannot be expressed to the kernel.
    Encode(EncodeError),
    /// The kernel's answer, a positive errno (EBUSY: a status bit the
    /// kernel will not change, e.g. ASSURED cannot be cleared).
    Kernel(i32),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encode(error) => error.fmt(f),
            Self::Kernel(errno) => io::Error::from_raw_os_error(*errno).fmt(f),
        }
    }
}

/// The first entry of a batch that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryError {
    /// Its position in the slice given to `install` or `delete`.
    pub index: usize,
    pub key: FlowKey,
    pub cause: Cause,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tuple = &self.key.original;
        write!(
            f,
            "entry {} (proto {} {} -> {}, zone {}): {}",
            self.index, tuple.proto, tuple.src, tuple.dst, self.key.zone, self.cause
        )
    }
}

/// The outcome of a batched install or delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Entries given.
    pub requested: usize,
    /// Entries not applied.
    pub failed: usize,
    /// Deletes of entries the kernel did not have (ENOENT): the wanted end
    /// state, so not counted as failed.
    pub absent: usize,
    /// The failed entry that comes first in the slice given.
    /// The failed entry that comes first in the slice given.
    pub first_error: Option<EntryError>,
}

impl BatchReport {
    pub(super) fn fail(&mut self, index: usize, key: FlowKey, cause: Cause) {
        self.failed += 1;
        // Encode errors are known before the kernel's answers: keep the
        // first in the caller's order, not in the order learnt.
        if self.first_error.is_none_or(|first| index < first.index) {
            self.first_error = Some(EntryError { index, key, cause });
        }
    }

    pub fn applied(&self) -> usize {
        self.requested - self.failed - self.absent
    }
}

/// What a dump saw besides the flows it yielded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpStats {
    pub flows: usize,
    /// Entries that are not replicable (see [`Skip`]).
    pub skipped: usize,
    pub first_skip: Option<Skip>,
    /// The kernel flagged the dump `NLM_F_DUMP_INTR`: the table changed
    /// under it in a way that may have hidden or repeated entries.
    pub interrupted: bool,
}

impl DumpStats {
    pub(super) fn skip(&mut self, skip: Skip) {
        self.skipped += 1;
        self.first_skip.get_or_insert(skip);
    }
}

/// A whole table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump {
    pub flows: Vec<Flow>,
    pub stats: DumpStats,
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::sync::flow::{L4, Tuple};

    fn key(last: u8) -> FlowKey {
        FlowKey {
            original: Tuple {
                src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
                dst: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)),
                proto: 17,
                l4: L4::Ports { src: 1, dst: 53 },
            },
            zone: 0,
        }
    }

    #[test]
    fn the_first_error_is_the_first_in_the_callers_order() {
        let mut report = BatchReport {
            requested: 10,
            ..BatchReport::default()
        };
        // Encode errors are recorded before the kernel answers.
        report.fail(7, key(7), Cause::Encode(EncodeError::MixedFamilies));
        report.fail(3, key(3), Cause::Kernel(libc::EBUSY));
        report.fail(9, key(9), Cause::Kernel(libc::EINVAL));
        report.absent += 1;
        assert_eq!((report.failed, report.applied()), (3, 6));
        let first = report.first_error.expect("a first error");
        assert_eq!(first.index, 3);
        assert_eq!(
            first.to_string(),
            format!(
                "entry 3 (proto 17 10.0.0.3 -> 10.0.1.1, zone 0): {}",
                io::Error::from_raw_os_error(libc::EBUSY)
            )
        );
    }
}
