//! Flow and key records (layout in the module comment of `wire`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::reader::Reader;
use super::{FlowError, Malformed};
use crate::sync::flow::{Flow, FlowKey, L4, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::sync::{TcpInfo, Tuple};

const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;
const L4_NONE: u8 = 0;
const L4_PORTS: u8 = 1;
const L4_ICMP: u8 = 2;
/// Record flags bit 0: five bytes of TCP info end the record.
const FLAG_TCP_INFO: u8 = 0x01;

/// Family, proto, l4 kind, flags, zone.
const HEAD_LEN: usize = 6;
const L4_LEN: usize = 4;
const META_LEN: usize = 12;
const TCP_INFO_LEN: usize = 5;
/// The longest flow record: IPv6, ports, TCP info.
pub const MAX_FLOW_RECORD: usize = HEAD_LEN + 4 * 16 + 2 * L4_LEN + META_LEN + TCP_INFO_LEN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    const fn address_len(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }
}

const fn l4_code(l4: L4) -> u8 {
    match l4 {
        L4::None => L4_NONE,
        L4::Ports { .. } => L4_PORTS,
        L4::Icmp { .. } => L4_ICMP,
    }
}

const fn l4_len(l4: L4) -> usize {
    match l4 {
        L4::None => 0,
        L4::Ports { .. } | L4::Icmp { .. } => L4_LEN,
    }
}

/// The one family of a tuple's two addresses.
fn tuple_family(tuple: &Tuple) -> Result<Family, FlowError> {
    let family = Family::of(tuple.src);
    if Family::of(tuple.dst) == family {
        Ok(family)
    } else {
        Err(FlowError::MixedFamily)
    }
}

/// What conntrack can hold: ICMP and `ICMPv6` (each on its own family) track
/// id/type/code and nothing else does; TCP and UDP always have ports; other
/// protocols have ports (SCTP, DCCP, UDP-Lite) or addresses only (GRE, ESP).
fn check_l4(family: Family, proto: u8, l4: L4) -> Result<(), FlowError> {
    let icmp_family = match proto {
        PROTO_ICMP => Some(Family::V4),
        PROTO_ICMPV6 => Some(Family::V6),
        _ => None,
    };
    match (icmp_family, l4) {
        (Some(expected), L4::Icmp { .. }) if expected == family => Ok(()),
        (Some(_), L4::Icmp { .. }) => Err(FlowError::IcmpFamily(proto)),
        (Some(_), _) | (None, L4::Icmp { .. }) => Err(FlowError::L4Mismatch(proto)),
        (None, L4::None) if proto == PROTO_TCP || proto == PROTO_UDP => {
            Err(FlowError::L4Mismatch(proto))
        }
        (None, L4::None | L4::Ports { .. }) => Ok(()),
    }
}

fn key_family(key: &FlowKey) -> Result<Family, FlowError> {
    let family = tuple_family(&key.original)?;
    check_l4(family, key.original.proto, key.original.l4)?;
    Ok(family)
}

/// Whether a delete for `key` can be written (and would be accepted).
pub fn check_key(key: &FlowKey) -> Result<(), FlowError> {
    key_family(key).map(|_| ())
}

/// Whether `flow` can be written (and would be accepted): one family, one
/// protocol and one layer-4 kind for both tuples, protocol and layer 4 as
/// conntrack has them, TCP info on TCP only.
pub fn check_flow(flow: &Flow) -> Result<(), FlowError> {
    flow_family(flow).map(|_| ())
}

fn flow_family(flow: &Flow) -> Result<Family, FlowError> {
    let family = key_family(&flow.key())?;
    if tuple_family(&flow.reply)? != family {
        return Err(FlowError::MixedFamily);
    }
    if flow.reply.proto != flow.original.proto {
        return Err(FlowError::MixedProto {
            original: flow.original.proto,
            reply: flow.reply.proto,
        });
    }
    if l4_code(flow.reply.l4) != l4_code(flow.original.l4) {
        return Err(FlowError::MixedL4);
    }
    if flow.tcp.is_some() && flow.original.proto != PROTO_TCP {
        return Err(FlowError::TcpInfoNotTcp(flow.original.proto));
    }
    Ok(family)
}

fn tuple_len(tuple: &Tuple) -> usize {
    2 * Family::of(tuple.src).address_len() + l4_len(tuple.l4)
}

/// Bytes of `key`'s record (not checked).
pub(super) fn key_len(key: &FlowKey) -> usize {
    HEAD_LEN + tuple_len(&key.original)
}

/// Bytes of `flow`'s record (not checked).
pub(super) fn flow_len(flow: &Flow) -> usize {
    let tcp = if flow.tcp.is_some() { TCP_INFO_LEN } else { 0 };
    HEAD_LEN + tuple_len(&flow.original) + tuple_len(&flow.reply) + META_LEN + tcp
}

fn put_head(out: &mut Vec<u8>, family: Family, key: &FlowKey, flags: u8) {
    out.push(match family {
        Family::V4 => FAMILY_V4,
        Family::V6 => FAMILY_V6,
    });
    out.push(key.original.proto);
    out.push(l4_code(key.original.l4));
    out.push(flags);
    out.extend_from_slice(&key.zone.to_be_bytes());
}

