//! The XDP entry point, its maps and its one bounds-checked packet reader.
//!
//! Every CARP packet (IPv4 protocol 112, IPv6 next header 112) gets exactly
//! one verdict (advert.rs). So does every frame for a virtual MAC, a VIP, or
//! an ARP request / neighbour solicitation for a VIP (ownership.rs): passed
//! while this node owns the vhid, dropped otherwise, so the kernel never
//! answers for an address it does not own. Everything else passes untouched.
//! Each verdict is counted once, in `CARP_COUNTERS`, in the row of its
//! (carpdev, vhid).
//!
//! Speed: every frame goes through here, so the maps a frame meets on the
//! common paths are arrays, whose lookups the verifier inlines (a hash map
//! lookup is a call, dearer than the rest of the path together). The one
//! hash map left there, `CARP_VIPS`, sits behind a bitmap that turns other
//! addresses away first. Nothing is called out of line (keys with zeroed
//! bytes are written as words: see `vip_key`), and the fail-closed check
//! costs nothing per packet: the watchdog demotes the roles themselves
//! (watchdog.rs). `cargo xtask bench xdp` measures all of it.
//!
//! Helpers are inlined: BPF calls take at most five register arguments.

mod advert;
mod ownership;
mod watchdog;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use carp_common::{
    ADVERT_RING_BYTES, AgentHeartbeat, BalanceGroup, CARPDEV_HOMES, CLAIM_RING_BYTES,
    COUNTER_ENTRIES, Carpdev, ETH_P_CARP_BEAT, FAMILY_INET, FAMILY_INET6, MAX_CARPDEVS,
    MAX_COUNTER_ROWS, MAX_GROUPS, MAX_VIPS, VHID_ENTRIES, VIP_FILTER_WORDS, Verdict, VhidState,
    VipClaim, VipKey, VipOwner, carpdev_home, counter_index, vip_filter_bit, vip_filter_bit_v4,
};

/// Where each carpdev's vhids are, at the carpdev's home
/// (`carpdev_home(ifindex)`). Written by the agent when it first meets a
/// carpdev, read here.
#[map(name = "CARP_CARPDEVS")]
static CARP_CARPDEVS: Array<Carpdev> = Array::with_max_entries(CARPDEV_HOMES, 0);

/// The same for the carpdevs whose home another carpdev had taken, by
/// ifindex: rare (their ifindexes must be equal modulo `CARPDEV_HOMES`).
/// Written by the agent, read here.
#[map(name = "CARP_COLLIDED")]
static CARP_COLLIDED: HashMap<u32, Carpdev> = HashMap::with_max_entries(MAX_CARPDEVS, 0);

/// Per carpdev and vhid: configured or not, this node's role, the counter
/// row. Written by the agent (one write per failover), read here.
#[map(name = "CARP_VHIDS")]
static CARP_VHIDS: Array<VhidState> = Array::with_max_entries(VHID_ENTRIES, 0);

/// Which vhid each VIP belongs to. Written by the agent, read here.
#[map(name = "CARP_VIPS")]
static CARP_VIPS: HashMap<VipKey, VipOwner> = HashMap::with_max_entries(MAX_VIPS, 0);

/// A bit per VIP (`vip_filter_bit`): clear bits are addresses that are
/// surely no VIP. Written by the agent with `CARP_VIPS`, read here.
#[map(name = "CARP_VIP_FILTER")]
static CARP_VIP_FILTER: Array<u64> = Array::with_max_entries(VIP_FILTER_WORDS, 0);

/// Balanced groups (carpnodes), where their leader's `VhidState::group`
/// says. Written by the agent at configuration, read here.
#[map(name = "CARP_BALANCED")]
static CARP_BALANCED: Array<BalanceGroup> = Array::with_max_entries(MAX_GROUPS, 0);

/// The agent's heartbeat (entry 0). Written by the agent, read by the next
/// carpd to tell a live pinned dataplane from a stale one; the program's
/// own check is the watchdog it arms (watchdog.rs).
#[map(name = "CARP_AGENT")]
static CARP_AGENT: Array<AgentHeartbeat> = Array::with_max_entries(1, 0);

/// Packets per counter row (a (carpdev, vhid)) and verdict, at
/// `counter_index(row, verdict)`. Written here, summed by the agent.
#[map(name = "CARP_COUNTERS")]
static CARP_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_ENTRIES, 0);

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
// Inlined into the entry the macro wraps it in: a BPF-to-BPF call costs
// as much as the rest of the pass-through path.
#[inline(always)]
pub fn carp(ctx: XdpContext) -> u32 {
    try_carp(&ctx)
}

/// A program that passes everything and does nothing else: the baseline
/// `cargo xtask bench xdp` measures `carp` against. carpd never loads it.
#[xdp]
pub fn bare_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// `bare_pass` plus one clock read (a helper call), which the advert path
/// makes to timestamp and which a per-packet fail-closed check would cost:
/// `cargo xtask bench xdp` shows it next to the paths. carpd never loads it.
#[xdp]
pub fn clock_pass(_ctx: XdpContext) -> u32 {
    // SAFETY: a helper without arguments or side effects.
    let _ = unsafe { bpf_ktime_get_ns() };
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
        ETH_P_IPV6 => advert::ipv6(ctx, ifindex).unwrap_or_else(|| ownership::ipv6(ctx, ifindex)),
        ETH_P_ARP => ownership::arp(ctx, ifindex),
        ETH_P_CARP_BEAT if ifindex == watchdog::LOOPBACK => watchdog::beat(ctx),
        _ => xdp_action::XDP_PASS,
    }
}

