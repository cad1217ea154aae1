//! Kernel attributes → Flow on entries a 6.18 kernel dumped (golden bytes),
//! Flow → attributes → Flow for any flow (property), and every skip and
//! encode error.

use std::net::{Ipv4Addr, Ipv6Addr};

use netlink_packet_netfilter::conntrack::ConntrackAttribute;
use proptest::prelude::*;
use rtnetlink::packet_core::Emitable;

use super::parse::{Attributes, find};
use super::*;
use crate::sync::conntrack::uapi::*;
use crate::sync::flow::{Flow, L4, PROTO_ICMP, PROTO_TCP, PROTO_UDP, TcpInfo};

/// `CTA_*` attributes of dump entries, captured from `IPCTNL_MSG_CT_GET`
/// dumps on Linux 6.18 (entries made with `conntrack -I`), `nfgenmsg` removed.
///
/// `tcp 192.0.2.1:40000 -> 198.51.100.2:443 ESTABLISHED [ASSURED] mark=7 zone=3`
const GOLDEN_TCP: &str = "340001801400018008000100c000020108000200c63364021c0002800500010006000000060002009c4000000600030001bb0000340002801400018008000100c633640208000200c00002011c00028005000100060000000600020001bb0000060003009c4000000600120000030000080003000000000e080008000000000708000c000e5809b108000b0000000001080007000000012b300004802c000180050001000300000005000200000000000500030000000000060004000a000000060005000a0000001c001880080001000000000008000200000000000800030000000000";
/// `icmp 192.0.2.1 -> 198.51.100.2 echo id 4660 [SEEN_REPLY]`
const GOLDEN_ICMP: &str = "3c0001801400018008000100c000020108000200c63364022400028005000100010000000600040012340000050005000800000005000600000000003c0002801400018008000100c633640208000200c0000201240002800500010001000000060004001234000005000500000000000500060000000000080003000000000a080008000000000008000c006396269308000b0000000001080007000000001d1c001880080001000000000008000200000000000800030000000000";
/// `udp [2001:db8::1]:5353 -> [2001:db8::2]:53 [UNREPLIED]`
const GOLDEN_UDP6: &str = "4c0001802c0001801400030020010db80000000000000000000000011400040020010db80000000000000000000000021c00028005000100110000000600020014e9000006000300003500004c0002802c0001801400030020010db80000000000000000000000021400040020010db80000000000000000000000011c000280050001001100000006000200003500000600030014e900000800030000000008080008000000000008000c002f8b959308000b0000000001080007000000003b1c001880080001000000000008000200000000000800030000000000";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex"))
        .collect()
}

fn v4(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

fn emit(attributes: &[ConntrackAttribute]) -> Vec<u8> {
    let mut bytes = vec![0; attributes.buffer_len()];
    attributes.emit(&mut bytes);
    bytes
}

/// A netlink attribute in host byte order, padded.
fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
    let length = u16::try_from(4 + value.len()).expect("short");
    let mut bytes = length.to_ne_bytes().to_vec();
    bytes.extend_from_slice(&kind.to_ne_bytes());
    bytes.extend_from_slice(value);
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    bytes
}

fn nest(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    nla(kind | 0x8000, &parts.concat())
}

fn ports_tuple(kind: u16, src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[Vec<u8>]) -> Vec<u8> {
    let mut proto_parts = vec![nla(CTA_PROTO_NUM, &[proto])];
    proto_parts.extend_from_slice(l4);
    nest(
        kind,
        &[
            nest(
                CTA_TUPLE_IP,
                &[nla(CTA_IP_V4_SRC, &src), nla(CTA_IP_V4_DST, &dst)],
            ),
            nest(CTA_TUPLE_PROTO, &proto_parts),
        ],
    )
}

fn port(kind: u16, port: u16) -> Vec<u8> {
    nla(kind, &port.to_be_bytes())
}

