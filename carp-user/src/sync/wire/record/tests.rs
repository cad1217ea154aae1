use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::sync::wire::strategies;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn tuple(src: &str, dst: &str, proto: u8, l4: L4) -> Tuple {
    Tuple {
        src: ip(src),
        dst: ip(dst),
        proto,
        l4,
    }
}

const PORTS: L4 = L4::Ports { src: 1, dst: 2 };
const ECHO: L4 = L4::Icmp {
    id: 9,
    kind: 8,
    code: 0,
};

fn flow(original: Tuple, reply: Tuple) -> Flow {
    Flow {
        original,
        reply,
        zone: 0,
        status: 0,
        timeout_secs: 60,
        mark: 0,
        tcp: None,
    }
}

fn udp_v4() -> Flow {
    flow(
        tuple("10.0.0.1", "10.0.0.2", PROTO_UDP, PORTS),
        tuple("10.0.0.2", "10.0.0.1", PROTO_UDP, PORTS),
    )
}

fn encoded(flow: &Flow) -> Result<Vec<u8>, FlowError> {
    let mut out = Vec::new();
    put_flow(&mut out, flow).map(|()| out)
}

fn decoded(bytes: &[u8]) -> Result<Flow, Malformed> {
    let mut reader = Reader::new(bytes);
    let flow = read_flow(&mut reader)?;
    reader.finish()?;
    Ok(flow)
}

#[test]
fn the_encoder_refuses_what_conntrack_cannot_hold() {
    let v4_v6 = tuple("10.0.0.1", "2001:db8::1", PROTO_UDP, PORTS);
    let v6 = tuple("2001:db8::2", "2001:db8::1", PROTO_UDP, PORTS);
    let v4 = udp_v4().original;
    let tcp_reply = tuple("10.0.0.2", "10.0.0.1", PROTO_TCP, PORTS);
    let gre_reply = tuple("10.0.0.2", "10.0.0.1", 47, L4::None);
    let mut tcp_info_on_udp = udp_v4();
    tcp_info_on_udp.tcp = Some(TcpInfo {
        state: 3,
        wscale_original: 0,
        wscale_reply: 0,
        flags_original: 0,
        flags_reply: 0,
    });
    let table: Vec<(&str, Flow, FlowError)> = vec![
        ("mixed in a tuple", flow(v4_v6, v6), FlowError::MixedFamily),
        ("mixed across tuples", flow(v4, v6), FlowError::MixedFamily),
        (
            "mixed protocols",
            flow(v4, tcp_reply),
            FlowError::MixedProto {
                original: PROTO_UDP,
                reply: PROTO_TCP,
            },
        ),
        (
            "mixed l4",
            flow(tuple("10.0.0.1", "10.0.0.2", 47, PORTS), gre_reply),
            FlowError::MixedL4,
        ),
        (
            "TCP info on UDP",
            tcp_info_on_udp,
            FlowError::TcpInfoNotTcp(PROTO_UDP),
        ),
        (
            "TCP without ports",
            flow(
                tuple("10.0.0.1", "10.0.0.2", PROTO_TCP, L4::None),
                tuple("10.0.0.2", "10.0.0.1", PROTO_TCP, L4::None),
            ),
            FlowError::L4Mismatch(PROTO_TCP),
        ),
        (
            "ICMP with ports",
            flow(
                tuple("10.0.0.1", "10.0.0.2", PROTO_ICMP, PORTS),
                tuple("10.0.0.2", "10.0.0.1", PROTO_ICMP, PORTS),
            ),
            FlowError::L4Mismatch(PROTO_ICMP),
        ),
        (
            "ICMP fields on UDP",
            flow(
                tuple("10.0.0.1", "10.0.0.2", PROTO_UDP, ECHO),
                tuple("10.0.0.2", "10.0.0.1", PROTO_UDP, ECHO),
            ),
            FlowError::L4Mismatch(PROTO_UDP),
        ),
        (
            "ICMPv6 over IPv4",
            flow(
                tuple("10.0.0.1", "10.0.0.2", PROTO_ICMPV6, ECHO),
                tuple("10.0.0.2", "10.0.0.1", PROTO_ICMPV6, ECHO),
            ),
            FlowError::IcmpFamily(PROTO_ICMPV6),
        ),
        (
            "ICMP over IPv6",
            flow(
                tuple("2001:db8::1", "2001:db8::2", PROTO_ICMP, ECHO),
                tuple("2001:db8::2", "2001:db8::1", PROTO_ICMP, ECHO),
            ),
            FlowError::IcmpFamily(PROTO_ICMP),
        ),
    ];
    for (name, flow, error) in table {
        assert_eq!(check_flow(&flow), Err(error), "{name}");
        assert_eq!(encoded(&flow), Err(error), "{name}");
    }
    assert_eq!(
        check_key(&FlowKey {
            original: v4_v6,
            zone: 0
        }),
        Err(FlowError::MixedFamily)
    );
}