/// Addresses and layer 4 of a checked tuple.
fn put_tuple(out: &mut Vec<u8>, tuple: &Tuple) {
    for address in [tuple.src, tuple.dst] {
        match address {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    match tuple.l4 {
        L4::None => {}
        L4::Ports { src, dst } => {
            out.extend_from_slice(&src.to_be_bytes());
            out.extend_from_slice(&dst.to_be_bytes());
        }
        L4::Icmp { id, kind, code } => {
            out.extend_from_slice(&id.to_be_bytes());
            out.push(kind);
            out.push(code);
        }
    }
}

pub(super) fn put_key(out: &mut Vec<u8>, key: &FlowKey) -> Result<(), FlowError> {
    let family = key_family(key)?;
    put_head(out, family, key, 0);
    put_tuple(out, &key.original);
    Ok(())
}

pub(super) fn put_flow(out: &mut Vec<u8>, flow: &Flow) -> Result<(), FlowError> {
    let family = flow_family(flow)?;
    let flags = if flow.tcp.is_some() { FLAG_TCP_INFO } else { 0 };
    put_head(out, family, &flow.key(), flags);
    put_tuple(out, &flow.original);
    put_tuple(out, &flow.reply);
    out.extend_from_slice(&flow.status.to_be_bytes());
    out.extend_from_slice(&flow.timeout_secs.to_be_bytes());
    out.extend_from_slice(&flow.mark.to_be_bytes());
    if let Some(tcp) = flow.tcp {
        out.extend_from_slice(&[
            tcp.state,
            tcp.wscale_original,
            tcp.wscale_reply,
            tcp.flags_original,
            tcp.flags_reply,
        ]);
    }
    Ok(())
}

/// The head of a record as read: what both tuples share.
struct Head {
    family: Family,
    proto: u8,
    l4: u8,
    flags: u8,
    zone: u16,
}

fn read_head(reader: &mut Reader<'_>) -> Result<Head, Malformed> {
    let family = match reader.u8("record family")? {
        FAMILY_V4 => Family::V4,
        FAMILY_V6 => Family::V6,
        other => return Err(Malformed::Family(other)),
    };
    let proto = reader.u8("record protocol")?;
    let l4 = reader.u8("record l4 kind")?;
    if !matches!(l4, L4_NONE | L4_PORTS | L4_ICMP) {
        return Err(Malformed::L4Kind(l4));
    }
    let flags = reader.u8("record flags")?;
    let zone = reader.u16("record zone")?;
    Ok(Head {
        family,
        proto,
        l4,
        flags,
        zone,
    })
}

fn read_address(reader: &mut Reader<'_>, family: Family) -> Result<IpAddr, Malformed> {
    Ok(match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(reader.array::<4>("IPv4 address")?)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(reader.array::<16>("IPv6 address")?)),
    })
}

fn read_tuple(reader: &mut Reader<'_>, head: &Head) -> Result<Tuple, Malformed> {
    let src = read_address(reader, head.family)?;
    let dst = read_address(reader, head.family)?;
    let l4 = match head.l4 {
        L4_PORTS => L4::Ports {
            src: reader.u16("source port")?,
            dst: reader.u16("destination port")?,
        },
        L4_ICMP => L4::Icmp {
            id: reader.u16("ICMP id")?,
            kind: reader.u8("ICMP type")?,
            code: reader.u8("ICMP code")?,
        },
        _ => L4::None,
    };
    Ok(Tuple {
        src,
        dst,
        proto: head.proto,
        l4,
    })
}

pub(super) fn read_key(reader: &mut Reader<'_>) -> Result<FlowKey, Malformed> {
    let head = read_head(reader)?;
    if head.flags != 0 {
        return Err(Malformed::RecordFlags(head.flags));
    }
    let key = FlowKey {
        original: read_tuple(reader, &head)?,
        zone: head.zone,
    };
    check_key(&key)?;
    Ok(key)
}

pub(super) fn read_flow(reader: &mut Reader<'_>) -> Result<Flow, Malformed> {
    let head = read_head(reader)?;
    if head.flags & !FLAG_TCP_INFO != 0 {
        return Err(Malformed::RecordFlags(head.flags));
    }
    let original = read_tuple(reader, &head)?;
    let reply = read_tuple(reader, &head)?;
    let status = reader.u32("status")?;
    let timeout_secs = reader.u32("timeout")?;
    let mark = reader.u32("mark")?;
    let tcp = if head.flags & FLAG_TCP_INFO == 0 {
        None
    } else {
        let [
            state,
            wscale_original,
            wscale_reply,
            flags_original,
            flags_reply,
        ] = reader.array("TCP info")?;
        Some(TcpInfo {
            state,
            wscale_original,
            wscale_reply,
            flags_original,
            flags_reply,
        })
    };
    let flow = Flow {
        original,
        reply,
        zone: head.zone,
        status,
        timeout_secs,
        mark,
        tcp,
    };
    check_flow(&flow)?;
    Ok(flow)
}

#[cfg(test)]
mod tests;
