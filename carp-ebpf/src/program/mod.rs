//! The XDP entry point, its maps and its one bounds-checked packet reader.
//!
//! Every CARP packet (IPv4 protocol 112, IPv6 next header 112) gets exactly
//! one verdict (advert.rs). So does every frame for a virtual MAC, a VIP, or
//! an ARP request / neighbour solicitation for a VIP (ownership.rs): passed
//! while this node owns the vhid, dropped otherwise, so the kernel never
//! answers for an address it does not own. Everything else passes untouched.
//! Each verdict is counted once, in `CARP_COUNTERS`.
//!
//! Helpers are inlined: BPF calls take at most five register arguments.

mod advert;
mod ownership;

use aya_ebpf::{
    bindings::{BPF_NOEXIST, xdp_action},
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuHashMap, RingBuf},
    programs::XdpContext,
};
use carp_common::{
    ADVERT_RING_BYTES, AgentHeartbeat, BalanceGroup, CLAIM_RING_BYTES, CounterKey,
    MAX_COUNTER_KEYS, MAX_VHIDS, MAX_VIPS, Verdict, VhidKey, VhidState, VipClaim, VipKey, VipOwner,
};

/// This node's role per configured (carpdev, vhid). Written by the agent
/// (one update per failover), read here.
#[map(name = "CARP_VHIDS")]
static CARP_VHIDS: HashMap<VhidKey, VhidState> = HashMap::with_max_entries(MAX_VHIDS, 0);

/// Which vhid each VIP belongs to. Written by the agent, read here.
#[map(name = "CARP_VIPS")]
static CARP_VIPS: HashMap<VipKey, VipOwner> = HashMap::with_max_entries(MAX_VIPS, 0);

/// Balanced groups (carpnodes), keyed by their leader vhid. Written by the
/// agent at configuration, read here.
#[map(name = "CARP_BALANCED")]
static CARP_BALANCED: HashMap<VhidKey, BalanceGroup> = HashMap::with_max_entries(MAX_VHIDS, 0);

/// The agent's heartbeat (entry 0). Written by the agent, read here.
#[map(name = "CARP_AGENT")]
static CARP_AGENT: Array<AgentHeartbeat> = Array::with_max_entries(1, 0);

/// Packets per (carpdev, vhid, verdict). Written here, summed by the agent.
#[map(name = "CARP_COUNTERS")]
static CARP_COUNTERS: PerCpuHashMap<CounterKey, u64> =
    PerCpuHashMap::with_max_entries(MAX_COUNTER_KEYS, 0);

/// Accepted advertisements. Written here, read by the agent.
#[map(name = "CARP_ADVERTS")]
static CARP_ADVERTS: RingBuf = RingBuf::with_byte_size(ADVERT_RING_BYTES, 0);

/// The last MAC seen claiming each VIP, and when. Written here, read by
/// the agent.
#[map(name = "CARP_CLAIMED")]
static CARP_CLAIMED: HashMap<VipKey, VipClaim> = HashMap::with_max_entries(MAX_VIPS, 0);

/// VIPs claimed by a MAC that is not their virtual MAC. Written here, read
/// by the agent.
#[map(name = "CARP_CLAIMS")]
static CARP_CLAIMS: RingBuf = RingBuf::with_byte_size(CLAIM_RING_BYTES, 0);

const ETH_HEADER_LEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;

#[xdp]
pub fn carp(ctx: XdpContext) -> u32 {
    try_carp(&ctx)
}

/// A program that passes everything and does nothing else: the baseline
/// `cargo xtask bench xdp` measures `carp` against. carpd never loads it.
#[xdp]
pub fn bare_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[inline(always)]
fn try_carp(ctx: &XdpContext) -> u32 {
    // The program is attached only to carpdevs, whose index fits 32 bits.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "ifindex is 32 bits in the kernel"
    )]
    let ifindex = ctx.ingress_ifindex() as u32;
    let Some(ethernet) = read::<[u8; ETH_HEADER_LEN]>(ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    if let Some(action) = ownership::for_virtual_mac(ctx, ifindex, &ethernet) {
        return action;
    }
    match u16::from_be_bytes([ethernet[12], ethernet[13]]) {
        ETH_P_IPV4 => advert::ipv4(ctx, ifindex).unwrap_or_else(|| ownership::ipv4(ctx, ifindex)),
        ETH_P_IPV6 => {
            advert::ipv6(ctx, ifindex).unwrap_or_else(|| ownership::ipv6(ctx, ifindex, &ethernet))
        }
        ETH_P_ARP => ownership::arp(ctx, ifindex),
        _ => xdp_action::XDP_PASS,
    }
}

/// This node's role for a configured vhid; None where it is not configured.
#[inline(always)]
fn vhid_state(ifindex: u32, vhid: u8) -> Option<VhidState> {
    // SAFETY: a plain-data value copied out at once.
    CARP_VHIDS
        .get_ptr(VhidKey::new(ifindex, vhid))
        .map(|state| unsafe { *state })
}

/// Counts `verdict` for (carpdev, vhid) and returns `action`: the single
/// place every verdict is counted.
#[inline(always)]
fn counted(ifindex: u32, vhid: u8, verdict: Verdict, action: u32) -> u32 {
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
    action
}

/// Counts and drops.
#[inline(always)]
fn drop_counted(ifindex: u32, vhid: u8, verdict: Verdict) -> u32 {
    counted(ifindex, vhid, verdict, xdp_action::XDP_DROP)
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

/// The one place packet bytes are written: `value` at `offset` if the
/// frame holds it. Returns whether it did.
#[inline(always)]
fn write<T: Copy>(ctx: &XdpContext, offset: usize, value: T) -> bool {
    let start = ctx.data() + offset;
    if start + core::mem::size_of::<T>() > ctx.data_end() {
        return false;
    }
    // SAFETY: the bytes lie inside the frame (checked above), which the
    // program may rewrite; `T` is a byte array, any alignment is fine.
    unsafe { (start as *mut T).write_unaligned(value) };
    true
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
