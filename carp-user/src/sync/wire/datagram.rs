//! A whole datagram: header, body, MAC.

use std::num::NonZeroU64;

use super::header::RawHeader;
use super::{
    DecodeError, EncodeError, HEADER_LEN, Kind, MAC_LEN, MAGIC, MAX_DATAGRAM, Malformed, Message,
    SyncKey, VERSION,
};

/// A message with the header fields that say who sent it, to whom, and in
/// which order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Random per carpd start.
    pub sender_session: NonZeroU64,
    /// The session the sender last heard from us; 0 if none.
    pub peer_session: u64,
    /// Per sender session and channel ([`Kind::channel`]), from 1.
    pub seq: NonZeroU64,
    pub message: Message,
}

impl Envelope {
    /// The datagram, MAC included.
    pub fn encode(&self, key: &SyncKey) -> Result<Vec<u8>, EncodeError> {
        let body_len = self.message.body_len();
        let len = HEADER_LEN + body_len + MAC_LEN;
        if len > MAX_DATAGRAM {
            return Err(EncodeError::TooLarge { len });
        }
        let header = RawHeader {
            magic: MAGIC,
            version: VERSION,
            kind: self.message.kind().code(),
            flags: 0,
            sender_session: self.sender_session.get(),
            peer_session: self.peer_session,
            seq: self.seq.get(),
            // At most MAX_DATAGRAM, checked above.
            body_len: u32::try_from(body_len).map_err(|_| EncodeError::TooLarge { len })?,
        };
        let mut out = Vec::with_capacity(len);
        header.write(&mut out);
        self.message.put_body(&mut out)?;
        debug_assert_eq!(out.len(), HEADER_LEN + body_len);
        let mac = key.sign(&out);
        out.extend_from_slice(&mac);
        Ok(out)
    }

    /// Checks, in this order: size, magic, version, length, MAC; only then
    /// is anything else in the datagram looked at.
    pub fn decode(datagram: &[u8], key: &SyncKey) -> Result<Self, DecodeError> {
        let len = datagram.len();
        if len > MAX_DATAGRAM {
            return Err(DecodeError::TooLarge { len });
        }
        if len < HEADER_LEN + MAC_LEN {
            return Err(DecodeError::Truncated { len });
        }
        let header = RawHeader::read(datagram).ok_or(DecodeError::Truncated { len })?;
        if header.magic != MAGIC {
            return Err(DecodeError::BadMagic(header.magic));
        }
        if header.version != VERSION {
            return Err(DecodeError::BadVersion(header.version));
        }
        // usize is at least 32 bits on every target carpd builds for.
        let body_len = usize::try_from(header.body_len).unwrap_or(usize::MAX);
        let total = body_len
            .checked_add(HEADER_LEN + MAC_LEN)
            .ok_or(DecodeError::Truncated { len })?;
        if total > len {
            return Err(DecodeError::Truncated { len });
        }
        if total < len {
            return Err(Malformed::LengthMismatch {
                body_len,
                actual: len,
            }
            .into());
        }
        let signed_len = len - MAC_LEN;
        let (signed, mac) = datagram.split_at(signed_len);
        if !key.verify(signed, mac) {
            return Err(DecodeError::BadMac);
        }
        let kind = Kind::from_code(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
        if header.flags != 0 {
            return Err(Malformed::Flags(header.flags).into());
        }
        let sender_session =
            NonZeroU64::new(header.sender_session).ok_or(Malformed::ZeroSession)?;
        let seq = NonZeroU64::new(header.seq).ok_or(Malformed::ZeroSeq)?;
        let message = Message::read_body(kind, &signed[HEADER_LEN..])?;
        Ok(Self {
            sender_session,
            peer_session: header.peer_session,
            seq,
            message,
        })
    }
}

#[cfg(test)]
mod tests;
