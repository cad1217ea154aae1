//! The shared key and the HMAC-SHA256 that authenticates every datagram.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of the MAC that ends every datagram.
pub const MAC_LEN: usize = 32;
/// Shortest key accepted: 128 bits. The key is used as is (HMAC hashes keys
/// longer than SHA-256's 64-byte block), so a key file should hold random
/// bytes, not a passphrase.
pub const MIN_KEY_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// The sync key, ready to sign and verify. Its Debug output never shows the
/// secret.
#[derive(Clone)]
pub struct SyncKey(HmacSha256);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("sync key is {0} bytes, at least {MIN_KEY_LEN}")]
    TooShort(usize),
}

impl SyncKey {
    /// A key from the bytes of a key file (taken as they are: a caller that
    /// reads a text file decides about a trailing newline).
    pub fn new(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort(bytes.len()));
        }
        // HMAC takes keys of any length; the error arm cannot happen.
        let mac = HmacSha256::new_from_slice(bytes).map_err(|_| KeyError::TooShort(bytes.len()))?;
        Ok(Self(mac))
    }

    pub(super) fn sign(&self, data: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.0.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` authenticates `data`; constant time in the tag.
    pub(super) fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.0.clone();
        mac.update(data);
        mac.verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for SyncKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SyncKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(SyncKey::new(&[7; 15]).err(), Some(KeyError::TooShort(15)));
        assert_eq!(
            SyncKey::new(b"").err().map(|e| e.to_string()).as_deref(),
            Some("sync key is 0 bytes, at least 16")
        );
        assert!(SyncKey::new(&[7; 16]).is_ok());
        assert!(SyncKey::new(&[7; 200]).is_ok());
    }

    #[test]
    fn signs_verifies_and_redacts() {
        let key = SyncKey::new(b"0123456789abcdef-secret").expect("valid key");
        let tag = key.sign(b"hello");
        assert!(key.verify(b"hello", &tag));
        assert!(!key.verify(b"hellp", &tag));
        assert!(!key.verify(b"hello", &tag[..31]));
        let other = SyncKey::new(b"0123456789abcdef-Secret").expect("valid key");
        assert!(!other.verify(b"hello", &tag));
        let shown = format!("{key:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn matches_rfc_4231_case_4() {
        // RFC 4231 test case 2 has a 4-byte key ("Jefe"), below our minimum;
        // case 4 has a 25-byte key: 0x01..=0x19, data 50 x 0xcd.
        let key: Vec<u8> = (1..=0x19).collect();
        let key = SyncKey::new(&key).expect("valid key");
        let expected = [
            0x82, 0x55, 0x8a, 0x38, 0x9a, 0x44, 0x3c, 0x0e, 0xa4, 0xcc, 0x81, 0x98, 0x99, 0xf2,
            0x08, 0x3a, 0x85, 0xf0, 0xfa, 0xa3, 0xe5, 0x78, 0xf8, 0x07, 0x7a, 0x2e, 0x3f, 0xf4,
            0x67, 0x29, 0x66, 0x5b,
        ];
        assert_eq!(key.sign(&[0xcd; 50]), expected);
    }
}
