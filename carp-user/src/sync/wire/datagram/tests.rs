use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::sync::wire::{Change, strategies};

fn key() -> SyncKey {
    SyncKey::new(b"datagram-tests-key").expect("valid key")
}

fn nz(value: u64) -> NonZeroU64 {
    NonZeroU64::new(value).expect("not 0")
}

fn heartbeat() -> Envelope {
    Envelope {
        sender_session: nz(11),
        peer_session: 22,
        seq: nz(3),
        message: Message::Heartbeat {
            in_sync: false,
            state_seq: 0,
        },
    }
}

/// A datagram with any header fields and body, correctly signed: what a
/// peer with the key (a buggy or newer one) could send.
fn signed(kind: u8, flags: u16, sender_session: u64, seq: u64, body: &[u8]) -> Vec<u8> {
    let header = RawHeader {
        magic: MAGIC,
        version: VERSION,
        kind,
        flags,
        sender_session,
        peer_session: 0,
        seq,
        body_len: u32::try_from(body.len()).expect("small body"),
    };
    let mut out = Vec::new();
    header.write(&mut out);
    out.extend_from_slice(body);
    let mac = key().sign(&out);
    out.extend_from_slice(&mac);
    out
}

fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    Envelope::decode(bytes, &key())
}

#[test]
fn errors_before_the_mac() {
    let good = heartbeat().encode(&key()).expect("encodes");
    assert_eq!(good.len(), HEADER_LEN + 9 + MAC_LEN);
    assert_eq!(decode(&good), Ok(heartbeat()));

    assert_eq!(
        decode(&vec![0; MAX_DATAGRAM + 1]),
        Err(DecodeError::TooLarge {
            len: MAX_DATAGRAM + 1
        })
    );
    assert_eq!(decode(&[]), Err(DecodeError::Truncated { len: 0 }));
    assert_eq!(
        decode(&good[..HEADER_LEN + MAC_LEN - 1]),
        Err(DecodeError::Truncated { len: 67 })
    );
    // A body cut short: the header promises more than arrived.
    assert_eq!(
        decode(&good[..good.len() - 1]),
        Err(DecodeError::Truncated { len: 76 })
    );

    let mut magic = good.clone();
    magic[..4].copy_from_slice(b"CARP");
    assert_eq!(decode(&magic), Err(DecodeError::BadMagic(*b"CARP")));

    let mut version = good.clone();
    version[4] = 2;
    assert_eq!(decode(&version), Err(DecodeError::BadVersion(2)));

    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        decode(&trailing),
        Err(DecodeError::Malformed(Malformed::LengthMismatch {
            body_len: 9,
            actual: 78
        }))
    );

    let mut huge = good.clone();
    huge[32..36].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(decode(&huge), Err(DecodeError::Truncated { len: 77 }));
}

#[test]
fn the_mac_is_checked_before_kind_flags_and_body() {
    let good = heartbeat().encode(&key()).expect("encodes");
    let mut mac = good.clone();
    let last = mac.len() - 1;
    mac[last] ^= 0x80;
    assert_eq!(decode(&mac), Err(DecodeError::BadMac));

    // Garbage kind, flags and body under a wrong MAC: only the MAC counts.
    let mut junk = signed(99, 0xffff, 0, 0, &[0xff; 5]);
    junk[HEADER_LEN] ^= 1;
    assert_eq!(decode(&junk), Err(DecodeError::BadMac));

    let other = SyncKey::new(b"datagram-tests-kez").expect("valid key");
    assert_eq!(Envelope::decode(&good, &other), Err(DecodeError::BadMac));
}

