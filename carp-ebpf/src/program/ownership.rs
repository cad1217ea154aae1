//! Ownership: frames for a virtual MAC, packets for a VIP, and ARP requests
//! or neighbour solicitations for a VIP pass only while this node owns the
//! vhid (MASTER, agent alive). ARP replies, gratuitous ARPs and neighbour
//! advertisements for a VIP are recorded, and reported to the agent when
//! the claiming MAC is not the vhid's virtual MAC while we own it.
//!
//! Balanced groups (carpnodes): every node sees every frame for the shared
//! MAC or a shared VIP; the packet's IPv4 addresses pick the node whose
//! role decides. Accepted frames for the shared MAC are readdressed to the
//! carpdev, and the node an ARP requester hashes to answers it here.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_ktime_get_ns, programs::XdpContext};
use carp_common::{
    BALANCE_IP, BalanceGroup, Carpdev, ClaimEvent, FAMILY_INET, Verdict, VhidState, VipClaim,
    VipKey,
};
use carp_ebpf::{ARP_FRAME_LEN, arp_reply, balance_node, owned, virtual_mac, virtual_mac_vhid};

use super::{
    CARP_BALANCED, CARP_CLAIMED, CARP_CLAIMS, ETH_HEADER_LEN, ETH_P_ARP, ETH_P_IPV4, carpdev,
    counted, drop_counted, read, row, vhid_state, vip_key, vip_key_v6, vip_owner_v4, vip_owner_v6,
    write,
};

const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const ARP_LEN: usize = 28;
const ARP_REQUEST: u16 = 1;
const IPPROTO_ICMPV6: u8 = 58;
/// ICMPv6 type, code, checksum, reserved, then the 16-byte target.
const ND_LEN: usize = 24;
const ND_SOLICITATION: u8 = 135;
const ND_ADVERTISEMENT: u8 = 136;

/// Frames addressed to a configured vhid's virtual MAC: the vhid decides,
/// whatever they carry; for a balanced group's shared MAC, the node the
/// packet hashes to. None when the destination is no such MAC.
#[inline(always)]
pub fn for_virtual_mac(
    ctx: &XdpContext,
    ifindex: u32,
    ethernet: &[u8; ETH_HEADER_LEN],
) -> Option<u32> {
    let destination = [
        ethernet[0],
        ethernet[1],
        ethernet[2],
        ethernet[3],
        ethernet[4],
        ethernet[5],
    ];
    let vhid = virtual_mac_vhid(&destination)?;
    let carpdev = carpdev(ifindex)?;
    let state = vhid_state(&carpdev, vhid)?;
    if state.leads_group == 0 {
        return Some(decide(state));
    }
    Some(for_shared_mac(ctx, ifindex, &carpdev, state, ethernet))
}

/// A frame for a balanced group's shared MAC. In `ip` mode accepted IPv4 is
/// readdressed to the carpdev: the MAC is multicast, and every carp
/// interface on the carpdev would take a copy of the frame. In the unicast
/// modes the carp interface has the shared MAC and takes the frame as is.
#[inline(always)]
fn for_shared_mac(
    ctx: &XdpContext,
    ifindex: u32,
    carpdev: &Carpdev,
    state: VhidState,
    ethernet: &[u8; ETH_HEADER_LEN],
) -> u32 {
    let Some(group) = group(state) else {
        return drop_counted(state.counters, Verdict::NotOwned);
    };
    match u16::from_be_bytes([ethernet[12], ethernet[13]]) {
        ETH_P_IPV4 => {
            let Some(ip) = read::<[u8; IPV4_HEADER_LEN]>(ctx, ETH_HEADER_LEN) else {
                return drop_counted(state.counters, Verdict::NotOwned);
            };
            let action = decide_balanced(
                carpdev,
                &group,
                [ip[12], ip[13], ip[14], ip[15]],
                [ip[16], ip[17], ip[18], ip[19]],
            );
            if action == xdp_action::XDP_PASS
                && group.mode == BALANCE_IP
                && !write(ctx, 0, group.carpdev_mac)
            {
                return xdp_action::XDP_DROP;
            }
            action
        }
        ETH_P_ARP => arp(ctx, ifindex),
        // Balanced groups carry IPv4 only; anything else follows the leader.
        _ => decide(state),
    }
}

