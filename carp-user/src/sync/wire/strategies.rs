//! Proptest strategies for valid flows, messages and envelopes.

use std::net::IpAddr;
use std::num::NonZeroU64;

use proptest::collection::vec;
use proptest::prelude::*;

use super::{Change, Envelope, Message};
use crate::sync::flow::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::sync::{Flow, FlowKey, L4, TcpInfo, Tuple};

fn address(v6: bool) -> BoxedStrategy<IpAddr> {
    if v6 {
        any::<[u8; 16]>().prop_map(IpAddr::from).boxed()
    } else {
        any::<[u8; 4]>().prop_map(IpAddr::from).boxed()
    }
}

fn ports() -> BoxedStrategy<L4> {
    any::<(u16, u16)>()
        .prop_map(|(src, dst)| L4::Ports { src, dst })
        .boxed()
}

fn icmp() -> BoxedStrategy<L4> {
    any::<(u16, u8, u8)>()
        .prop_map(|(id, kind, code)| L4::Icmp { id, kind, code })
        .boxed()
}

/// A protocol and a strategy for its layer 4, as conntrack has them.
fn proto_and_l4(v6: bool) -> BoxedStrategy<(u8, bool)> {
    // (proto, port-based?) for the non-ICMP protocols; ICMP is chosen apart.
    let other = any::<u8>()
        .prop_filter("a protocol without fixed rules", |p| {
            ![PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP].contains(p)
        })
        .prop_flat_map(|p| (Just(p), any::<bool>()));
    let icmp = if v6 { PROTO_ICMPV6 } else { PROTO_ICMP };
    prop_oneof![
        Just((icmp, false)),
        Just((PROTO_TCP, true)),
        Just((PROTO_UDP, true)),
        other,
    ]
    .boxed()
}

fn l4(proto: u8, port_based: bool) -> BoxedStrategy<L4> {
    match proto {
        PROTO_ICMP | PROTO_ICMPV6 => icmp(),
        _ if port_based => ports(),
        _ => Just(L4::None).boxed(),
    }
}

fn tuple(v6: bool, proto: u8, port_based: bool) -> impl Strategy<Value = Tuple> {
    (address(v6), address(v6), l4(proto, port_based)).prop_map(move |(src, dst, l4)| Tuple {
        src,
        dst,
        proto,
        l4,
    })
}

fn tcp_info() -> impl Strategy<Value = TcpInfo> {
    any::<[u8; 5]>().prop_map(|b| TcpInfo {
        state: b[0],
        wscale_original: b[1],
        wscale_reply: b[2],
        flags_original: b[3],
        flags_reply: b[4],
    })
}

/// Any flow the codec accepts.
pub fn flow() -> impl Strategy<Value = Flow> {
    any::<bool>()
        .prop_flat_map(|v6| (Just(v6), proto_and_l4(v6)))
        .prop_flat_map(|(v6, (proto, port_based))| {
            let tcp = if proto == PROTO_TCP {
                proptest::option::of(tcp_info()).boxed()
            } else {
                Just(None).boxed()
            };
            (
                tuple(v6, proto, port_based),
                tuple(v6, proto, port_based),
                any::<(u16, u32, u32, u32)>(),
                tcp,
            )
        })
        .prop_map(
            |(original, reply, (zone, status, timeout_secs, mark), tcp)| Flow {
                original,
                reply,
                zone,
                status,
                timeout_secs,
                mark,
                tcp,
            },
        )
}

pub fn key() -> impl Strategy<Value = FlowKey> {
    flow().prop_map(|flow| flow.key())
}

pub fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        flow().prop_map(Change::Upsert),
        key().prop_map(Change::Delete)
    ]
}

pub fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        vec(change(), 0..6).prop_map(Message::Update),
        any::<u32>().prop_map(|request_id| Message::BulkRequest { request_id }),
        any::<u32>().prop_map(|request_id| Message::BulkStart { request_id }),
        (any::<u32>(), vec(flow(), 0..6))
            .prop_map(|(request_id, flows)| Message::BulkRecords { request_id, flows }),
        any::<(u32, u32)>().prop_map(|(request_id, records)| Message::BulkEnd {
            request_id,
            records
        }),
        any::<(bool, u64)>()
            .prop_map(|(in_sync, state_seq)| Message::Heartbeat { in_sync, state_seq }),
        any::<(u32, u32)>().prop_map(|(request_id, records)| Message::BulkProgress {
            request_id,
            records
        }),
    ]
}

pub fn envelope() -> impl Strategy<Value = Envelope> {
    (
        any::<NonZeroU64>(),
        any::<u64>(),
        any::<NonZeroU64>(),
        message(),
    )
        .prop_map(|(sender_session, peer_session, seq, message)| Envelope {
            sender_session,
            peer_session,
            seq,
            message,
        })
}
