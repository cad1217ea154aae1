//! Conversion between a conntrack entry as ctnetlink carries it and a
//! [`Flow`], with no I/O:
//!
//! - kernel attributes (a dump entry or an event) → [`Flow`] or [`FlowKey`],
//!   or a typed [`Skip`] for an entry a `Flow` cannot represent;
//! - [`Flow`] → the attributes of an `IPCTNL_MSG_CT_NEW` that creates the
//!   entry on the peer or updates it there;
//! - [`FlowKey`] → the attributes of a GET or DELETE.
//!
//! Parsing walks the attribute bytes in place (no allocation per attribute):
//! a dump of a million entries parses at memory speed. Encoding builds the
//! typed attributes of `netlink-packet-netfilter`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple, Protocol, Status,
    Tuple as TupleAttribute,
};
use rtnetlink::packet_core::{DefaultNla, NLA_TYPE_MASK};

use super::uapi::{
    CTA_IP_V4_DST, CTA_IP_V4_SRC, CTA_IP_V6_DST, CTA_IP_V6_SRC, CTA_MARK, CTA_PROTO_DST_PORT,
    CTA_PROTO_ICMP_CODE, CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMPV6_CODE,
    CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTOINFO,
    CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, CTA_PROTOINFO_TCP_FLAGS_REPLY,
    CTA_PROTOINFO_TCP_STATE, CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, CTA_PROTOINFO_TCP_WSCALE_REPLY,
    CTA_STATUS, CTA_TIMEOUT, CTA_TUPLE_IP, CTA_TUPLE_ORIG, CTA_TUPLE_PROTO, CTA_TUPLE_REPLY,
    CTA_TUPLE_ZONE, CTA_ZONE, IP_CT_TCP_FLAG_BE_LIBERAL, IP_CT_TCP_FLAG_CLOSE_INIT,
    IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED, IP_CT_TCP_FLAG_SACK_PERM, IP_CT_TCP_FLAG_SIMULTANEOUS_OPEN,
    IP_CT_TCP_FLAG_WINDOW_SCALE, IPS_ASSURED, IPS_CONFIRMED, IPS_SEEN_REPLY, NFPROTO_IPV4,
    NFPROTO_IPV6, PROTO_DCCP, PROTO_SCTP, TCP_CONNTRACK_MAX,
};
use crate::sync::flow::{Flow, FlowKey, L4, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, TcpInfo, Tuple};

/// Why a kernel conntrack entry does not become a [`Flow`]. Never a panic:
/// the entry is counted and left out of the replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("{0} missing")]
    Missing(&'static str),
    #[error("{0} malformed")]
    Malformed(&'static str),
    #[error("tuple mixes IPv4 and IPv6 addresses")]
    MixedFamilies,
    /// A layer-4 tuple attribute that is neither ports nor ICMP fields: a
    /// protocol whose key `L4` cannot hold.
    #[error("protocol {proto}: layer-4 tuple attribute {attribute} is not known")]
    UnknownL4 { proto: u8, attribute: u16 },
    /// SCTP and DCCP keep per-protocol state (`CTA_PROTOINFO_SCTP/DCCP`)
    /// that `Flow` has no room for; an entry installed without it would be
    /// a wrong entry on the peer, so none is installed.
    #[error("protocol {0} keeps state a Flow cannot carry")]
    ProtocolState(u8),
    /// A zone that applies to one direction only (`CTA_TUPLE_ZONE`): `Flow`
    /// has one zone for both.
    #[error("per-direction zone (CTA_TUPLE_ZONE) is not replicated")]
    DirectionalZone,
}

/// Why a [`Flow`] or [`FlowKey`] cannot be sent to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("tuple mixes IPv4 and IPv6 addresses")]
    MixedFamilies,
    #[error("original and reply tuples differ in address family or protocol")]
    TuplesDisagree,
    #[error("protocol {0} with ICMP id/type/code")]
    IcmpFieldsForProtocol(u8),
    #[error("TCP state {0} out of range (at most {max})", max = TCP_CONNTRACK_MAX - 1)]
    TcpState(u8),
    /// Creating a TCP entry without its state would leave the peer an entry
    /// in state NONE; `Flow`s from dumps and events always carry it.
    #[error("TCP flow without its TCP state")]
    MissingTcpState,
    #[error("protocol {0} keeps state a Flow cannot carry")]
    ProtocolState(u8),
}