/// IPv4 packets for a VIP.
#[inline(always)]
pub fn ipv4(ctx: &XdpContext, ifindex: u32) -> u32 {
    let Some(ip) = read::<[u8; IPV4_HEADER_LEN]>(ctx, ETH_HEADER_LEN) else {
        return xdp_action::XDP_PASS;
    };
    let source = [ip[12], ip[13], ip[14], ip[15]];
    let address = [ip[16], ip[17], ip[18], ip[19]];
    let Some(owner) = vip_owner_v4(ifindex, address) else {
        return xdp_action::XDP_PASS;
    };
    // The agent registers the carpdev before it adds a VIP on it.
    let Some(carpdev) = carpdev(ifindex) else {
        return xdp_action::XDP_PASS;
    };
    if owner.balanced != 0 {
        let leader = vhid_state(&carpdev, owner.vhid);
        return match leader.and_then(group) {
            Some(group) => decide_balanced(&carpdev, &group, source, address),
            None => drop_counted(row(Some(carpdev), owner.vhid), Verdict::NotOwned),
        };
    }
    match vhid_state(&carpdev, owner.vhid) {
        Some(state) => decide(state),
        None => xdp_action::XDP_PASS,
    }
}

/// IPv6 packets for a VIP, and neighbour discovery about one.
#[inline(always)]
pub fn ipv6(ctx: &XdpContext, ifindex: u32) -> u32 {
    let Some(ip) = read::<[u8; IPV6_HEADER_LEN]>(ctx, ETH_HEADER_LEN) else {
        return xdp_action::XDP_PASS;
    };
    let mut destination = [0u8; 16];
    destination.copy_from_slice(&ip[24..40]);
    if let Some((_, state)) = vip(ifindex, &destination) {
        return decide(state);
    }
    // Solicitations go to a solicited-node group, not to the VIP: look at
    // the target. Extension headers before ICMPv6 are not walked (policy in lib.rs).
    if ip[6] != IPPROTO_ICMPV6 {
        return xdp_action::XDP_PASS;
    }
    let Some(nd) = read::<[u8; ND_LEN]>(ctx, ETH_HEADER_LEN + IPV6_HEADER_LEN) else {
        return xdp_action::XDP_PASS;
    };
    let mut target = [0u8; 16];
    target.copy_from_slice(&nd[8..24]);
    let Some((vhid, state)) = vip(ifindex, &target) else {
        return xdp_action::XDP_PASS;
    };
    match nd[0] {
        ND_SOLICITATION => decide(state),
        ND_ADVERTISEMENT => {
            // Read here rather than kept from the start: every other frame
            // would pay for keeping it.
            let Some(source) = read::<[u8; 6]>(ctx, 6) else {
                return xdp_action::XDP_PASS;
            };
            let key = vip_key_v6(ifindex, &target);
            note_claim(vhid, state, &key, source, virtual_mac(vhid))
        }
        _ => xdp_action::XDP_PASS,
    }
}

/// ARP about a VIP: requests need ownership, senders claiming it are noted.
#[inline(always)]
pub fn arp(ctx: &XdpContext, ifindex: u32) -> u32 {
    let Some(arp) = read::<[u8; ARP_LEN]>(ctx, ETH_HEADER_LEN) else {
        return xdp_action::XDP_PASS;
    };
    // Ethernet hardware, IPv4 protocol addresses.
    if arp[0..2] != [0, 1] || arp[2..4] != [0x08, 0x00] || arp[4] != 6 || arp[5] != 4 {
        return xdp_action::XDP_PASS;
    }
    let sender_mac = [arp[8], arp[9], arp[10], arp[11], arp[12], arp[13]];
    let sender_ip = [arp[14], arp[15], arp[16], arp[17]];
    let target_ip = [arp[24], arp[25], arp[26], arp[27]];
    let request = u16::from_be_bytes([arp[6], arp[7]]) == ARP_REQUEST;
    // A request for a VIP from someone else: only the owner may answer.
    // (Addresses compared as words: an array compare is a call to bcmp.)
    if request
        && u32::from_ne_bytes(sender_ip) != u32::from_ne_bytes(target_ip)
        && let Some(owner) = vip_owner_v4(ifindex, target_ip)
        && let Some(carpdev) = carpdev(ifindex)
    {
        if owner.balanced != 0 {
            return answer_balanced(ctx, &carpdev, owner.vhid, sender_ip, target_ip);
        }
        if let Some(state) = vhid_state(&carpdev, owner.vhid) {
            return decide(state);
        }
    }
    // A reply, or a gratuitous ARP (sender = target), with a VIP as sender.
    if let Some(owner) = vip_owner_v4(ifindex, sender_ip)
        && let Some(carpdev) = carpdev(ifindex)
        && let Some(state) = vhid_state(&carpdev, owner.vhid)
    {
        let expected = if owner.balanced != 0 {
            group(state).map_or(virtual_mac(owner.vhid), |g| g.shared_mac)
        } else {
            virtual_mac(owner.vhid)
        };
        let [a, b, c, d] = sender_ip;
        let key = vip_key(
            ifindex,
            FAMILY_INET,
            u64::from_ne_bytes([a, b, c, d, 0, 0, 0, 0]),
            0,
        );
        return note_claim(owner.vhid, state, &key, sender_mac, expected);
    }
    xdp_action::XDP_PASS
}

