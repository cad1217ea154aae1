//! The advertisement HMAC, as OpenBSD's `carp_hmac_prepare`/`generate`/`verify`
//! (`sys/netinet/ip_carp.c`) compute it.
//!
//! HMAC-SHA1 keyed with the passphrase zero-padded to 20 bytes (not hashed),
//! over: version 2, type 1, vhid, the vhid's IPv4 addresses in ascending order,
//! its IPv6 addresses in byte order, then the 8 counter bytes as on the wire.
//! Duplicates count once (OpenBSD walks "next larger than the last"). IPv6
//! link-local addresses are left out when sending; on receive a digest with
//! them (their embedded scope bytes 2..4 zeroed) is accepted too.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use carp_common::{CARP_TYPE_ADVERTISEMENT, CARP_VERSION};

/// Longest passphrase: OpenBSD keeps it in a 20-byte, NUL-padded buffer.
pub const MAX_PASSPHRASE: usize = 19;
const KEY_LEN: usize = 20;

/// The HMAC key. Its Debug output never shows the secret.
#[derive(Clone)]
pub struct Key([u8; KEY_LEN]);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("pass is {0} bytes, at most {MAX_PASSPHRASE}")]
    TooLong(usize),
}

impl Key {
    pub fn from_passphrase(pass: &[u8]) -> Result<Self, KeyError> {
        if pass.len() > MAX_PASSPHRASE {
            return Err(KeyError::TooLong(pass.len()));
        }
        let mut key = [0u8; KEY_LEN];
        key[..pass.len()].copy_from_slice(pass);
        Ok(Self(key))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

type HmacSha1 = Hmac<Sha1>;

/// Signs and verifies one vhid's advertisements, with the inner hash over
/// everything but the counter computed once.
#[derive(Clone)]
pub struct Authenticator {
    without_link_local: HmacSha1,
    with_link_local: HmacSha1,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authenticator(<redacted>)")
    }
}

/// Link-local and other scope-embedding addresses (KAME's `IN6_IS_SCOPE_EMBED`).
fn is_scope_embedded(address: &Ipv6Addr) -> bool {
    address.is_unicast_link_local()
        || (address.is_multicast() && matches!(address.segments()[0] & 0x000f, 1 | 2))
}

fn prepared(key: &Key, vhid: u8, addresses: &[IpAddr], include_link_local: bool) -> HmacSha1 {
    let mut v4: Vec<[u8; 4]> = Vec::new();
    let mut v6: Vec<[u8; 16]> = Vec::new();
    for address in addresses {
        match address {
            IpAddr::V4(a) => v4.push(a.octets()),
            IpAddr::V6(a) if is_scope_embedded(a) => {
                if include_link_local {
                    let mut bytes = a.octets();
                    bytes[2] = 0;
                    bytes[3] = 0;
                    v6.push(bytes);
                }
            }
            IpAddr::V6(a) => v6.push(a.octets()),
        }
    }
    v4.sort_unstable();
    v4.dedup();
    v6.sort_unstable();
    v6.dedup();
    // A 20-byte key is always a valid HMAC key; the error arm cannot happen.
    let mut mac = HmacSha1::new_from_slice(&key.0).unwrap_or_else(|_| unreachable!());
    mac.update(&[CARP_VERSION, CARP_TYPE_ADVERTISEMENT, vhid]);
    for address in &v4 {
        mac.update(address);
    }
    for address in &v6 {
        mac.update(address);
    }
    mac
}

impl Authenticator {
    pub fn new(key: &Key, vhid: u8, addresses: &[IpAddr]) -> Self {
        Self {
            without_link_local: prepared(key, vhid, addresses, false),
            with_link_local: prepared(key, vhid, addresses, true),
        }
    }

    /// The digest we send with `counter`.
    pub fn sign(&self, counter: u64) -> [u8; 20] {
        finish(self.without_link_local.clone(), counter)
    }

    /// Whether `digest` authenticates `counter`, computed with or without the
    /// link-local addresses. Constant time in the digest.
    pub fn verify(&self, counter: u64, digest: &[u8; 20]) -> bool {
        let plain = finish(self.without_link_local.clone(), counter);
        let with_ll = finish(self.with_link_local.clone(), counter);
        bool::from(plain.ct_eq(digest) | with_ll.ct_eq(digest))
    }
}

fn finish(mut mac: HmacSha1, counter: u64) -> [u8; 20] {
    mac.update(&counter.to_be_bytes());
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    /// Expected digests printed by `testdata/gen_vectors.py`, an independent
    /// Python implementation written from PROTOCOL.md.
    /// (name, pass, vhid, addresses, counter, expected digest)
    type Vector = (
        &'static str,
        &'static str,
        u8,
        &'static [&'static str],
        u64,
        &'static str,
    );

