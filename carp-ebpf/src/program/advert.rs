//! CARP advertisements: cheap checks, then the good ones to the agent.
//!
//! Accepted advertisements go to the agent through `CARP_ADVERTS` and are
//! then dropped: the agent is their only consumer, and the kernel would only
//! answer a unicast one with an ICMP protocol-unreachable.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use carp_common::{
    AdvertEvent, CARP_HEADER_LEN, Carpdev, FAMILY_INET, FAMILY_INET6, IPPROTO_CARP, Verdict,
};
use carp_ebpf::{CARP_GROUP_V4, CARP_GROUP_V6, check_carp_header, check_ipv4, check_ipv6};

use super::{CARP_ADVERTS, ETH_HEADER_LEN, carpdev, drop_counted, read, row, vhid_state};

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
    let carpdev = carpdev(ifindex);
    let total_len = u16::from_be_bytes([ip[2], ip[3]]);
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    let header_len = match check_ipv4(ip[0], total_len, frag, ip[8]) {
        // Bounded again for the verifier, which cannot see through ihl * 4.
        Ok(len) if len <= IPV4_MAX_HEADER_LEN => len,
        Ok(_) => return Some(drop_counted(row(carpdev, 0), Verdict::BadLen)),
        Err(verdict) => {
            let row = row_at(ctx, carpdev, ETH_HEADER_LEN + IPV4_MIN_HEADER_LEN);
            return Some(drop_counted(row, verdict));
        }
    };
    // Not `[0u8; 16]` and a copy: zeroing takes a call to memset (see
    // `vip_key`).
    let source = bytes16(
        u64::from_ne_bytes([ip[12], ip[13], ip[14], ip[15], 0, 0, 0, 0]),
        0,
    );
    let multicast = ip[16..20] == CARP_GROUP_V4;
    Some(advert(
        ctx,
        ifindex,
        carpdev,
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
    let carpdev = carpdev(ifindex);
    let carp_offset = ETH_HEADER_LEN + IPV6_HEADER_LEN;
    if let Err(verdict) = check_ipv6(u16::from_be_bytes([ip[4], ip[5]]), ip[7]) {
        return Some(drop_counted(row_at(ctx, carpdev, carp_offset), verdict));
    }
    let mut source = [0u8; 16];
    source.copy_from_slice(&ip[8..24]);
    let multicast = ip[24..40] == CARP_GROUP_V6;
    Some(advert(
        ctx,
        ifindex,
        carpdev,
        carp_offset,
        Origin {
            family: FAMILY_INET6,
            source,
            multicast,
        },
    ))
}

/// Sixteen bytes from two words in memory order, kept as two word stores.
#[inline(always)]
fn bytes16(low: u64, high: u64) -> [u8; 16] {
    // SAFETY: two words are sixteen bytes; any bytes are a valid array.
    unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>([low, high]) }
}

/// Where an advertisement came from.
struct Origin {
    family: u8,
    source: [u8; 16],
    multicast: bool,
}

/// Checks the CARP header at `offset` and hands a good one to the agent.
#[inline(always)]
fn advert(
    ctx: &XdpContext,
    ifindex: u32,
    carpdev: Option<Carpdev>,
    offset: usize,
    origin: Origin,
) -> u32 {
    let Some(header) = read::<[u8; CARP_HEADER_LEN]>(ctx, offset) else {
        return drop_counted(row_at(ctx, carpdev, offset), Verdict::BadLen);
    };
    let vhid = match check_carp_header(&header) {
        Ok(vhid) => vhid,
        Err(verdict) => return drop_counted(row(carpdev, header[1]), verdict),
    };
    let Some(state) = carpdev.and_then(|carpdev| vhid_state(&carpdev, vhid)) else {
        return drop_counted(row(carpdev, 0), Verdict::BadVhid);
    };
    let Some(mut entry) = CARP_ADVERTS.reserve::<AdvertEvent>(0) else {
        return drop_counted(state.counters, Verdict::RingFull);
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
    drop_counted(state.counters, Verdict::Accepted)
}

/// The counter row of the vhid the CARP header at `offset` names (that of
/// the carpdev where it is not configured): for counting a packet whose
/// header is incomplete or untrusted.
#[inline(always)]
fn row_at(ctx: &XdpContext, carpdev: Option<Carpdev>, offset: usize) -> u32 {
    row(
        carpdev,
        read::<[u8; 2]>(ctx, offset).map_or(0, |start| start[1]),
    )
}