/// How an installed TCP flow is window-checked on the receiving kernel.
///
/// A flow created over ctnetlink has no window data (`td_maxwin == 0` in
/// both directions). Since Linux 5.x `tcp_in_window` then takes the first
/// packet of each direction as given ("mid-stream pickup") and learns the
/// windows from it. That fails in the failover case that matters: the first
/// segment the new master sees from a sender is often a retransmission of
/// old data while the receiver, which got newer data through the old
/// master, acknowledges beyond it; the receiver's ACK is then past what the
/// new master knows was sent, is marked INVALID, and a ruleset that drops
/// INVALID stalls the connection for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcpWindow {
    /// Set `IP_CT_TCP_FLAG_BE_LIBERAL` on both directions: out-of-window
    /// packets of the flow are accepted instead of marked INVALID (state
    /// changes are still tracked). What conntrackd does unless
    /// `TCPWindowTracking` is on; the cost is that replicated flows are no
    /// longer window-checked on the node that took them over.
    #[default]
    Liberal,
    /// Send the sender's tracking flags as they are and rely on the kernel's
    /// mid-stream pickup. Strict, but see the failure case above.
    Track,
}

/// The status bits an install copies from the flow.
///
/// `nf_ct_change_status_common` answers EBUSY to a request whose status
/// differs from the entry's in `EXPECTED`, `CONFIRMED` or `DYING`, or that
/// clears `SEEN_REPLY` or `ASSURED`; `__nf_ct_change_status` silently ignores
/// the other kernel-owned bits (`*_NAT`, `*_NAT_DONE`, `SEQ_ADJUST`,
/// `TEMPLATE`, `UNTRACKED`, `OFFLOAD`, `HW_OFFLOAD`). Left out on purpose:
/// - `EXPECTED`: only valid with a master tuple (`CTA_TUPLE_MASTER`), and
///   expectations are not replicated: a related flow becomes a plain flow.
/// - `SRC_NAT`, `DST_NAT` and their `_DONE` bits: they describe a NAT
///   binding, which is not replicated (no `CTA_NAT_SRC/DST`): the peer gets
///   the tuples without the binding.
/// - `SEQ_ADJUST`: needs the NAT sequence-adjust extension we do not send.
/// - `FIXED_TIMEOUT`: on the peer it would make every later update of the
///   timeout fail with EPERM.
/// - `HELPER`: helpers are not replicated.
/// - `DYING`, `TEMPLATE`, `UNTRACKED`, `OFFLOAD`, `HW_OFFLOAD`: the kernel's own.
pub const INSTALL_STATUS: u32 = IPS_SEEN_REPLY | IPS_ASSURED;

/// The `CTA_STATUS` of an install: the replicable bits and `CONFIRMED`.
///
/// `CONFIRMED` is the kernel's, but it must be sent: the entry being updated
/// is confirmed, and a new entry already is when `ctnetlink_create_conntrack`
/// applies `CTA_STATUS`, so a status without it "changes" `CONFIRMED` and the
/// kernel refuses the whole request with EBUSY (seen on 6.18;
/// `libnetfilter_conntrack` adds the bit for the same reason).
pub fn install_status(status: u32) -> u32 {
    status & INSTALL_STATUS | IPS_CONFIRMED
}

/// The TCP tracking flags an install copies from the sender. Left out:
/// `MAXACK_SET` (`td_maxack` itself is not replicated, so the flag would
/// vouch for a zero) and `CHALLENGE_ACK` (about the last packet only). The
/// mask sent is 0xff, so both are cleared on an existing entry too.
pub const INSTALL_TCP_FLAGS: u8 = IP_CT_TCP_FLAG_WINDOW_SCALE
    | IP_CT_TCP_FLAG_SACK_PERM
    | IP_CT_TCP_FLAG_CLOSE_INIT
    | IP_CT_TCP_FLAG_BE_LIBERAL
    | IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
    | IP_CT_TCP_FLAG_SIMULTANEOUS_OPEN;