#[test]
fn authenticated_but_unacceptable() {
    let table: Vec<(Vec<u8>, DecodeError)> = vec![
        (signed(0, 0, 1, 1, &[]), DecodeError::UnknownKind(0)),
        (signed(8, 0, 1, 1, &[]), DecodeError::UnknownKind(8)),
        (
            signed(2, 0x0001, 1, 1, &[0; 4]),
            Malformed::Flags(0x0001).into(),
        ),
        (signed(2, 0, 0, 1, &[0; 4]), Malformed::ZeroSession.into()),
        (signed(2, 0, 1, 0, &[0; 4]), Malformed::ZeroSeq.into()),
        (
            signed(2, 0, 1, 1, &[0; 3]),
            Malformed::Short("request id").into(),
        ),
        (signed(2, 0, 1, 1, &[0; 5]), Malformed::Trailing(1).into()),
        (
            signed(6, 0, 1, 1, &[0, 0, 0, 0, 0, 0, 0, 0, 2]),
            Malformed::Bool(2).into(),
        ),
        (signed(1, 0, 1, 1, &[3]), Malformed::ChangeTag(3).into()),
        (
            signed(5, 0, 1, 1, &[0; 7]),
            Malformed::Short("record count").into(),
        ),
        // A record count is not trusted: records are parsed until the body
        // ends, and one that ends early is refused.
        (
            signed(4, 0, 1, 1, &[0, 0, 0, 1, 4, 17, 1, 0, 0, 0, 10]),
            Malformed::Short("IPv4 address").into(),
        ),
    ];
    for (bytes, error) in table {
        assert_eq!(decode(&bytes), Err(error));
    }
    // Empty lists are valid.
    assert_eq!(
        decode(&signed(1, 0, 1, 1, &[])).map(|e| e.message),
        Ok(Message::Update(Vec::new()))
    );
}

#[test]
fn the_encoder_refuses_what_does_not_fit_a_datagram() {
    let ports = crate::sync::L4::Ports { src: 1, dst: 2 };
    let tuple = crate::sync::Tuple {
        src: "2001:db8::1".parse().expect("address"),
        dst: "2001:db8::2".parse().expect("address"),
        proto: 17,
        l4: ports,
    };
    let flow = crate::sync::Flow {
        original: tuple,
        reply: tuple,
        zone: 0,
        status: 0,
        timeout_secs: 1,
        mark: 0,
        tcp: None,
    };
    let mut envelope = heartbeat();
    envelope.message = Message::Update(vec![Change::Upsert(flow); 2000]);
    assert!(matches!(
        envelope.encode(&key()),
        Err(EncodeError::TooLarge { .. })
    ));
    let mut mixed = flow;
    mixed.reply.proto = mixed.original.proto.wrapping_add(1);
    envelope.message = Message::BulkRecords {
        request_id: 1,
        flows: vec![mixed],
    };
    assert!(matches!(envelope.encode(&key()), Err(EncodeError::Flow(_))));
}

proptest! {
    #[test]
    fn round_trip(envelope in strategies::envelope()) {
        let bytes = envelope.encode(&key()).expect("strategy makes valid messages");
        prop_assert_eq!(bytes.len(), HEADER_LEN + envelope.message.body_len() + MAC_LEN);
        prop_assert_eq!(decode(&bytes), Ok(envelope));
    }

    #[test]
    fn every_single_byte_flip_is_refused(
        envelope in strategies::envelope(),
        flip in 1u8..=255,
    ) {
        let bytes = envelope.encode(&key()).expect("strategy makes valid messages");
        for at in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[at] ^= flip;
            prop_assert!(decode(&altered).is_err(), "byte {} ^ {:#x} accepted", at, flip);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..200)) {
        prop_assert!(decode(&bytes).is_err());
    }

    #[test]
    fn arbitrary_headers_never_panic(
        header in vec(any::<u8>(), HEADER_LEN..=HEADER_LEN),
        rest in vec(any::<u8>(), 0..100),
    ) {
        let mut bytes = MAGIC.to_vec();
        bytes.push(VERSION);
        bytes.extend_from_slice(&header[5..]);
        bytes.extend_from_slice(&rest);
        let _ = decode(&bytes);
    }

    /// Bodies that pass the MAC (a peer with the key, buggy or hostile)
    /// reach the parsers: they refuse, never panic.
    #[test]
    fn signed_arbitrary_bodies_never_panic(
        kind in 0u8..8,
        body in vec(any::<u8>(), 0..300),
    ) {
        let _ = decode(&signed(kind, 0, 1, 1, &body));
    }
}
