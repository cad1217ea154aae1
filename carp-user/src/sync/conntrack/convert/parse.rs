//! Kernel attributes → [`Flow`] / [`FlowKey`], walking the bytes in place.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rtnetlink::packet_core::NLA_TYPE_MASK;

use super::Skip;
use crate::sync::conntrack::uapi::{
    CTA_IP_V4_DST, CTA_IP_V4_SRC, CTA_IP_V6_DST, CTA_IP_V6_SRC, CTA_MARK, CTA_PROTO_DST_PORT,
    CTA_PROTO_ICMP_CODE, CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMPV6_CODE,
    CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTOINFO,
    CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, CTA_PROTOINFO_TCP_FLAGS_REPLY,
    CTA_PROTOINFO_TCP_STATE, CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, CTA_PROTOINFO_TCP_WSCALE_REPLY,
    CTA_STATUS, CTA_TIMEOUT, CTA_TUPLE_IP, CTA_TUPLE_ORIG, CTA_TUPLE_PROTO, CTA_TUPLE_REPLY,
    CTA_TUPLE_ZONE, CTA_ZONE, PROTO_DCCP, PROTO_SCTP,
};
use crate::sync::flow::{Flow, FlowKey, L4, PROTO_TCP, TcpInfo, Tuple};

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
pub(super) fn find<'a>(
    bytes: &'a [u8],
    kind: u16,
    what: &'static str,
) -> Result<Option<&'a [u8]>, Skip> {
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
pub(in crate::sync::conntrack) struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Attributes<'a> {
    pub(in crate::sync::conntrack) fn new(bytes: &'a [u8]) -> Self {
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