/// A well-formed UDP entry's attributes, with `extra` appended.
fn udp_entry(extra: &[Vec<u8>]) -> Vec<u8> {
    let mut parts = vec![
        ports_tuple(
            CTA_TUPLE_ORIG,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            17,
            &[port(CTA_PROTO_SRC_PORT, 1000), port(CTA_PROTO_DST_PORT, 53)],
        ),
        ports_tuple(
            CTA_TUPLE_REPLY,
            [10, 0, 0, 2],
            [10, 0, 0, 1],
            17,
            &[port(CTA_PROTO_SRC_PORT, 53), port(CTA_PROTO_DST_PORT, 1000)],
        ),
        nla(CTA_STATUS, &8u32.to_be_bytes()),
        nla(CTA_TIMEOUT, &30u32.to_be_bytes()),
    ];
    parts.extend_from_slice(extra);
    parts.concat()
}

#[test]
fn reads_a_dumped_tcp_entry_with_zone_mark_and_tcp_state() {
    let flow = flow_from_attributes(&hex(GOLDEN_TCP)).expect("parses");
    let client = v4("192.0.2.1");
    let server = v4("198.51.100.2");
    assert_eq!(
        flow,
        Flow {
            original: Tuple {
                src: client,
                dst: server,
                proto: PROTO_TCP,
                l4: L4::Ports {
                    src: 40000,
                    dst: 443
                },
            },
            reply: Tuple {
                src: server,
                dst: client,
                proto: PROTO_TCP,
                l4: L4::Ports {
                    src: 443,
                    dst: 40000
                },
            },
            zone: 3,
            // CONFIRMED | ASSURED | SEEN_REPLY
            status: 0xe,
            timeout_secs: 299,
            mark: 7,
            tcp: Some(TcpInfo {
                state: 3,
                wscale_original: 0,
                wscale_reply: 0,
                // SACK_PERM | BE_LIBERAL, as `conntrack -I` creates entries
                flags_original: 0x0a,
                flags_reply: 0x0a,
            }),
        }
    );
    assert_eq!(
        key_from_attributes(&hex(GOLDEN_TCP)),
        Ok(flow.key()),
        "a DESTROY event's key"
    );
}

#[test]
fn reads_a_dumped_icmp_echo() {
    let flow = flow_from_attributes(&hex(GOLDEN_ICMP)).expect("parses");
    assert_eq!(
        flow.original.l4,
        L4::Icmp {
            id: 4660,
            kind: 8,
            code: 0
        }
    );
    assert_eq!(
        flow.reply.l4,
        L4::Icmp {
            id: 4660,
            kind: 0,
            code: 0
        }
    );
    assert_eq!(flow.original.proto, PROTO_ICMP);
    assert_eq!((flow.zone, flow.mark, flow.timeout_secs), (0, 0, 29));
    assert_eq!(flow.tcp, None);
}

#[test]
fn reads_a_dumped_ipv6_udp_entry() {
    let flow = flow_from_attributes(&hex(GOLDEN_UDP6)).expect("parses");
    let client: IpAddr = "2001:db8::1".parse().expect("an address");
    let server: IpAddr = "2001:db8::2".parse().expect("an address");
    assert_eq!(
        (flow.original.src, flow.original.dst, flow.reply.src),
        (client, server, server)
    );
    assert_eq!(flow.original.proto, PROTO_UDP);
    assert_eq!(flow.original.l4, L4::Ports { src: 5353, dst: 53 });
    // CONFIRMED only: UNREPLIED
    assert_eq!(flow.status, 0x8);
}

#[test]
fn a_tcp_event_without_protoinfo_has_no_tcp_state() {
    // An UPDATE for a mark change: ctnetlink leaves CTA_PROTOINFO out.
    let mut attributes = hex(GOLDEN_TCP);
    // CTA_PROTOINFO, nested, 0x30 bytes long
    let protoinfo_at = attributes
        .windows(4)
        .position(|header| header == [0x30, 0, 0x04, 0x80])
        .expect("the entry has CTA_PROTOINFO");
    attributes.drain(protoinfo_at..protoinfo_at + 0x30);
    let flow = flow_from_attributes(&attributes).expect("parses");
    assert_eq!(flow.tcp, None);
    assert_eq!(flow.mark, 7);
}