/// The `nfgen_family` of a flow or key: the family of its original tuple.
pub fn family_of(tuple: &Tuple) -> Result<u8, EncodeError> {
    match (tuple.src, tuple.dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => Ok(NFPROTO_IPV4),
        (IpAddr::V6(_), IpAddr::V6(_)) => Ok(NFPROTO_IPV6),
        _ => Err(EncodeError::MixedFamilies),
    }
}

// ---------------------------------------------------------------------------
// Kernel → Flow

/// A conntrack entry (a dump entry or a NEW/UPDATE event) as a [`Flow`].
/// `attributes` are the bytes after the `nfgenmsg` header.
///
/// A TCP event that did not carry `CTA_PROTOINFO` (the kernel only sends it
/// when the TCP state changed) yields `tcp: None`; dumps always carry it.
pub fn flow_from_attributes(attributes: &[u8]) -> Result<Flow, Skip> {
    let entry = Entry::parse(attributes)?;
    let original = tuple(
        entry.original.ok_or(Skip::Missing("CTA_TUPLE_ORIG"))?,
        "CTA_TUPLE_ORIG",
    )?;
    let reply = tuple(
        entry.reply.ok_or(Skip::Missing("CTA_TUPLE_REPLY"))?,
        "CTA_TUPLE_REPLY",
    )?;
    if matches!(original.proto, PROTO_SCTP | PROTO_DCCP) {
        return Err(Skip::ProtocolState(original.proto));
    }
    let tcp = match entry.protoinfo {
        Some(protoinfo) if original.proto == PROTO_TCP => tcp_info(protoinfo)?,
        _ => None,
    };
    Ok(Flow {
        original,
        reply,
        zone: entry.zone.unwrap_or(0),
        status: entry.status.ok_or(Skip::Missing("CTA_STATUS"))?,
        timeout_secs: entry.timeout.ok_or(Skip::Missing("CTA_TIMEOUT"))?,
        // ctnetlink leaves CTA_MARK out of events when the mark is 0.
        mark: entry.mark.unwrap_or(0),
        tcp,
    })
}

/// The key of a conntrack entry (what a DESTROY event carries).
pub fn key_from_attributes(attributes: &[u8]) -> Result<FlowKey, Skip> {
    let entry = Entry::parse(attributes)?;
    let original = tuple(
        entry.original.ok_or(Skip::Missing("CTA_TUPLE_ORIG"))?,
        "CTA_TUPLE_ORIG",
    )?;
    Ok(FlowKey {
        original,
        zone: entry.zone.unwrap_or(0),
    })
}

/// The top-level attributes we read, as borrowed slices.
#[derive(Default)]
struct Entry<'a> {
    original: Option<&'a [u8]>,
    reply: Option<&'a [u8]>,
    protoinfo: Option<&'a [u8]>,
    status: Option<u32>,
    timeout: Option<u32>,
    mark: Option<u32>,
    zone: Option<u16>,
}

impl<'a> Entry<'a> {
    fn parse(attributes: &'a [u8]) -> Result<Self, Skip> {
        let mut entry = Entry::default();
        for attribute in Attributes::new(attributes) {
            let (kind, value) = attribute.map_err(|()| Skip::Malformed("attribute list"))?;
            match kind {
                CTA_TUPLE_ORIG => entry.original = Some(value),
                CTA_TUPLE_REPLY => entry.reply = Some(value),
                CTA_PROTOINFO => entry.protoinfo = Some(value),
                CTA_STATUS => entry.status = Some(be32(value, "CTA_STATUS")?),
                CTA_TIMEOUT => entry.timeout = Some(be32(value, "CTA_TIMEOUT")?),
                CTA_MARK => entry.mark = Some(be32(value, "CTA_MARK")?),
                CTA_ZONE => entry.zone = Some(be16(value, "CTA_ZONE")?),
                _ => {}
            }
        }
        Ok(entry)
    }
}