/// The carpdev `ifindex` as the agent registered it (before attaching the
/// program to it); None for any other interface.
#[inline(always)]
fn carpdev(ifindex: u32) -> Option<Carpdev> {
    let home = CARP_CARPDEVS.get(carpdev_home(ifindex))?;
    if home.ifindex == ifindex {
        return Some(*home);
    }
    // SAFETY: a plain-data value copied out at once.
    CARP_COLLIDED
        .get_ptr(&ifindex)
        .map(|carpdev| unsafe { *carpdev })
}

/// A vhid configured on the carpdev; None where it is not.
#[inline(always)]
fn vhid_state(carpdev: &Carpdev, vhid: u8) -> Option<VhidState> {
    CARP_VHIDS
        .get(carpdev.vhids + u32::from(vhid))
        .copied()
        .filter(|state| state.is_configured())
}

/// A counter row no counter has: verdicts on an interface the agent never
/// registered go uncounted.
const NO_ROW: u32 = MAX_COUNTER_ROWS;

/// The counter row of `vhid` on the carpdev, or, where it is not
/// configured, the carpdev's row for packets tied to no vhid: counters
/// exist only for configured vhids, so nobody can spread them by spraying
/// vhids.
#[inline(always)]
fn row(carpdev: Option<Carpdev>, vhid: u8) -> u32 {
    let Some(carpdev) = carpdev else {
        return NO_ROW;
    };
    match vhid_state(&carpdev, vhid) {
        Some(state) => state.counters,
        None => CARP_VHIDS
            .get(carpdev.vhids)
            .map_or(NO_ROW, |unconfigured| unconfigured.counters),
    }
}

/// The owner of the IPv4 address on the carpdev, if it is a VIP.
#[inline(always)]
fn vip_owner_v4(ifindex: u32, address: [u8; 4]) -> Option<VipOwner> {
    if !maybe_vip(vip_filter_bit_v4(address)) {
        return None;
    }
    let [a, b, c, d] = address;
    vip_owner(&vip_key(
        ifindex,
        FAMILY_INET,
        u64::from_ne_bytes([a, b, c, d, 0, 0, 0, 0]),
        0,
    ))
}

/// The owner of the IPv6 address on the carpdev, if it is a VIP.
#[inline(always)]
fn vip_owner_v6(ifindex: u32, address: &[u8; 16]) -> Option<VipOwner> {
    if !maybe_vip(vip_filter_bit(address)) {
        return None;
    }
    vip_owner(&vip_key_v6(ifindex, address))
}

/// `VipKey::v6`, as `vip_key` builds it.
#[inline(always)]
fn vip_key_v6(ifindex: u32, address: &[u8; 16]) -> VipKey {
    let word = |at: usize| {
        u64::from_ne_bytes([
            address[at],
            address[at + 1],
            address[at + 2],
            address[at + 3],
            address[at + 4],
            address[at + 5],
            address[at + 6],
            address[at + 7],
        ])
    };
    vip_key(ifindex, FAMILY_INET6, word(0), word(8))
}

/// A `VipKey` from its address as two words (in memory order), written as
/// three whole words. Built field by field, as `VipKey::v4` does, its zero
/// bytes become calls to memset (bpf-linker has LLVM expand memcpy in
/// order, memset not at all), dearer than the hash lookup it is for.
#[inline(always)]
fn vip_key(ifindex: u32, family: u8, low: u64, high: u64) -> VipKey {
    let [i0, i1, i2, i3] = ifindex.to_ne_bytes();
    let head = u64::from_ne_bytes([i0, i1, i2, i3, family, 0, 0, 0]);
    // SAFETY: `VipKey` is repr(C), 24 bytes (asserted in carp-common) of
    // integers and byte arrays: ifindex, family, 3 bytes of padding (0
    // here, as `VipKey::v4` leaves them), then the 16 address bytes. Any
    // bit pattern is a valid `VipKey`.
    unsafe { core::mem::transmute::<[u64; 3], VipKey>([head, low, high]) }
}

/// Whether an address whose filter bit is `(word, mask)` may be a VIP: the
/// bitmap turns most other addresses away before the hash lookup (and
/// before a key is built for it, which takes calls to memset).
#[inline(always)]
fn maybe_vip((word, mask): (u32, u64)) -> bool {
    // A word that cannot be read (never: `word` is in range) sends the
    // address on to the exact lookup.
    CARP_VIP_FILTER.get(word).copied().unwrap_or(u64::MAX) & mask != 0
}

/// The owner of a VIP (its filter bit set); None for any other address.
#[inline(always)]
fn vip_owner(key: &VipKey) -> Option<VipOwner> {
    // SAFETY: a plain-data value copied out at once.
    CARP_VIPS.get_ptr(key).map(|owner| unsafe { *owner })
}

/// Counts `verdict` in counter row `row` and returns `action`: the single
/// place every verdict is counted.
#[inline(always)]
fn counted(row: u32, verdict: Verdict, action: u32) -> u32 {
    if row < MAX_COUNTER_ROWS
        && let Some(packets) = CARP_COUNTERS.get_ptr_mut(counter_index(row, verdict))
    {
        // SAFETY: a per-CPU value: nothing else writes it while we run.
        unsafe { *packets += 1 };
    }
    action
}

/// Counts and drops.
#[inline(always)]
fn drop_counted(row: u32, verdict: Verdict) -> u32 {
    counted(row, verdict, xdp_action::XDP_DROP)
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
