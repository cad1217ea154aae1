//! CARP advertisements: cheap checks, then the good ones to the agent.
//!
//! Accepted advertisements go to the agent through `CARP_ADVERTS` and are
//! then dropped: the agent is their only consumer, and the kernel would only
//! answer a unicast one with an ICMP protocol-unreachable.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use carp_common::{AdvertEvent, CARP_HEADER_LEN, FAMILY_INET, FAMILY_INET6, IPPROTO_CARP, Verdict};
use carp_ebpf::{CARP_GROUP_V4, CARP_GROUP_V6, check_carp_header, check_ipv4, check_ipv6};

use super::{CARP_ADVERTS, ETH_HEADER_LEN, drop_counted, read, vhid_state};

const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV4_MAX_HEADER_LEN: usize = 60;
const IPV6_HEADER_LEN: usize = 40;

/// The verdict for an IPv4 CARP packet; None when it is not CARP.
#[inline(always)]
pub fn ipv4(ctx: &XdpContext, ifindex: u32) -> Option<u32> {
    let ip = read::<[u8; IPV4_MIN_HEADER_LEN]>(ctx, ETH_HEADER_LEN)?;
    if ip[9] != IPPROTO_CARP {
        return None;
    }
    let total_len = u16::from_be_bytes([ip[2], ip[3]]);
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    let header_len = match check_ipv4(ip[0], total_len, frag, ip[8]) {
        // Bounded again for the verifier, which cannot see through ihl * 4.
        Ok(len) if len <= IPV4_MAX_HEADER_LEN => len,
        Ok(_) => return Some(drop_counted(ifindex, 0, Verdict::BadLen)),
        Err(verdict) => {
            let vhid = vhid_at(ctx, ifindex, ETH_HEADER_LEN + IPV4_MIN_HEADER_LEN);
            return Some(drop_counted(ifindex, vhid, verdict));
        }
    };
    let mut source = [0u8; 16];
    source[..4].copy_from_slice(&ip[12..16]);
    let multicast = ip[16..20] == CARP_GROUP_V4;
    Some(advert(
        ctx,
        ifindex,
        ETH_HEADER_LEN + header_len,
        Origin {
            family: FAMILY_INET,
            source,
            multicast,
        },
    ))
}

/// The verdict for an IPv6 CARP packet; None when it is not CARP.
#[inline(always)]
pub fn ipv6(ctx: &XdpContext, ifindex: u32) -> Option<u32> {
    let ip = read::<[u8; IPV6_HEADER_LEN]>(ctx, ETH_HEADER_LEN)?;
    if ip[6] != IPPROTO_CARP {
        return None;
    }
    let carp_offset = ETH_HEADER_LEN + IPV6_HEADER_LEN;
    if let Err(verdict) = check_ipv6(u16::from_be_bytes([ip[4], ip[5]]), ip[7]) {
        return Some(drop_counted(
            ifindex,
            vhid_at(ctx, ifindex, carp_offset),
            verdict,
        ));
    }
    let mut source = [0u8; 16];
    source.copy_from_slice(&ip[8..24]);
    let multicast = ip[24..40] == CARP_GROUP_V6;
    Some(advert(
        ctx,
        ifindex,
        carp_offset,
        Origin {
            family: FAMILY_INET6,
            source,
            multicast,
        },
    ))
}

/// Where an advertisement came from.
struct Origin {
    family: u8,
    source: [u8; 16],
    multicast: bool,
}

/// Checks the CARP header at `offset` and hands a good one to the agent.
#[inline(always)]
fn advert(ctx: &XdpContext, ifindex: u32, offset: usize, origin: Origin) -> u32 {
    let Some(header) = read::<[u8; CARP_HEADER_LEN]>(ctx, offset) else {
        return drop_counted(ifindex, vhid_at(ctx, ifindex, offset), Verdict::BadLen);
    };
    let vhid = match check_carp_header(&header) {
        Ok(vhid) => vhid,
        Err(verdict) => return drop_counted(ifindex, configured_vhid(ifindex, header[1]), verdict),
    };
    if configured_vhid(ifindex, vhid) == 0 {
        return drop_counted(ifindex, 0, Verdict::BadVhid);
    }
    let Some(mut entry) = CARP_ADVERTS.reserve::<AdvertEvent>(0) else {
        return drop_counted(ifindex, vhid, Verdict::RingFull);
    };
    entry.write(AdvertEvent {
        // SAFETY: a helper without arguments or side effects.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        ifindex,
        family: origin.family,
        multicast: u8::from(origin.multicast),
        pad: [0; 2],
        source: origin.source,
        header,
        pad2: [0; 4],
    });
    entry.submit(0);
    drop_counted(ifindex, vhid, Verdict::Accepted)
}

/// The configured vhid named by the CARP header at `offset`, else 0: for
/// counting a packet whose header is incomplete or untrusted.
#[inline(always)]
fn vhid_at(ctx: &XdpContext, ifindex: u32, offset: usize) -> u8 {
    read::<[u8; 2]>(ctx, offset).map_or(0, |start| configured_vhid(ifindex, start[1]))
}

/// `vhid` if it is configured on `ifindex`, else 0: counters are keyed only
/// by configured vhids, so nobody can grow the map by spraying vhids.
#[inline(always)]
fn configured_vhid(ifindex: u32, vhid: u8) -> u8 {
    if vhid_state(ifindex, vhid).is_some() {
        vhid
    } else {
        0
    }
}