#[test]
fn protocols_without_rules_take_ports_or_nothing() {
    let gre = flow(
        tuple("10.0.0.1", "10.0.0.2", 47, L4::None),
        tuple("10.0.0.2", "10.0.0.1", 47, L4::None),
    );
    let sctp = flow(
        tuple("2001:db8::1", "2001:db8::2", 132, PORTS),
        tuple("2001:db8::2", "2001:db8::1", 132, PORTS),
    );
    for flow in [gre, sctp] {
        let bytes = encoded(&flow).expect("valid flow");
        assert_eq!(bytes.len(), flow_len(&flow));
        assert_eq!(decoded(&bytes), Ok(flow));
    }
}

#[test]
fn the_decoder_refuses_bad_records() {
    let good = encoded(&udp_v4()).expect("valid flow");
    assert_eq!(good.len(), 6 + 12 + 12 + 12);
    let with = |at: usize, byte: u8| {
        let mut bytes = good.clone();
        bytes[at] = byte;
        bytes
    };
    assert_eq!(decoded(&with(0, 5)), Err(Malformed::Family(5)));
    assert_eq!(decoded(&with(2, 3)), Err(Malformed::L4Kind(3)));
    assert_eq!(decoded(&with(3, 0x02)), Err(Malformed::RecordFlags(0x02)));
    // ICMP with ports, TCP info announced on UDP (the record then also runs
    // short of the five bytes).
    assert_eq!(
        decoded(&with(1, PROTO_ICMP)),
        Err(Malformed::Flow(FlowError::L4Mismatch(PROTO_ICMP)))
    );
    let mut tcp_info_on_udp = with(3, FLAG_TCP_INFO);
    tcp_info_on_udp.extend_from_slice(&[3, 0, 0, 0, 0]);
    assert_eq!(
        decoded(&tcp_info_on_udp),
        Err(Malformed::Flow(FlowError::TcpInfoNotTcp(PROTO_UDP)))
    );
    assert_eq!(
        decoded(&with(3, FLAG_TCP_INFO)),
        Err(Malformed::Short("TCP info"))
    );
    // IPv6 family on IPv4-sized addresses: the record runs short.
    assert!(matches!(decoded(&with(0, 6)), Err(Malformed::Short(_))));
    for cut in 0..good.len() {
        assert!(
            matches!(decoded(&good[..cut]), Err(Malformed::Short(_))),
            "cut at {cut}"
        );
    }
}

#[test]
fn a_key_record_is_the_start_of_its_flow_record_and_has_no_flags() {
    let flow = udp_v4();
    let mut key = Vec::new();
    put_key(&mut key, &flow.key()).expect("valid key");
    assert_eq!(key.len(), key_len(&flow.key()));
    let full = encoded(&flow).expect("valid flow");
    assert_eq!(full[..key.len()], key[..]);
    let mut reader = Reader::new(&key);
    assert_eq!(read_key(&mut reader), Ok(flow.key()));
    key[3] = FLAG_TCP_INFO;
    let mut reader = Reader::new(&key);
    assert_eq!(
        read_key(&mut reader),
        Err(Malformed::RecordFlags(FLAG_TCP_INFO))
    );
}

#[test]
fn the_largest_record() {
    let mut flow = flow(
        tuple("2001:db8::1", "2001:db8::2", PROTO_TCP, PORTS),
        tuple("2001:db8::2", "2001:db8::1", PROTO_TCP, PORTS),
    );
    flow.tcp = Some(TcpInfo {
        state: 3,
        wscale_original: 7,
        wscale_reply: 7,
        flags_original: 0,
        flags_reply: 0,
    });
    assert_eq!(flow_len(&flow), MAX_FLOW_RECORD);
    assert_eq!(MAX_FLOW_RECORD, 95);
}

proptest! {
    #[test]
    fn flows_round_trip_in_their_announced_length(flow in strategies::flow()) {
        let bytes = encoded(&flow).expect("strategy makes valid flows");
        prop_assert_eq!(bytes.len(), flow_len(&flow));
        prop_assert!(bytes.len() <= MAX_FLOW_RECORD);
        prop_assert_eq!(decoded(&bytes), Ok(flow));
    }

    #[test]
    fn keys_round_trip_in_their_announced_length(key in strategies::key()) {
        let mut bytes = Vec::new();
        put_key(&mut bytes, &key).expect("strategy makes valid keys");
        prop_assert_eq!(bytes.len(), key_len(&key));
        let mut reader = Reader::new(&bytes);
        prop_assert_eq!(read_key(&mut reader), Ok(key));
        prop_assert!(reader.is_empty());
    }

    #[test]
    fn record_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let _ = decoded(&bytes);
        let _ = read_key(&mut Reader::new(&bytes));
    }
}