#[test]
fn absent_mark_and_zone_are_zero() {
    let flow = flow_from_attributes(&udp_entry(&[])).expect("parses");
    assert_eq!((flow.mark, flow.zone), (0, 0));
}

#[test]
fn entries_a_flow_cannot_hold_are_skipped_with_a_reason() {
    let sctp_like = |proto: u8, l4: &[Vec<u8>]| {
        [
            ports_tuple(CTA_TUPLE_ORIG, [1, 1, 1, 1], [2, 2, 2, 2], proto, l4),
            ports_tuple(CTA_TUPLE_REPLY, [2, 2, 2, 2], [1, 1, 1, 1], proto, l4),
            nla(CTA_STATUS, &8u32.to_be_bytes()),
            nla(CTA_TIMEOUT, &30u32.to_be_bytes()),
        ]
        .concat()
    };
    let ports = [port(CTA_PROTO_SRC_PORT, 1), port(CTA_PROTO_DST_PORT, 2)];
    let mixed = nest(
        CTA_TUPLE_ORIG,
        &[
            nest(
                CTA_TUPLE_IP,
                &[
                    nla(CTA_IP_V4_SRC, &[1, 1, 1, 1]),
                    nla(CTA_IP_V6_DST, &[0; 16]),
                ],
            ),
            nest(CTA_TUPLE_PROTO, &[nla(CTA_PROTO_NUM, &[17])]),
        ],
    );
    let directional_zone = nest(CTA_TUPLE_ORIG, &[nla(CTA_TUPLE_ZONE, &5u16.to_be_bytes())]);
    let mut truncated = udp_entry(&[]);
    truncated.truncate(truncated.len() - 2);
    let cases: Vec<(&str, Vec<u8>, Skip)> = vec![
        (
            "no original tuple",
            [nla(CTA_STATUS, &8u32.to_be_bytes())].concat(),
            Skip::Missing("CTA_TUPLE_ORIG"),
        ),
        ("SCTP", sctp_like(132, &ports), Skip::ProtocolState(132)),
        ("DCCP", sctp_like(33, &ports), Skip::ProtocolState(33)),
        (
            "an unknown layer-4 attribute",
            sctp_like(99, &[nla(12, &[0; 4])]),
            Skip::UnknownL4 {
                proto: 99,
                attribute: 12,
            },
        ),
        (
            "ICMP fields in part",
            sctp_like(1, &[nla(CTA_PROTO_ICMP_ID, &[0, 1])]),
            Skip::Malformed("CTA_TUPLE_PROTO"),
        ),
        (
            "one port",
            sctp_like(17, &[port(CTA_PROTO_SRC_PORT, 1)]),
            Skip::Malformed("CTA_TUPLE_PROTO"),
        ),
        ("mixed families", mixed, Skip::MixedFamilies),
        (
            "a zone for one direction",
            directional_zone,
            Skip::DirectionalZone,
        ),
        (
            "a short address",
            [nest(
                CTA_TUPLE_ORIG,
                &[nest(CTA_TUPLE_IP, &[nla(CTA_IP_V4_SRC, &[1, 2, 3])])],
            )]
            .concat(),
            Skip::Malformed("CTA_IP_V4_SRC"),
        ),
        (
            "a truncated attribute list",
            truncated,
            Skip::Malformed("attribute list"),
        ),
        (
            "a short status",
            udp_entry(&[nla(CTA_STATUS, &[1])]),
            Skip::Malformed("CTA_STATUS"),
        ),
        (
            "a TCP protoinfo without state",
            [
                ports_tuple(CTA_TUPLE_ORIG, [1, 1, 1, 1], [2, 2, 2, 2], 6, &ports),
                ports_tuple(CTA_TUPLE_REPLY, [2, 2, 2, 2], [1, 1, 1, 1], 6, &ports),
                nla(CTA_STATUS, &8u32.to_be_bytes()),
                nla(CTA_TIMEOUT, &30u32.to_be_bytes()),
                nest(
                    CTA_PROTOINFO,
                    &[nest(
                        CTA_PROTOINFO_TCP,
                        &[nla(CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, &[7])],
                    )],
                ),
            ]
            .concat(),
            Skip::Missing("CTA_PROTOINFO_TCP_STATE"),
        ),
    ];
    for (what, attributes, skip) in cases {
        assert_eq!(flow_from_attributes(&attributes), Err(skip), "{what}");
    }
}

