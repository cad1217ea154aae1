//! Golden datagrams, one per message kind: header and body written by hand
//! from the layout in the module comment, MAC from `testdata/gen_macs.py`
//! (Python's hmac, an independent implementation). A change of layout, byte
//! order or MAC input breaks these.

use std::net::IpAddr;
use std::num::NonZeroU64;

use super::{Change, Envelope, Message, SyncKey};
use crate::sync::{Flow, FlowKey, L4, TcpInfo, Tuple};

const KEY: &[u8] = b"carp-sync-golden-key";

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    assert_eq!(digits.len() % 2, 0, "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("ascii");
            u8::from_str_radix(pair, 16).expect("hex")
        })
        .collect()
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn envelope(seq: u64, message: Message) -> Envelope {
    Envelope {
        sender_session: NonZeroU64::new(0x0102_0304_0506_0708).expect("not 0"),
        peer_session: 0x1112_1314_1516_1718,
        seq: NonZeroU64::new(seq).expect("not 0"),
        message,
    }
}

/// An IPv4 TCP connection behind source NAT.
fn tcp_v4() -> Flow {
    Flow {
        original: Tuple {
            src: ip("192.0.2.1"),
            dst: ip("198.51.100.2"),
            proto: 6,
            l4: L4::Ports {
                src: 40000,
                dst: 443,
            },
        },
        reply: Tuple {
            src: ip("198.51.100.2"),
            dst: ip("203.0.113.5"),
            proto: 6,
            l4: L4::Ports {
                src: 443,
                dst: 40000,
            },
        },
        zone: 0,
        status: 0x0e,
        timeout_secs: 432_000,
        mark: 42,
        tcp: Some(TcpInfo {
            state: 3,
            wscale_original: 7,
            wscale_reply: 7,
            flags_original: 0x23,
            flags_reply: 0x23,
        }),
    }
}

/// An `ICMPv6` echo in zone 5.
fn echo_v6() -> Flow {
    Flow {
        original: Tuple {
            src: ip("2001:db8::1"),
            dst: ip("2001:db8::2"),
            proto: 58,
            l4: L4::Icmp {
                id: 0x1234,
                kind: 128,
                code: 0,
            },
        },
        reply: Tuple {
            src: ip("2001:db8::2"),
            dst: ip("2001:db8::1"),
            proto: 58,
            l4: L4::Icmp {
                id: 0x1234,
                kind: 129,
                code: 0,
            },
        },
        zone: 5,
        status: 0x0a,
        timeout_secs: 30,
        mark: 0,
        tcp: None,
    }
}

fn dns_v4_key() -> FlowKey {
    FlowKey {
        original: Tuple {
            src: ip("10.0.0.1"),
            dst: ip("10.0.0.2"),
            proto: 17,
            l4: L4::Ports { src: 53, dst: 5353 },
        },
        zone: 0x0102,
    }
}

const HEARTBEAT: &str = "\
43 53 59 4e  01 06 00 00
01 02 03 04 05 06 07 08
11 12 13 14 15 16 17 18
00 00 00 00 00 00 00 21
00 00 00 09
00 00 00 00 00 00 00 2a  01
0c785870a31f3d40ecc787a8791a20447a0e5eca965681ee714faa404a0c7048";

const BULK_REQUEST: &str = "\
43 53 59 4e  01 02 00 00
01 02 03 04 05 06 07 08
11 12 13 14 15 16 17 18
00 00 00 00 00 00 00 05
00 00 00 04
de ad be ef
e98b6e4cb8c47abcccfe73ade34a07fb72d19fc2f4e9cb5ab82cb3c87653a615";

const BULK_START: &str = "\
43 53 59 4e  01 03 00 00
01 02 03 04 05 06 07 08
11 12 13 14 15 16 17 18
00 00 00 00 00 00 01 00
00 00 00 04
00 00 00 07
ccd9d93b370709041ca199a35f867cd81981a54c58ec33286a039c5819700be3";

