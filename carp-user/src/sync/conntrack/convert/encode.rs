//! [`Flow`] → the attributes of an install, [`FlowKey`] → those of a GET
//! or DELETE, as the typed attributes of `netlink-packet-netfilter`.

use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple, Protocol, Status,
    Tuple as TupleAttribute,
};
use rtnetlink::packet_core::DefaultNla;

use super::{EncodeError, INSTALL_TCP_FLAGS, TcpWindow, family_of, install_status};
use crate::sync::conntrack::uapi::{
    CTA_PROTO_ICMP_CODE, CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMPV6_CODE,
    CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL,
    CTA_PROTOINFO_TCP_FLAGS_REPLY, CTA_ZONE, IP_CT_TCP_FLAG_BE_LIBERAL, PROTO_DCCP, PROTO_SCTP,
    TCP_CONNTRACK_MAX,
};
use crate::sync::flow::{Flow, FlowKey, L4, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, TcpInfo, Tuple};

/// The attributes of an `IPCTNL_MSG_CT_NEW` that creates `flow` (with
/// `NLM_F_CREATE`) or updates the entry with its original tuple (without
/// `NLM_F_EXCL`): tuples, zone, status, timeout, mark and, for TCP, state,
/// window scales and tracking flags.
pub fn new_attributes(
    flow: &Flow,
    window: TcpWindow,
) -> Result<Vec<ConntrackAttribute>, EncodeError> {
    let family = family_of(&flow.original)?;
    if family_of(&flow.reply)? != family || flow.reply.proto != flow.original.proto {
        return Err(EncodeError::TuplesDisagree);
    }
    if matches!(flow.original.proto, PROTO_SCTP | PROTO_DCCP) {
        return Err(EncodeError::ProtocolState(flow.original.proto));
    }
    let mut attributes = vec![
        ConntrackAttribute::CtaTupleOrig(tuple_attributes(&flow.original)?),
        ConntrackAttribute::CtaTupleReply(tuple_attributes(&flow.reply)?),
    ];
    attributes.extend(zone_attribute(flow.zone));
    attributes.push(ConntrackAttribute::CtaStatus(Status::from_bits_retain(
        install_status(flow.status),
    )));
    attributes.push(ConntrackAttribute::CtaTimeout(flow.timeout_secs));
    // Always sent, so an update to 0 clears a mark the peer had.
    attributes.push(ConntrackAttribute::CtaMark(flow.mark));
    if flow.original.proto == PROTO_TCP {
        let tcp = flow.tcp.ok_or(EncodeError::MissingTcpState)?;
        attributes.push(ConntrackAttribute::CtaProtoInfo(vec![ProtoInfo::TCP(
            tcp_attributes(tcp, window)?,
        )]));
    }
    Ok(attributes)
}

/// The attributes of a GET or DELETE of the entry `key` names.
pub fn key_attributes(key: &FlowKey) -> Result<Vec<ConntrackAttribute>, EncodeError> {
    let mut attributes = vec![ConntrackAttribute::CtaTupleOrig(tuple_attributes(
        &key.original,
    )?)];
    attributes.extend(zone_attribute(key.zone));
    Ok(attributes)
}

/// `CTA_ZONE` only when not the default zone: a kernel without
/// `CONFIG_NF_CONNTRACK_ZONES` refuses the attribute even with 0.
fn zone_attribute(zone: u16) -> Option<ConntrackAttribute> {
    (zone != 0)
        .then(|| ConntrackAttribute::Other(DefaultNla::new(CTA_ZONE, zone.to_be_bytes().to_vec())))
}

fn tuple_attributes(tuple: &Tuple) -> Result<Vec<TupleAttribute>, EncodeError> {
    family_of(tuple)?;
    let mut proto = vec![ProtoTuple::Protocol(Protocol::from(tuple.proto))];
    match tuple.l4 {
        L4::Ports { src, dst } => {
            proto.push(ProtoTuple::SourcePort(src));
            proto.push(ProtoTuple::DestinationPort(dst));
        }
        L4::Icmp { id, kind, code } => {
            let (id_kind, type_kind, code_kind) = match tuple.proto {
                PROTO_ICMP => (CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE),
                PROTO_ICMPV6 => (
                    CTA_PROTO_ICMPV6_ID,
                    CTA_PROTO_ICMPV6_TYPE,
                    CTA_PROTO_ICMPV6_CODE,
                ),
                other => return Err(EncodeError::IcmpFieldsForProtocol(other)),
            };
            // netlink-packet-netfilter has no variants for the ICMP fields.
            proto.push(ProtoTuple::Other(DefaultNla::new(
                id_kind,
                id.to_be_bytes().to_vec(),
            )));
            proto.push(ProtoTuple::Other(DefaultNla::new(type_kind, vec![kind])));
            proto.push(ProtoTuple::Other(DefaultNla::new(code_kind, vec![code])));
        }
        L4::None => {}
    }
    Ok(vec![
        TupleAttribute::Ip(vec![
            IPTuple::SourceAddress(tuple.src),
            IPTuple::DestinationAddress(tuple.dst),
        ]),
        TupleAttribute::Proto(proto),
    ])
}

/// `CTA_PROTOINFO_TCP` for an install. `nlattr_to_tcp` applies the flags
/// first and the window scales only when both directions then have
/// `IP_CT_TCP_FLAG_WINDOW_SCALE`, so scales without that flag are ignored,
/// as they were on the sender.
fn tcp_attributes(tcp: TcpInfo, window: TcpWindow) -> Result<Vec<ProtoInfoTCP>, EncodeError> {
    if tcp.state >= TCP_CONNTRACK_MAX {
        return Err(EncodeError::TcpState(tcp.state));
    }
    let extra = match window {
        TcpWindow::Liberal => IP_CT_TCP_FLAG_BE_LIBERAL,
        TcpWindow::Track => 0,
    };
    Ok(vec![
        ProtoInfoTCP::State(tcp.state),
        tcp_flags(
            CTA_PROTOINFO_TCP_FLAGS_ORIGINAL,
            (tcp.flags_original & INSTALL_TCP_FLAGS) | extra,
        ),
        tcp_flags(
            CTA_PROTOINFO_TCP_FLAGS_REPLY,
            (tcp.flags_reply & INSTALL_TCP_FLAGS) | extra,
        ),
        ProtoInfoTCP::OriginalWindowScale(tcp.wscale_original),
        ProtoInfoTCP::ReplyWindowScale(tcp.wscale_reply),
    ])
}

/// `struct nf_ct_tcp_flags { flags, mask }` with a full mask: the peer's
/// flags replace ours. (`TCPFlags` of netlink-packet-netfilter is
/// non-exhaustive without a constructor, so the two bytes go out raw.)
fn tcp_flags(kind: u16, flags: u8) -> ProtoInfoTCP {
    ProtoInfoTCP::Other(DefaultNla::new(kind, vec![flags, 0xff]))
}