fn tuple(bytes: &[u8], what: &'static str) -> Result<Tuple, Skip> {
    let mut ip = None;
    let mut proto = None;
    for attribute in Attributes::new(bytes) {
        let (kind, value) = attribute.map_err(|()| Skip::Malformed(what))?;
        match kind {
            CTA_TUPLE_IP => ip = Some(value),
            CTA_TUPLE_PROTO => proto = Some(value),
            CTA_TUPLE_ZONE => return Err(Skip::DirectionalZone),
            _ => {}
        }
    }
    let (src, dst) = addresses(ip.ok_or(Skip::Missing("CTA_TUPLE_IP"))?)?;
    let (proto, l4) = layer4(proto.ok_or(Skip::Missing("CTA_TUPLE_PROTO"))?)?;
    Ok(Tuple {
        src,
        dst,
        proto,
        l4,
    })
}

fn addresses(bytes: &[u8]) -> Result<(IpAddr, IpAddr), Skip> {
    let mut src = None;
    let mut dst = None;
    for attribute in Attributes::new(bytes) {
        let (kind, value) = attribute.map_err(|()| Skip::Malformed("CTA_TUPLE_IP"))?;
        match kind {
            CTA_IP_V4_SRC => src = Some(ipv4(value, "CTA_IP_V4_SRC")?),
            CTA_IP_V4_DST => dst = Some(ipv4(value, "CTA_IP_V4_DST")?),
            CTA_IP_V6_SRC => src = Some(ipv6(value, "CTA_IP_V6_SRC")?),
            CTA_IP_V6_DST => dst = Some(ipv6(value, "CTA_IP_V6_DST")?),
            _ => {}
        }
    }
    let src = src.ok_or(Skip::Missing("source address"))?;
    let dst = dst.ok_or(Skip::Missing("destination address"))?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(Skip::MixedFamilies);
    }
    Ok((src, dst))
}

/// The fields of `CTA_TUPLE_PROTO`; which ones are present says what kind of
/// key the protocol has.
#[derive(Default)]
struct ProtoFields {
    num: Option<u8>,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    icmp_id: Option<u16>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
    unknown: Option<u16>,
}

fn layer4(bytes: &[u8]) -> Result<(u8, L4), Skip> {
    let mut fields = ProtoFields::default();
    for attribute in Attributes::new(bytes) {
        let (kind, value) = attribute.map_err(|()| Skip::Malformed("CTA_TUPLE_PROTO"))?;
        match kind {
            CTA_PROTO_NUM => fields.num = Some(u8_of(value, "CTA_PROTO_NUM")?),
            CTA_PROTO_SRC_PORT => fields.src_port = Some(be16(value, "CTA_PROTO_SRC_PORT")?),
            CTA_PROTO_DST_PORT => fields.dst_port = Some(be16(value, "CTA_PROTO_DST_PORT")?),
            CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => {
                fields.icmp_id = Some(be16(value, "ICMP id")?);
            }
            CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => {
                fields.icmp_type = Some(u8_of(value, "ICMP type")?);
            }
            CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => {
                fields.icmp_code = Some(u8_of(value, "ICMP code")?);
            }
            other => {
                fields.unknown.get_or_insert(other);
            }
        }
    }
    let proto = fields.num.ok_or(Skip::Missing("CTA_PROTO_NUM"))?;
    if let Some(attribute) = fields.unknown {
        return Err(Skip::UnknownL4 { proto, attribute });
    }
    let l4 = match fields {
        ProtoFields {
            icmp_id: None,
            icmp_type: None,
            icmp_code: None,
            src_port: None,
            dst_port: None,
            ..
        } => L4::None,
        ProtoFields {
            icmp_id: None,
            icmp_type: None,
            icmp_code: None,
            src_port: Some(src),
            dst_port: Some(dst),
            ..
        } => L4::Ports { src, dst },
        ProtoFields {
            icmp_id: Some(id),
            icmp_type: Some(kind),
            icmp_code: Some(code),
            src_port: None,
            dst_port: None,
            ..
        } => L4::Icmp { id, kind, code },
        _ => return Err(Skip::Malformed("CTA_TUPLE_PROTO")),
    };
    Ok((proto, l4))
}

