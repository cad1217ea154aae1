//! The CARP advertisement header.

use carp_common::{CARP_HEADER_LEN, CARP_TYPE_ADVERTISEMENT, CARP_VERSION};

use super::checksum::internet_checksum;

/// OpenBSD always sends authlen 7 (the HMAC length in 32-bit words, rounded
/// up, plus the counter); like OpenBSD we do not check it on receive.
const AUTHLEN: u8 = 7;

/// A CARP advertisement.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Type  |     vhid      |    advskew    |  authlen (7)  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |    demote     |    advbase    |   checksum (36 bytes, no pseudo)
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                        counter (64 bits)                      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                SHA-1 HMAC digest (160 bits)                   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
/// Version 2, type 1 (advertisement); all fields in network byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advertisement {
    pub vhid: u8,
    pub advskew: u8,
    pub demote: u8,
    pub advbase: u8,
    pub counter: u64,
    pub digest: [u8; 20],
}

/// Why a header was refused; `reason` is the OpenBSD carpstats name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{len} bytes, a CARP header has {CARP_HEADER_LEN}")]
    Short { len: usize },
    #[error("version {0}, expected {CARP_VERSION}")]
    BadVersion(u8),
    #[error("type {0}, expected {CARP_TYPE_ADVERTISEMENT} (advertisement)")]
    BadType(u8),
    #[error("bad checksum")]
    BadChecksum,
}

impl DecodeError {
    pub const fn reason(&self) -> &'static str {
        match self {
            DecodeError::Short { .. } => "badlen",
            DecodeError::BadVersion(_) | DecodeError::BadType(_) => "badver",
            DecodeError::BadChecksum => "badsum",
        }
    }
}

impl Advertisement {
    /// The header as sent, checksum filled in.
    pub fn encode(&self) -> [u8; CARP_HEADER_LEN] {
        let mut bytes = [0u8; CARP_HEADER_LEN];
        bytes[0] = (CARP_VERSION << 4) | CARP_TYPE_ADVERTISEMENT;
        bytes[1] = self.vhid;
        bytes[2] = self.advskew;
        bytes[3] = AUTHLEN;
        bytes[4] = self.demote;
        bytes[5] = self.advbase;
        bytes[8..16].copy_from_slice(&self.counter.to_be_bytes());
        bytes[16..36].copy_from_slice(&self.digest);
        let sum = internet_checksum(&bytes);
        bytes[6..8].copy_from_slice(&sum.to_be_bytes());
        bytes
    }

    /// Parses a header (trailing bytes beyond 36 are ignored, as OpenBSD does).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let Some(header) = bytes.get(..CARP_HEADER_LEN) else {
            return Err(DecodeError::Short { len: bytes.len() });
        };
        let version = header[0] >> 4;
        let kind = header[0] & 0x0f;
        if version != CARP_VERSION {
            return Err(DecodeError::BadVersion(version));
        }
        if kind != CARP_TYPE_ADVERTISEMENT {
            return Err(DecodeError::BadType(kind));
        }
        if internet_checksum(header) != 0 {
            return Err(DecodeError::BadChecksum);
        }
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&header[8..16]);
        let mut digest = [0u8; 20];
        digest.copy_from_slice(&header[16..36]);
        Ok(Self {
            vhid: header[1],
            advskew: header[2],
            demote: header[4],
            advbase: header[5],
            counter: u64::from_be_bytes(counter),
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample() -> Advertisement {
        Advertisement {
            vhid: 7,
            advskew: 100,
            demote: 3,
            advbase: 1,
            counter: 0x0102_0304_0506_0708,
            digest: [0xaa; 20],
        }
    }

    #[test]
    fn golden_bytes() {
        // Checksum computed independently (Python, RFC 1071) over the words 2107
        // 6407 0301 0000 0102 0304 0506 0708 and ten times aaaa: bd31.
        let expected: [u8; 36] = [
            0x21, 0x07, 0x64, 0x07, 0x03, 0x01, 0xbd, 0x31, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
            0x07, 0x08, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
            0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
        ];
        assert_eq!(sample().encode(), expected);
        assert_eq!(Advertisement::decode(&expected), Ok(sample()));
    }

    #[test]
    fn every_error_is_detected() {
        let good = sample().encode();
        assert_eq!(
            Advertisement::decode(&good[..35]),
            Err(DecodeError::Short { len: 35 })
        );
        let mut version = good;
        version[0] = 0x31;
        assert_eq!(
            Advertisement::decode(&version),
            Err(DecodeError::BadVersion(3))
        );
        let mut kind = good;
        kind[0] = 0x22;
        assert_eq!(Advertisement::decode(&kind), Err(DecodeError::BadType(2)));
        let mut sum = good;
        sum[20] ^= 0x10;
        assert_eq!(Advertisement::decode(&sum), Err(DecodeError::BadChecksum));
        assert_eq!(DecodeError::BadChecksum.reason(), "badsum");
        assert_eq!(DecodeError::BadType(2).reason(), "badver");
        assert_eq!(DecodeError::Short { len: 0 }.reason(), "badlen");
    }

    #[test]
    fn trailing_bytes_are_ignored_and_authlen_is_not_checked() {
        let mut long = sample().encode().to_vec();
        long.extend_from_slice(&[1, 2, 3]);
        assert_eq!(Advertisement::decode(&long), Ok(sample()));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Advertisement::decode(&bytes);
        }

        #[test]
        fn round_trip(vhid: u8, advskew: u8, demote: u8, advbase: u8, counter: u64, digest: [u8; 20]) {
            let advert = Advertisement { vhid, advskew, demote, advbase, counter, digest };
            let bytes = advert.encode();
            prop_assert_eq!(internet_checksum(&bytes), 0);
            prop_assert_eq!(Advertisement::decode(&bytes), Ok(advert));
        }
    }
}