const BULK_RECORDS: &str = "\
43 53 59 4e  01 04 00 00
01 02 03 04 05 06 07 08
11 12 13 14 15 16 17 18
00 00 00 00 00 00 01 01
00 00 00 33
00 00 00 07
04 06 01 01  00 00
c0 00 02 01  c6 33 64 02  9c 40 01 bb
c6 33 64 02  cb 00 71 05  01 bb 9c 40
00 00 00 0e  00 06 97 80  00 00 00 2a
03 07 07 23 23
9321ac0e1a5d87afc1ad4bda53bba0c0b6afd339e39977875eb6dae05f2e0269";

const BULK_END: &str = "\
43 53 59 4e  01 05 00 00
01 02 03 04 05 06 07 08
11 12 13 14 15 16 17 18
00 00 00 00 00 00 01 02
00 00 00 08
00 00 00 07  00 00 01 2c
29a428dd350acfad5c33d341b3c43a2bc64b019a0bad190d8e390910d79de031";

const BULK_PROGRESS: &str = "\
43 53 59 4e  01 07 00 00
01 02 03 04 05 06 07 08
11 12 13 14 15 16 17 18
00 00 00 00 00 00 00 22
00 00 00 08
00 00 00 07  00 00 00 80
2748aba71e20283d42108f378f6c57a968bbbc06ab7f8345cfdfcb88fa157133";

const UPDATE: &str = "\
43 53 59 4e  01 01 00 00
01 02 03 04 05 06 07 08
11 12 13 14 15 16 17 18
00 00 00 00 00 00 01 03
00 00 00 6e
01
06 3a 02 00  00 05
20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01
20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02
12 34 80 00
20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02
20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01
12 34 81 00
00 00 00 0a  00 00 00 1e  00 00 00 00
02
04 11 01 00  01 02
0a 00 00 01  0a 00 00 02  00 35 14 e9
0b4e29c9f48d5324454bbd05f942ea64003c038b6c134de71475eec4d9b230e1";

fn cases() -> Vec<(&'static str, Envelope, &'static str)> {
    vec![
        (
            "heartbeat",
            envelope(
                0x21,
                Message::Heartbeat {
                    in_sync: true,
                    state_seq: 0x2a,
                },
            ),
            HEARTBEAT,
        ),
        (
            "bulk_request",
            envelope(
                5,
                Message::BulkRequest {
                    request_id: 0xdead_beef,
                },
            ),
            BULK_REQUEST,
        ),
        (
            "bulk_start",
            envelope(0x100, Message::BulkStart { request_id: 7 }),
            BULK_START,
        ),
        (
            "bulk_records",
            envelope(
                0x101,
                Message::BulkRecords {
                    request_id: 7,
                    flows: vec![tcp_v4()],
                },
            ),
            BULK_RECORDS,
        ),
        (
            "bulk_end",
            envelope(
                0x102,
                Message::BulkEnd {
                    request_id: 7,
                    records: 300,
                },
            ),
            BULK_END,
        ),
        (
            "bulk_progress",
            envelope(
                0x22,
                Message::BulkProgress {
                    request_id: 7,
                    records: 128,
                },
            ),
            BULK_PROGRESS,
        ),
        (
            "update",
            envelope(
                0x103,
                Message::Update(vec![
                    Change::Upsert(echo_v6()),
                    Change::Delete(dns_v4_key()),
                ]),
            ),
            UPDATE,
        ),
    ]
}

#[test]
fn every_kind_encodes_and_decodes_to_the_golden_bytes() {
    let key = SyncKey::new(KEY).expect("valid key");
    let cases = cases();
    let mut kinds: Vec<_> = cases.iter().map(|(_, e, _)| e.message.kind()).collect();
    kinds.dedup();
    assert_eq!(kinds.len(), super::Kind::ALL.len(), "one case per kind");
    for (name, envelope, text) in cases {
        let expected = hex(text);
        let encoded = envelope.encode(&key).expect(name);
        assert_eq!(encoded, expected, "{name}");
        assert_eq!(Envelope::decode(&expected, &key), Ok(envelope), "{name}");
    }
}

#[test]
fn the_golden_bytes_do_not_verify_under_another_key() {
    let other = SyncKey::new(b"carp-sync-golden-kez").expect("valid key");
    for (name, _, text) in cases() {
        assert_eq!(
            Envelope::decode(&hex(text), &other),
            Err(super::DecodeError::BadMac),
            "{name}"
        );
    }
}