fn tcp_info(protoinfo: &[u8]) -> Result<Option<TcpInfo>, Skip> {
    let Some(tcp) = find(protoinfo, CTA_PROTOINFO_TCP, "CTA_PROTOINFO")? else {
        return Ok(None);
    };
    let mut state = None;
    let mut info = TcpInfo {
        state: 0,
        wscale_original: 0,
        wscale_reply: 0,
        flags_original: 0,
        flags_reply: 0,
    };
    for attribute in Attributes::new(tcp) {
        let (kind, value) = attribute.map_err(|()| Skip::Malformed("CTA_PROTOINFO_TCP"))?;
        match kind {
            CTA_PROTOINFO_TCP_STATE => state = Some(u8_of(value, "TCP state")?),
            CTA_PROTOINFO_TCP_WSCALE_ORIGINAL => {
                info.wscale_original = u8_of(value, "TCP wscale")?;
            }
            CTA_PROTOINFO_TCP_WSCALE_REPLY => info.wscale_reply = u8_of(value, "TCP wscale")?,
            // `struct nf_ct_tcp_flags { flags, mask }`: the kernel dumps the
            // flags with a zero mask.
            CTA_PROTOINFO_TCP_FLAGS_ORIGINAL => info.flags_original = u8_of(value, "TCP flags")?,
            CTA_PROTOINFO_TCP_FLAGS_REPLY => info.flags_reply = u8_of(value, "TCP flags")?,
            _ => {}
        }
    }
    info.state = state.ok_or(Skip::Missing("CTA_PROTOINFO_TCP_STATE"))?;
    Ok(Some(info))
}

/// The value of the first attribute of `kind` in `bytes`.
fn find<'a>(bytes: &'a [u8], kind: u16, what: &'static str) -> Result<Option<&'a [u8]>, Skip> {
    for attribute in Attributes::new(bytes) {
        let (found, value) = attribute.map_err(|()| Skip::Malformed(what))?;
        if found == kind {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

fn u8_of(value: &[u8], what: &'static str) -> Result<u8, Skip> {
    value.first().copied().ok_or(Skip::Malformed(what))
}

fn be16(value: &[u8], what: &'static str) -> Result<u16, Skip> {
    let bytes: [u8; 2] = value
        .get(..2)
        .and_then(|b| b.try_into().ok())
        .ok_or(Skip::Malformed(what))?;
    Ok(u16::from_be_bytes(bytes))
}

fn be32(value: &[u8], what: &'static str) -> Result<u32, Skip> {
    let bytes: [u8; 4] = value
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(Skip::Malformed(what))?;
    Ok(u32::from_be_bytes(bytes))
}

fn ipv4(value: &[u8], what: &'static str) -> Result<IpAddr, Skip> {
    let octets: [u8; 4] = value.try_into().map_err(|_| Skip::Malformed(what))?;
    Ok(IpAddr::V4(Ipv4Addr::from(octets)))
}

fn ipv6(value: &[u8], what: &'static str) -> Result<IpAddr, Skip> {
    let octets: [u8; 16] = value.try_into().map_err(|_| Skip::Malformed(what))?;
    Ok(IpAddr::V6(Ipv6Addr::from(octets)))
}

/// Netlink attributes (`struct nlattr`: u16 length, u16 type, value padded
/// to 4 bytes) in host byte order, walked in place. Yields `Err(())` once
/// and stops at a length that does not fit.
pub(super) struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Attributes<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Result<(u16, &'a [u8]), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        // Trailing bytes shorter than a header are alignment padding.
        let header = self.rest.get(..4)?;
        let length = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        let kind = u16::from_ne_bytes([header[2], header[3]]) & NLA_TYPE_MASK;
        let Some(value) = self.rest.get(4..length).filter(|_| length >= 4) else {
            self.rest = &[];
            return Some(Err(()));
        };
        self.rest = self.rest.get(length.next_multiple_of(4)..).unwrap_or(&[]);
        Some(Ok((kind, value)))
    }
}

// ---------------------------------------------------------------------------
// Flow → kernel

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

#[cfg(test)]
mod tests;