#[test]
fn the_attribute_walk_stops_at_bad_lengths() {
    fn walk(bytes: &[u8]) -> Vec<Result<(u16, &[u8]), ()>> {
        Attributes::new(bytes).collect()
    }
    let good = nla(CTA_MARK, &[0, 0, 0, 1]);
    assert_eq!(walk(&good), [Ok((CTA_MARK, &[0u8, 0, 0, 1][..]))]);
    // Trailing bytes shorter than a header: padding.
    assert_eq!(walk(&[good.clone(), vec![0, 0]].concat()).len(), 1);
    // A length under the header size, or past the end.
    assert_eq!(walk(&[2, 0, 8, 0]), [Err(())]);
    assert_eq!(walk(&[40, 0, 8, 0, 1, 2]), [Err(())]);
    // The nested and byte-order flags are not part of the type.
    assert_eq!(walk(&[4, 0, 1, 0xc0]), [Ok((1, &[][..]))]);
}

// ---------------------------------------------------------------------------
// Flow → attributes

fn sample_tcp() -> Flow {
    flow_from_attributes(&hex(GOLDEN_TCP)).expect("parses")
}

/// What the kernel is told for `flow`: the replicable status bits plus
/// `CONFIRMED`, the copied TCP flags plus `BE_LIBERAL` when liberal.
fn as_sent(flow: &Flow, window: TcpWindow) -> Flow {
    let mut sent = *flow;
    sent.status = install_status(flow.status);
    if let Some(tcp) = sent.tcp.as_mut() {
        let extra = if window == TcpWindow::Liberal {
            IP_CT_TCP_FLAG_BE_LIBERAL
        } else {
            0
        };
        tcp.flags_original = tcp.flags_original & INSTALL_TCP_FLAGS | extra;
        tcp.flags_reply = tcp.flags_reply & INSTALL_TCP_FLAGS | extra;
    }
    sent
}

#[test]
fn status_bits_the_kernel_owns_are_not_sent_but_confirmed_is() {
    // Every status bit, and whether an install passes it on.
    let table: [(u32, &str, bool); 16] = [
        (1 << 0, "EXPECTED", false),
        (1 << 1, "SEEN_REPLY", true),
        (1 << 2, "ASSURED", true),
        (1 << 3, "CONFIRMED", true),
        (1 << 4, "SRC_NAT", false),
        (1 << 5, "DST_NAT", false),
        (1 << 6, "SEQ_ADJUST", false),
        (1 << 7, "SRC_NAT_DONE", false),
        (1 << 8, "DST_NAT_DONE", false),
        (1 << 9, "DYING", false),
        (1 << 10, "FIXED_TIMEOUT", false),
        (1 << 11, "TEMPLATE", false),
        (1 << 12, "UNTRACKED", false),
        (1 << 13, "HELPER", false),
        (1 << 14, "OFFLOAD", false),
        (1 << 15, "HW_OFFLOAD", false),
    ];
    for (bit, name, sent) in table {
        assert_eq!(install_status(bit) & bit != 0, sent, "{name}");
    }
    assert_eq!(install_status(0), IPS_CONFIRMED, "CONFIRMED always");
}

fn sent_status(flow: &Flow) -> Option<u32> {
    new_attributes(flow, TcpWindow::Liberal)
        .expect("encodes")
        .into_iter()
        .find_map(|attribute| match attribute {
            ConntrackAttribute::CtaStatus(status) => Some(status.bits()),
            _ => None,
        })
}