    const VECTORS: &[Vector] = &[
        (
            "one IPv4 (ucarp)",
            "secret",
            1,
            &["10.0.1.1"],
            1,
            "f198f1a9944c96fbc135d03f3e596863ff7c46bc",
        ),
        (
            "unsorted IPv4",
            "lab-secret",
            7,
            &["192.0.2.20", "10.0.0.1", "192.0.2.3"],
            0x8000_0000_0000_0001,
            "0f452ad39017374a970c1b3763f78107b7448a96",
        ),
        (
            "IPv4 and IPv6, 19-byte pass",
            "pass19bytes-exactly",
            255,
            &["2001:db8::2", "192.0.2.1", "2001:db8::1"],
            0x0123_4567_89ab_cdef,
            "d402c5749e24d153c4bc84f15ec0a31b2a6adbf8",
        ),
        (
            "link-local left out",
            "x",
            9,
            &["192.0.2.1", "fe80::1", "2001:db8::1"],
            42,
            "d587c8274be8e1b9930784fc7bee2cf87eb18c76",
        ),
        (
            "empty pass",
            "",
            3,
            &["198.51.100.7"],
            u64::MAX,
            "be587c8477f08f18cfd8bc885925320ef064ce97",
        ),
    ];
    const LINK_LOCAL_INCLUDED: &str = "96c1482a58782ad2ab97e749e190f5e89502d566";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().fold(String::new(), |mut out, byte| {
            // Writing to a String cannot fail.
            let _ = write!(out, "{byte:02x}");
            out
        })
    }

    fn addresses(list: &[&str]) -> Vec<IpAddr> {
        list.iter().filter_map(|a| a.parse().ok()).collect()
    }

    fn authenticator(pass: &str, vhid: u8, list: &[&str]) -> Authenticator {
        let key = Key::from_passphrase(pass.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        Authenticator::new(&key, vhid, &addresses(list))
    }

    #[test]
    fn matches_the_independent_vectors() {
        for (name, pass, vhid, list, counter, expected) in VECTORS {
            assert_eq!(
                addresses(list).len(),
                list.len(),
                "{name}: test addresses parse"
            );
            let auth = authenticator(pass, *vhid, list);
            assert_eq!(hex(&auth.sign(*counter)), *expected, "{name}");
        }
    }

    #[test]
    fn accepts_digests_with_or_without_link_local() {
        let list = &["192.0.2.1", "fe80::1", "2001:db8::1"];
        let auth = authenticator("x", 9, list);
        let sent = auth.sign(42);
        assert!(auth.verify(42, &sent));
        let mut with_ll = [0u8; 20];
        for (i, byte) in with_ll.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&LINK_LOCAL_INCLUDED[2 * i..2 * i + 2], 16).unwrap_or(0);
        }
        assert_ne!(with_ll, sent);
        assert!(auth.verify(42, &with_ll));
    }

    #[test]
    fn address_order_and_duplicates_do_not_matter() {
        let a = authenticator(
            "k",
            4,
            &["192.0.2.9", "192.0.2.1", "2001:db8::5", "2001:db8::1"],
        );
        let b = authenticator(
            "k",
            4,
            &[
                "2001:db8::1",
                "192.0.2.1",
                "192.0.2.9",
                "2001:db8::5",
                "192.0.2.1",
            ],
        );
        assert_eq!(a.sign(7), b.sign(7));
    }

    #[test]
    fn rejects_tampering_and_other_keys_or_vhids() {
        let auth = authenticator("secret", 1, &["10.0.1.1"]);
        let digest = auth.sign(100);
        let mut flipped = digest;
        flipped[19] ^= 1;
        assert!(!auth.verify(100, &flipped));
        assert!(!auth.verify(101, &digest));
        assert!(!authenticator("Secret", 1, &["10.0.1.1"]).verify(100, &digest));
        assert!(!authenticator("secret", 2, &["10.0.1.1"]).verify(100, &digest));
        assert!(!authenticator("secret", 1, &["10.0.1.2"]).verify(100, &digest));
    }

    #[test]
    fn passphrase_limit_and_redaction() {
        assert!(Key::from_passphrase(&[b'a'; 19]).is_ok());
        let error = Key::from_passphrase(&[b'a'; 23]).err();
        assert_eq!(
            error.map(|e| e.to_string()).as_deref(),
            Some("pass is 23 bytes, at most 19")
        );
        let key = Key::from_passphrase(b"hunter2").unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{key:?} {:?}", Authenticator::new(&key, 1, &[]));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
