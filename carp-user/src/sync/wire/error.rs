//! Why a datagram was refused, or a message could not be written.

use super::{HEADER_LEN, MAC_LEN, MAX_DATAGRAM, VERSION};

/// Why a received datagram was dropped. [`DecodeError::label`] names the
/// per-reason counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{len} bytes, shorter than its header, body and MAC")]
    Truncated { len: usize },
    #[error("{len} bytes, at most {MAX_DATAGRAM}")]
    TooLarge { len: usize },
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("version {0}, expected {VERSION}")]
    BadVersion(u8),
    #[error("bad MAC (wrong key, or altered)")]
    BadMac,
    /// An authenticated datagram of a kind we do not know: a newer peer.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("malformed: {0}")]
    Malformed(#[from] Malformed),
}

impl DecodeError {
    pub const fn label(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::BadMagic(_) => "bad_magic",
            DecodeError::BadVersion(_) => "bad_version",
            DecodeError::BadMac => "bad_mac",
            DecodeError::UnknownKind(_) => "unknown_kind",
            DecodeError::Malformed(_) => "malformed",
        }
    }
}

/// What is wrong inside an authenticated datagram (or, for
/// `LengthMismatch`, with its length).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error(
        "datagram is {actual} bytes, its header says {} (body {body_len})",
        HEADER_LEN + MAC_LEN + *body_len
    )]
    LengthMismatch { body_len: usize, actual: usize },
    #[error("unknown header flags {0:#06x}")]
    Flags(u16),
    #[error("sender session 0")]
    ZeroSession,
    #[error("seq 0")]
    ZeroSeq,
    #[error("body ends inside {0}")]
    Short(&'static str),
    #[error("{0} bytes after the last field")]
    Trailing(usize),
    #[error("address family {0}, expected 4 or 6")]
    Family(u8),
    #[error("layer-4 kind {0}, expected 0, 1 or 2")]
    L4Kind(u8),
    #[error("record flags {0:#04x}")]
    RecordFlags(u8),
    #[error("change tag {0}, expected 1 (upsert) or 2 (delete)")]
    ChangeTag(u8),
    #[error("in_sync {0}, expected 0 or 1")]
    Bool(u8),
    #[error(transparent)]
    Flow(#[from] FlowError),
}

/// Why a flow cannot go on the wire (and is refused when it comes off it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("addresses of both families in one flow")]
    MixedFamily,
    #[error("original protocol {original}, reply protocol {reply}")]
    MixedProto { original: u8, reply: u8 },
    #[error("original and reply tuples have different layer-4 kinds")]
    MixedL4,
    #[error("protocol {0} with the wrong layer-4 kind")]
    L4Mismatch(u8),
    #[error("protocol {0} over the other IP family")]
    IcmpFamily(u8),
    #[error("TCP info on protocol {0}")]
    TcpInfoNotTcp(u8),
}

/// Why a message could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Flow(#[from] FlowError),
    #[error("message is {len} bytes, at most {MAX_DATAGRAM}")]
    TooLarge { len: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_messages() {
        let table = [
            (DecodeError::Truncated { len: 3 }, "truncated", "3 bytes"),
            (DecodeError::TooLarge { len: 70_000 }, "too_large", "70000"),
            (DecodeError::BadMagic(*b"CARP"), "bad_magic", "bad magic"),
            (DecodeError::BadVersion(2), "bad_version", "version 2"),
            (DecodeError::BadMac, "bad_mac", "MAC"),
            (DecodeError::UnknownKind(9), "unknown_kind", "kind 9"),
            (
                DecodeError::Malformed(Malformed::LengthMismatch {
                    body_len: 4,
                    actual: 80,
                }),
                "malformed",
                "80 bytes, its header says 72",
            ),
            (
                DecodeError::Malformed(Malformed::Flow(FlowError::TcpInfoNotTcp(17))),
                "malformed",
                "TCP info on protocol 17",
            ),
        ];
        for (error, label, text) in table {
            assert_eq!(error.label(), label);
            assert!(error.to_string().contains(text), "{error}");
        }
    }
}