#[test]
fn a_nat_flow_goes_out_without_its_nat_bits() {
    let mut flow = sample_tcp();
    // SRC_NAT | SRC_NAT_DONE | CONFIRMED | ASSURED | SEEN_REPLY
    flow.status = 0x9e;
    assert_eq!(sent_status(&flow), Some(0x0e));
}

#[test]
fn tcp_flags_go_out_with_a_full_mask() {
    let mut flow = sample_tcp();
    let all = 0xff;
    flow.tcp = flow.tcp.map(|tcp| TcpInfo {
        flags_original: all,
        flags_reply: IP_CT_TCP_FLAG_WINDOW_SCALE,
        ..tcp
    });
    let flags = |window| {
        let attributes = new_attributes(&flow, window).expect("encodes");
        let bytes = emit(&attributes);
        let protoinfo = find(&bytes, CTA_PROTOINFO, "")
            .expect("walks")
            .expect("present");
        let tcp = find(protoinfo, CTA_PROTOINFO_TCP, "")
            .expect("walks")
            .expect("present");
        let original = find(tcp, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, "").expect("walks");
        let reply = find(tcp, CTA_PROTOINFO_TCP_FLAGS_REPLY, "").expect("walks");
        (original.map(<[u8]>::to_vec), reply.map(<[u8]>::to_vec))
    };
    // MAXACK_SET (0x20) and CHALLENGE_ACK (0x40) are dropped.
    assert_eq!(
        flags(TcpWindow::Track),
        (Some(vec![0x9f, 0xff]), Some(vec![0x01, 0xff]))
    );
    assert_eq!(
        flags(TcpWindow::Liberal),
        (Some(vec![0x9f, 0xff]), Some(vec![0x09, 0xff]))
    );
}

#[test]
fn the_default_zone_is_not_sent() {
    let mut flow = sample_tcp();
    let has_zone = |flow: &Flow| {
        find(
            &emit(&new_attributes(flow, TcpWindow::Liberal).expect("encodes")),
            CTA_ZONE,
            "",
        )
        .expect("walks")
        .map(<[u8]>::to_vec)
    };
    assert_eq!(has_zone(&flow), Some(vec![0, 3]));
    flow.zone = 0;
    assert_eq!(has_zone(&flow), None);
}

#[test]
fn flows_the_kernel_cannot_take_are_refused_before_sending() {
    let tcp = sample_tcp();
    let mut mixed = tcp;
    mixed.original.dst = "2001:db8::1".parse().expect("an address");
    let mut disagree = tcp;
    disagree.reply.proto = PROTO_UDP;
    let mut icmp_fields = tcp;
    icmp_fields.original.l4 = L4::Icmp {
        id: 1,
        kind: 8,
        code: 0,
    };
    let mut bad_state = tcp;
    bad_state.tcp = bad_state.tcp.map(|info| TcpInfo { state: 10, ..info });
    let mut no_state = tcp;
    no_state.tcp = None;
    let mut sctp = tcp;
    sctp.original.proto = PROTO_SCTP;
    sctp.reply.proto = PROTO_SCTP;
    let cases = [
        ("mixed families", mixed, EncodeError::MixedFamilies),
        ("tuples disagree", disagree, EncodeError::TuplesDisagree),
        (
            "ICMP fields on TCP",
            icmp_fields,
            EncodeError::IcmpFieldsForProtocol(PROTO_TCP),
        ),
        ("TCP state 10", bad_state, EncodeError::TcpState(10)),
        ("TCP without state", no_state, EncodeError::MissingTcpState),
        ("SCTP", sctp, EncodeError::ProtocolState(PROTO_SCTP)),
    ];
    for (what, flow, error) in cases {
        assert_eq!(
            new_attributes(&flow, TcpWindow::Liberal).err(),
            Some(error),
            "{what}"
        );
    }
    assert_eq!(
        key_attributes(&mixed.key()).err(),
        Some(EncodeError::MixedFamilies)
    );
}