/// An ARP request for a balanced VIP: the node the requester hashes to
/// answers it in place with the shared MAC; every other node drops it.
#[inline(always)]
fn answer_balanced(
    ctx: &XdpContext,
    carpdev: &Carpdev,
    leader: u8,
    requester: [u8; 4],
    vip: [u8; 4],
) -> u32 {
    let leader_row = row(Some(*carpdev), leader);
    let Some(group) = vhid_state(carpdev, leader).and_then(group) else {
        return drop_counted(leader_row, Verdict::NotOwned);
    };
    let Some(node) = balance_node(&group, requester, vip) else {
        return drop_counted(leader_row, Verdict::NotOwned);
    };
    let Some(state) = vhid_state(carpdev, node) else {
        return drop_counted(leader_row, Verdict::NotOwned);
    };
    if let Err(verdict) = owned(state) {
        return drop_counted(state.counters, verdict);
    }
    let Some(request) = read::<[u8; ARP_FRAME_LEN]>(ctx, 0) else {
        return drop_counted(state.counters, Verdict::NotOwned);
    };
    if !write(
        ctx,
        0,
        arp_reply(&request, group.carpdev_mac, group.shared_mac),
    ) {
        return drop_counted(state.counters, Verdict::NotOwned);
    }
    counted(state.counters, Verdict::Answered, xdp_action::XDP_TX)
}

/// The balanced group a vhid leads, if it leads one.
#[inline(always)]
fn group(leader: VhidState) -> Option<BalanceGroup> {
    CARP_BALANCED
        .get(u32::from(leader.led_group()?))
        .copied()
        .filter(|group| group.count != 0)
}

/// Pass and count while we own the node the addresses hash to.
#[inline(always)]
fn decide_balanced(
    carpdev: &Carpdev,
    group: &BalanceGroup,
    source: [u8; 4],
    destination: [u8; 4],
) -> u32 {
    let node = balance_node(group, source, destination).unwrap_or(group.nodes[0]);
    match vhid_state(carpdev, node) {
        Some(state) => decide(state),
        // A node the agent did not configure (never): counted on the carpdev.
        None => drop_counted(row(Some(*carpdev), node), Verdict::NotOwned),
    }
}

/// The vhid an IPv6 VIP belongs to and this node's role for it.
#[inline(always)]
fn vip(ifindex: u32, address: &[u8; 16]) -> Option<(u8, VhidState)> {
    let owner = vip_owner_v6(ifindex, address)?;
    Some((owner.vhid, vhid_state(&carpdev(ifindex)?, owner.vhid)?))
}

/// Pass and count while we own the vhid; drop and count why not otherwise.
#[inline(always)]
fn decide(state: VhidState) -> u32 {
    match owned(state) {
        Ok(()) => counted(state.counters, Verdict::Owned, xdp_action::XDP_PASS),
        Err(verdict) => drop_counted(state.counters, verdict),
    }
}

/// Records who claimed a VIP; a claim by another MAC than `expected` (the
/// virtual or shared one) while we own the vhid is a conflict the agent
/// must hear of at once. The frame itself passes: the kernel keeps its
/// neighbour cache.
#[inline(always)]
fn note_claim(vhid: u8, state: VhidState, key: &VipKey, mac: [u8; 6], expected: [u8; 6]) -> u32 {
    let seen_ns = now();
    // Fails only when the map is full; the status then lacks this VIP.
    let _ = CARP_CLAIMED.insert(
        key,
        &VipClaim {
            seen_ns,
            mac,
            pad: [0; 2],
        },
        0,
    );
    if mac == expected || owned(state).is_err() {
        return xdp_action::XDP_PASS;
    }
    if let Some(mut entry) = CARP_CLAIMS.reserve::<ClaimEvent>(0) {
        entry.write(ClaimEvent {
            timestamp_ns: seen_ns,
            vip: *key,
            mac,
            vhid,
            pad: 0,
        });
        entry.submit(0);
        counted(state.counters, Verdict::Claim, xdp_action::XDP_PASS)
    } else {
        counted(state.counters, Verdict::RingFull, xdp_action::XDP_PASS)
    }
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: a helper without arguments or side effects.
    unsafe { bpf_ktime_get_ns() }
}
