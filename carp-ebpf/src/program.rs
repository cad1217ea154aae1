//! The XDP entry point, its maps and its one bounds-checked packet reader.
//!
//! Every CARP packet (IPv4 protocol 112, IPv6 next header 112) gets exactly
//! one verdict, counted once in `CARP_COUNTERS`. Accepted advertisements go
//! to the agent through `CARP_ADVERTS` and are then dropped: the agent is
//! their only consumer, and the kernel would only answer a unicast one with
//! an ICMP protocol-unreachable. Everything that is not CARP passes untouched.
//!
//! Helpers are inlined: BPF calls take at most five register arguments.

use aya_ebpf::{
    bindings::{BPF_NOEXIST, xdp_action},
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{HashMap, PerCpuHashMap, RingBuf},
    programs::XdpContext,
};
use carp_common::{
    ADVERT_RING_BYTES, AdvertEvent, CARP_HEADER_LEN, CounterKey, FAMILY_INET, FAMILY_INET6,
    IPPROTO_CARP, MAX_COUNTER_KEYS, MAX_VHIDS, Verdict, VhidConfig, VhidKey,
};
use carp_ebpf::{CARP_GROUP_V4, CARP_GROUP_V6, check_carp_header, check_ipv4, check_ipv6};

/// Configured (carpdev, vhid) pairs. Written by the agent, read here.
#[map(name = "CARP_VHIDS")]
static CARP_VHIDS: HashMap<VhidKey, VhidConfig> = HashMap::with_max_entries(MAX_VHIDS, 0);

/// Packets per (carpdev, vhid, verdict). Written here, summed by the agent.
#[map(name = "CARP_COUNTERS")]
static CARP_COUNTERS: PerCpuHashMap<CounterKey, u64> =
    PerCpuHashMap::with_max_entries(MAX_COUNTER_KEYS, 0);

/// Accepted advertisements. Written here, read by the agent.
#[map(name = "CARP_ADVERTS")]
static CARP_ADVERTS: RingBuf = RingBuf::with_byte_size(ADVERT_RING_BYTES, 0);

const ETH_HEADER_LEN: usize = 14;
const ETHERTYPE_OFFSET: usize = 12;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV4_MAX_HEADER_LEN: usize = 60;
const IPV6_HEADER_LEN: usize = 40;

#[xdp]
pub fn carp(ctx: XdpContext) -> u32 {
    try_carp(&ctx)
}

#[inline(always)]
fn try_carp(ctx: &XdpContext) -> u32 {
    // The program is attached only to carpdevs, whose index fits 32 bits.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "ifindex is 32 bits in the kernel"
    )]
    let ifindex = ctx.ingress_ifindex() as u32;
    let Some(ethertype) = read::<[u8; 2]>(ctx, ETHERTYPE_OFFSET) else {
        return xdp_action::XDP_PASS;
    };
    match u16::from_be_bytes(ethertype) {
        ETH_P_IPV4 => ipv4(ctx, ifindex),
        ETH_P_IPV6 => ipv6(ctx, ifindex),
        _ => xdp_action::XDP_PASS,
    }
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, ifindex: u32) -> u32 {
    let Some(ip) = read::<[u8; IPV4_MIN_HEADER_LEN]>(ctx, ETH_HEADER_LEN) else {
        return xdp_action::XDP_PASS;
    };
    if ip[9] != IPPROTO_CARP {
        return xdp_action::XDP_PASS;
    }
    let total_len = u16::from_be_bytes([ip[2], ip[3]]);
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    let header_len = match check_ipv4(ip[0], total_len, frag, ip[8]) {
        // Bounded again for the verifier, which cannot see through ihl * 4.
        Ok(len) if len <= IPV4_MAX_HEADER_LEN => len,
        Ok(_) => return drop_counted(ifindex, 0, Verdict::BadLen),
        Err(verdict) => {
            let vhid = vhid_at(ctx, ifindex, ETH_HEADER_LEN + IPV4_MIN_HEADER_LEN);
            return drop_counted(ifindex, vhid, verdict);
        }
    };
    let mut source = [0u8; 16];
    source[..4].copy_from_slice(&ip[12..16]);
    let multicast = ip[16..20] == CARP_GROUP_V4;
    advert(
        ctx,
        ifindex,
        ETH_HEADER_LEN + header_len,
        FAMILY_INET,
        source,
        multicast,
    )
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, ifindex: u32) -> u32 {
    let Some(ip) = read::<[u8; IPV6_HEADER_LEN]>(ctx, ETH_HEADER_LEN) else {
        return xdp_action::XDP_PASS;
    };
    if ip[6] != IPPROTO_CARP {
        return xdp_action::XDP_PASS;
    }
    let carp_offset = ETH_HEADER_LEN + IPV6_HEADER_LEN;
    if let Err(verdict) = check_ipv6(u16::from_be_bytes([ip[4], ip[5]]), ip[7]) {
        let vhid =
            read::<[u8; 2]>(ctx, carp_offset).map_or(0, |start| configured_vhid(ifindex, start[1]));
        return drop_counted(ifindex, vhid, verdict);
    }
    let mut source = [0u8; 16];
    source.copy_from_slice(&ip[8..24]);
    let multicast = ip[24..40] == CARP_GROUP_V6;
    advert(ctx, ifindex, carp_offset, FAMILY_INET6, source, multicast)
}

/// Checks the CARP header at `offset` and hands a good one to the agent.
#[inline(always)]
fn advert(
    ctx: &XdpContext,
    ifindex: u32,
    offset: usize,
    family: u8,
    source: [u8; 16],
    multicast: bool,
) -> u32 {
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
        family,
        multicast: u8::from(multicast),
        pad: [0; 2],
        source,
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
    let configured = CARP_VHIDS.get_ptr(VhidKey::new(ifindex, vhid)).is_some();
    if configured { vhid } else { 0 }
}

/// The single exit for CARP packets: count the verdict, drop the frame.
#[inline(always)]
fn drop_counted(ifindex: u32, vhid: u8, verdict: Verdict) -> u32 {
    let key = CounterKey::new(ifindex, vhid, verdict);
    match CARP_COUNTERS.get_ptr_mut(key) {
        // SAFETY: a per-CPU value: nothing else writes it while we run.
        Some(packets) => unsafe { *packets += 1 },
        None => {
            // Fails only when the map is full; the packet then goes uncounted
            // rather than evicting a counter the agent already reported.
            let _ = CARP_COUNTERS.insert(key, 1u64, u64::from(BPF_NOEXIST));
        }
    }
    xdp_action::XDP_DROP
}

/// The one place packet bytes are read: `T` at `offset` if the frame holds it.
#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    let start = ctx.data() + offset;
    if start + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    // SAFETY: the bytes lie inside the frame (checked above); `T` is a byte
    // array, so any alignment and any bit pattern is fine.
    Some(unsafe { (start as *const T).read_unaligned() })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here.
    loop {}
}

/// No GPL-only helper is used; the kernel still wants a license string.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