fn address(v6: bool) -> impl Strategy<Value = IpAddr> {
    if v6 {
        any::<[u8; 16]>()
            .prop_map(|octets| IpAddr::V6(Ipv6Addr::from(octets)))
            .boxed()
    } else {
        any::<[u8; 4]>()
            .prop_map(|octets| IpAddr::V4(Ipv4Addr::from(octets)))
            .boxed()
    }
}

/// Any flow the encoder accepts: one family, one protocol, a key that fits
/// the protocol, TCP state for TCP only.
fn any_flow() -> impl Strategy<Value = Flow> {
    (
        any::<bool>(),
        prop::sample::select(vec![1u8, 6, 17, 47, 58, 136]),
    )
        .prop_flat_map(|(v6, proto)| {
            let l4 = match proto {
                1 | 58 => (any::<u16>(), any::<u8>(), any::<u8>())
                    .prop_map(|(id, kind, code)| L4::Icmp { id, kind, code })
                    .boxed(),
                47 => prop_oneof![
                    Just(L4::None),
                    any::<(u16, u16)>().prop_map(|(src, dst)| L4::Ports { src, dst })
                ]
                .boxed(),
                _ => any::<(u16, u16)>()
                    .prop_map(|(src, dst)| L4::Ports { src, dst })
                    .boxed(),
            };
            let tcp = (
                0..TCP_CONNTRACK_MAX,
                0..15u8,
                0..15u8,
                any::<u8>(),
                any::<u8>(),
            )
                .prop_map(|(state, wscale_original, wscale_reply, fo, fr)| TcpInfo {
                    state,
                    wscale_original,
                    wscale_reply,
                    flags_original: fo,
                    flags_reply: fr,
                });
            (
                address(v6),
                address(v6),
                l4.clone(),
                l4,
                (any::<u16>(), any::<u32>(), any::<u32>(), any::<u32>()),
                tcp,
            )
                .prop_map(
                    move |(src, dst, l4_out, l4_back, (zone, status, timeout_secs, mark), tcp)| {
                        Flow {
                            original: Tuple {
                                src,
                                dst,
                                proto,
                                l4: l4_out,
                            },
                            reply: Tuple {
                                src: dst,
                                dst: src,
                                proto,
                                l4: l4_back,
                            },
                            zone,
                            status,
                            timeout_secs,
                            mark,
                            tcp: (proto == PROTO_TCP).then_some(tcp),
                        }
                    },
                )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// What an install sends parses back to the flow, less exactly the bits
    /// the encoder documents that it strips or adds.
    #[test]
    fn an_install_carries_the_flow(flow in any_flow(), liberal in any::<bool>()) {
        let window = if liberal { TcpWindow::Liberal } else { TcpWindow::Track };
        let attributes = new_attributes(&flow, window).expect("encodes");
        let parsed = flow_from_attributes(&emit(&attributes)).expect("parses");
        prop_assert_eq!(parsed, as_sent(&flow, window));
    }

    #[test]
    fn a_delete_carries_the_key(flow in any_flow()) {
        let attributes = key_attributes(&flow.key()).expect("encodes");
        prop_assert_eq!(key_from_attributes(&emit(&attributes)), Ok(flow.key()));
    }

    /// Whatever the bytes, parsing returns; it never panics.
    #[test]
    fn parsing_garbage_does_not_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = flow_from_attributes(&bytes);
        let _ = key_from_attributes(&bytes);
    }

    /// Nor with a real entry damaged here and there (lengths, kinds, values
    /// deep in the nesting) or cut short.
    #[test]
    fn parsing_a_damaged_entry_does_not_panic(
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        keep in any::<prop::sample::Index>(),
    ) {
        let mut bytes = hex(GOLDEN_TCP);
        for (at, value) in damage {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        bytes.truncate(keep.index(bytes.len() + 1));
        let _ = flow_from_attributes(&bytes);
        let _ = key_from_attributes(&bytes);
    }
}
