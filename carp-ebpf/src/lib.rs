//! The checks the carp XDP program makes, as pure functions over header
//! fields and bytes already copied out of the packet. The program
//! (`main.rs`) only bounds-checks, copies and calls these, so every rule here
//! is unit-tested on the host.
//!
//! Packet policy (what the program does with what it cannot fully parse):
//! - VLAN-tagged frames pass untouched: a tagged CARP advertisement belongs to
//!   the VLAN interface, which runs its own copy of the program.
//! - IPv4 options are allowed (the CARP header follows the options).
//! - IPv4 fragments of protocol 112 are dropped as `badlen`: an advertisement
//!   is 56 bytes and is never fragmented by an honest sender.
//! - IPv6 extension headers are not walked: only next header 112 right after
//!   the fixed header is CARP; anything else passes to the kernel.
#![no_std]

use carp_common::{
    BalanceGroup, CARP_HEADER_LEN, CARP_TTL, CARP_TYPE_ADVERTISEMENT, CARP_VERSION, MAX_NODES,
    ROLE_MASTER, ROLE_STALE, Verdict, VhidState,
};

/// IPv4 flags and fragment offset field (host order): MF and the offset.
const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
const IPV4_FRAGMENT_OFFSET: u16 = 0x1fff;

/// Checks an IPv4 packet carrying protocol 112 and returns where the CARP
/// header starts, counted from the start of the IPv4 header.
///
/// `version_ihl` is byte 0 of the IPv4 header, `total_len` and `frag` are
/// the total-length and flags/fragment fields in host byte order.
pub fn check_ipv4(version_ihl: u8, total_len: u16, frag: u16, ttl: u8) -> Result<usize, Verdict> {
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < 20 {
        return Err(Verdict::BadLen);
    }
    if frag & (IPV4_MORE_FRAGMENTS | IPV4_FRAGMENT_OFFSET) != 0 {
        return Err(Verdict::BadLen);
    }
    if usize::from(total_len) < header_len + CARP_HEADER_LEN {
        return Err(Verdict::BadLen);
    }
    if ttl != CARP_TTL {
        return Err(Verdict::BadTtl);
    }
    Ok(header_len)
}

/// Checks an IPv6 packet whose next header is 112; `payload_len` in host order.
pub fn check_ipv6(payload_len: u16, hop_limit: u8) -> Result<(), Verdict> {
    if usize::from(payload_len) < CARP_HEADER_LEN {
        return Err(Verdict::BadLen);
    }
    if hop_limit != CARP_TTL {
        return Err(Verdict::BadTtl);
    }
    Ok(())
}

/// Checks version, type and checksum of a CARP header and returns its vhid.
/// Whether the vhid is configured is the caller's (map) question.
#[expect(
    clippy::inline_always,
    reason = "the XDP program calls it twice; out of line, each is a BPF-to-BPF call dearer than the checksum"
)]
#[inline(always)]
pub fn check_carp_header(header: &[u8; CARP_HEADER_LEN]) -> Result<u8, Verdict> {
    if header[0] != (CARP_VERSION << 4) | CARP_TYPE_ADVERTISEMENT {
        return Err(Verdict::BadVer);
    }
    // A correct checksum makes the one's-complement sum of all words 0xffff.
    if ones_complement_sum(header) != 0xffff {
        return Err(Verdict::BadSum);
    }
    Ok(header[1])
}

/// The 16-bit one's-complement sum of the header's big-endian words.
#[expect(
    clippy::inline_always,
    reason = "as check_carp_header: LLVM keeps it out of line otherwise"
)]
#[inline(always)]
pub fn ones_complement_sum(header: &[u8; CARP_HEADER_LEN]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < CARP_HEADER_LEN {
        sum += u32::from(u16::from_be_bytes([header[i], header[i + 1]]));
        i += 2;
    }
    // 18 words of at most 0xffff fit in 21 bits: two folds suffice.
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    // The folds leave at most 0xffff.
    (sum & 0xffff) as u16
}

/// Whether a vhid in `state` is ours now: MASTER. The watchdog turns a
/// MASTER into `ROLE_STALE` when the agent stops beating, so a dead agent
/// can never leave us answering for addresses the peer now owns (fail
/// closed), and the packet path reads nothing but the role.
pub fn owned(state: VhidState) -> Result<(), Verdict> {
    match state.role {
        ROLE_MASTER => Ok(()),
        ROLE_STALE => Err(Verdict::AgentStale),
        _ => Err(Verdict::NotOwned),
    }
}

/// The role the watchdog leaves when the agent's heartbeat runs out:
/// `ROLE_STALE` for a MASTER, the role unchanged otherwise.
pub fn expired_role(role: u8) -> u8 {
    if role == ROLE_MASTER {
        ROLE_STALE
    } else {
        role
    }
}

/// How much longer the agent counts as alive after a heartbeat stamped
/// `beat_ns` with `bound_ns`, seen at `now_ns`; None if it already does not
/// (or never beat). The XDP program arms its watchdog timer with this.
pub fn alive_for(beat_ns: u64, bound_ns: u64, now_ns: u64) -> Option<u64> {
    if beat_ns == 0 {
        return None;
    }
    let expiry = beat_ns.saturating_add(bound_ns);
    // At the bound itself the agent still counts as alive.
    (expiry >= now_ns).then(|| (expiry - now_ns).saturating_add(1))
}

/// The vhid of a CARP virtual MAC: 00:00:5e:00:01:<vhid> (unicast, the
/// usual one) or 01:00:5e:00:01:<vhid> (OpenBSD's `balancing ip`).
pub fn virtual_mac_vhid(mac: &[u8; 6]) -> Option<u8> {
    let prefix_matches = (mac[0] == 0x00 || mac[0] == 0x01)
        && mac[1] == 0x00
        && mac[2] == 0x5e
        && mac[3] == 0x00
        && mac[4] == 0x01;
    (prefix_matches && mac[5] != 0).then_some(mac[5])
}

/// The unicast virtual MAC of `vhid`.
pub const fn virtual_mac(vhid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x01, vhid]
}

/// The MAC a balanced group's VIPs resolve to in `balancing ip` mode: a
/// multicast one, so every switch floods it to every node.
pub const fn multicast_virtual_mac(vhid: u8) -> [u8; 6] {
    [0x01, 0x00, 0x5e, 0x00, 0x01, vhid]
}

/// The node (vhid) of a balanced group that owns the IPv4 packet (or ARP
/// request) between `source` and `destination`: as OpenBSD's ip
/// balancing, the addresses xor-folded, modulo the number of nodes. Both
/// directions of a flow land on the same node. None for an empty group.
pub fn balance_node(group: &BalanceGroup, source: [u8; 4], destination: [u8; 4]) -> Option<u8> {
    let count = u32::from(group.count);
    if count == 0 || count as usize > MAX_NODES {
        return None;
    }
    let fold = u32::from_be_bytes(source) ^ u32::from_be_bytes(destination);
    let index = fold % count;
    // A scan rather than `nodes[index]`: the BPF verifier loses the bounds
    // of a remainder and refuses a variable offset into the stack.
    let mut position = 0u32;
    #[expect(
        clippy::explicit_counter_loop,
        reason = "the enumerate form compiles back into the indexing the verifier refuses"
    )]
    for node in group.nodes {
        if position == index {
            return Some(node);
        }
        position += 1;
    }
    None
}

/// Ethernet header plus ARP for IPv4 over Ethernet.
pub const ARP_FRAME_LEN: usize = 42;

/// The reply to the ARP request `request` (a whole frame), as the node
/// answering for a balanced VIP sends it: from `from_mac` (the carpdev's
/// own MAC, so no switch learns the shared one), saying the requested
/// address is at `answer_mac`.
pub fn arp_reply(
    request: &[u8; ARP_FRAME_LEN],
    from_mac: [u8; 6],
    answer_mac: [u8; 6],
) -> [u8; ARP_FRAME_LEN] {
    let mut reply = *request;
    // Ethernet: back to the requester.
    reply[0..6].copy_from_slice(&request[22..28]);
    reply[6..12].copy_from_slice(&from_mac);
    // ARP: operation 2, sender = the VIP at `answer_mac`, target = requester.
    reply[20] = 0;
    reply[21] = 2;
    reply[22..28].copy_from_slice(&answer_mac);
    reply[28..32].copy_from_slice(&request[38..42]);
    reply[32..38].copy_from_slice(&request[22..28]);
    reply[38..42].copy_from_slice(&request[28..32]);
    reply
}

/// 224.0.0.18, the IPv4 CARP group, in network byte order.
pub const CARP_GROUP_V4: [u8; 4] = [224, 0, 0, 18];
/// `ff02::12`, the IPv6 CARP group.
pub const CARP_GROUP_V6: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12];

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid header for `vhid` with a correct checksum.
    fn header(vhid: u8) -> [u8; CARP_HEADER_LEN] {
        let mut h = [0u8; CARP_HEADER_LEN];
        h[0] = 0x21;
        h[1] = vhid;
        h[2] = 100;
        h[3] = 7;
        h[5] = 1;
        for (i, byte) in h[8..].iter_mut().enumerate() {
            *byte = u8::try_from(i * 7 % 251).unwrap_or(0);
        }
        let checksum = !ones_complement_sum(&h);
        h[6..8].copy_from_slice(&checksum.to_be_bytes());
        h
    }

    #[test]
    fn accepts_a_valid_header_and_returns_its_vhid() {
        assert_eq!(check_carp_header(&header(42)), Ok(42));
    }

    #[test]
    fn rejects_wrong_version_or_type() {
        for first in [0x11, 0x31, 0x20, 0x22, 0x00, 0xff] {
            let mut h = header(1);
            h[0] = first;
            assert_eq!(check_carp_header(&h), Err(Verdict::BadVer), "{first:#x}");
        }
    }

    #[test]
    fn any_flipped_bit_breaks_the_checksum() {
        let good = header(9);
        for byte in 1..CARP_HEADER_LEN {
            for bit in 0..8 {
                let mut h = good;
                h[byte] ^= 1 << bit;
                assert_eq!(
                    check_carp_header(&h),
                    Err(Verdict::BadSum),
                    "byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn ipv4_rules() {
        assert_eq!(check_ipv4(0x45, 56, 0x4000, 255), Ok(20));
        assert_eq!(check_ipv4(0x46, 60, 0, 255), Ok(24), "options are skipped");
        assert_eq!(check_ipv4(0x45, 56, 0, 254), Err(Verdict::BadTtl));
        assert_eq!(check_ipv4(0x45, 56, 0, 1), Err(Verdict::BadTtl));
        assert_eq!(check_ipv4(0x45, 55, 0, 255), Err(Verdict::BadLen), "short");
        assert_eq!(
            check_ipv4(0x46, 56, 0, 255),
            Err(Verdict::BadLen),
            "options eat the header"
        );
        assert_eq!(
            check_ipv4(0x44, 56, 0, 255),
            Err(Verdict::BadLen),
            "ihl below 5"
        );
        assert_eq!(
            check_ipv4(0x65, 56, 0, 255),
            Err(Verdict::BadLen),
            "not version 4"
        );
        assert_eq!(
            check_ipv4(0x45, 56, 0x2000, 255),
            Err(Verdict::BadLen),
            "first fragment"
        );
        assert_eq!(
            check_ipv4(0x45, 56, 0x0001, 255),
            Err(Verdict::BadLen),
            "later fragment"
        );
    }

    #[test]
    fn ownership_needs_master_and_a_live_agent() {
        let master = VhidState::configured(0, None).with_role(true);
        let backup = VhidState::configured(0, None);
        assert_eq!(owned(master), Ok(()));
        assert_eq!(owned(backup), Err(Verdict::NotOwned));
        let stale = VhidState {
            role: expired_role(master.role),
            ..master
        };
        assert_eq!(owned(stale), Err(Verdict::AgentStale));
        let odd_role = VhidState { role: 7, ..master };
        assert_eq!(owned(odd_role), Err(Verdict::NotOwned));
    }

    #[test]
    fn the_watchdog_demotes_only_masters() {
        assert_eq!(expired_role(ROLE_MASTER), ROLE_STALE);
        for role in (0..=u8::MAX).filter(|&role| role != ROLE_MASTER) {
            assert_eq!(expired_role(role), role, "role {role}");
        }
    }

    #[test]
    fn a_beat_keeps_the_agent_alive_until_its_bound() {
        assert_eq!(alive_for(1_000, 500, 1_000), Some(501));
        assert_eq!(alive_for(1_000, 500, 1_500), Some(1), "at the bound");
        assert_eq!(alive_for(1_000, 500, 1_501), None);
        assert_eq!(alive_for(0, 500, 1), None, "no beat yet");
        assert_eq!(
            alive_for(1_000, 500, 10),
            Some(1_491),
            "a beat stamped after now (another CPU) is fresh"
        );
        assert_eq!(alive_for(u64::MAX - 1, u64::MAX, 5), Some(u64::MAX - 4));
        assert_eq!(alive_for(u64::MAX, 1, 0), Some(u64::MAX), "no overflow");
    }

    #[test]
    fn virtual_macs_name_their_vhid() {
        assert_eq!(virtual_mac_vhid(&virtual_mac(7)), Some(7));
        assert_eq!(
            virtual_mac_vhid(&[0x01, 0x00, 0x5e, 0x00, 0x01, 9]),
            Some(9)
        );
        assert_eq!(virtual_mac_vhid(&[0x00, 0x00, 0x5e, 0x00, 0x01, 0]), None);
        assert_eq!(
            virtual_mac_vhid(&[0x00, 0x00, 0x5e, 0x00, 0x02, 1]),
            None,
            "VRRP IPv6"
        );
        assert_eq!(virtual_mac_vhid(&[0x02, 0x00, 0x5e, 0x00, 0x01, 1]), None);
        assert_eq!(virtual_mac_vhid(&[0xff; 6]), None);
    }

    fn group(nodes: &[u8]) -> BalanceGroup {
        let mut group = BalanceGroup::default();
        group.nodes[..nodes.len()].copy_from_slice(nodes);
        group.count = u8::try_from(nodes.len()).unwrap_or(0);
        group
    }

    #[test]
    fn balancing_folds_source_xor_destination_modulo_the_nodes() {
        let two = group(&[3, 4]);
        // 10.0.1.101 ^ 10.0.1.50: the low bytes 101 ^ 50 = 87, odd.
        assert_eq!(balance_node(&two, [10, 0, 1, 101], [10, 0, 1, 50]), Some(4));
        // 100 ^ 50 = 86, even.
        assert_eq!(balance_node(&two, [10, 0, 1, 100], [10, 0, 1, 50]), Some(3));
        let three = group(&[7, 8, 9]);
        assert_eq!(balance_node(&three, [0, 0, 0, 5], [0, 0, 0, 0]), Some(9));
        assert_eq!(balance_node(&group(&[]), [1; 4], [2; 4]), None);
        let mut corrupt = group(&[1]);
        corrupt.count = 200;
        assert_eq!(balance_node(&corrupt, [1; 4], [2; 4]), None);
    }

    #[test]
    fn both_directions_of_a_flow_hash_to_one_node() {
        let nodes = group(&[1, 2, 3, 4, 5]);
        for a in 0..=255u8 {
            let (x, y) = ([10, a, 3, 4], [192, 168, a, 9]);
            assert_eq!(balance_node(&nodes, x, y), balance_node(&nodes, y, x));
        }
    }

    #[test]
    fn every_node_gets_a_share_of_many_sources() {
        let nodes = group(&[1, 2]);
        let mut shares = [0u32; 2];
        for host in 1..=200u8 {
            let node = balance_node(&nodes, [10, 0, 1, host], [10, 0, 1, 50]);
            shares[usize::from(node.unwrap_or(1) - 1)] += 1;
        }
        assert_eq!(shares, [100, 100]);
    }

    #[test]
    fn an_arp_reply_answers_the_requester_with_the_shared_mac() {
        let requester = [0x52, 0x54, 0, 0, 0, 1];
        let mut request = [0u8; ARP_FRAME_LEN];
        request[0..6].copy_from_slice(&[0xff; 6]);
        request[6..12].copy_from_slice(&requester);
        request[12..14].copy_from_slice(&[0x08, 0x06]);
        request[14..22].copy_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
        request[22..28].copy_from_slice(&requester);
        request[28..32].copy_from_slice(&[10, 0, 1, 100]);
        request[38..42].copy_from_slice(&[10, 0, 1, 50]);
        let carpdev = [0x02, 0, 0, 0, 0, 2];
        let shared = multicast_virtual_mac(3);
        let reply = arp_reply(&request, carpdev, shared);
        let mut expected = [0u8; ARP_FRAME_LEN];
        expected[0..6].copy_from_slice(&requester);
        expected[6..12].copy_from_slice(&carpdev);
        expected[12..14].copy_from_slice(&[0x08, 0x06]);
        expected[14..22].copy_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 2]);
        expected[22..28].copy_from_slice(&shared);
        expected[28..32].copy_from_slice(&[10, 0, 1, 50]);
        expected[32..38].copy_from_slice(&requester);
        expected[38..42].copy_from_slice(&[10, 0, 1, 100]);
        assert_eq!(reply, expected);
    }

    #[test]
    fn ipv6_rules() {
        assert_eq!(check_ipv6(36, 255), Ok(()));
        assert_eq!(check_ipv6(36, 64), Err(Verdict::BadTtl));
        assert_eq!(check_ipv6(35, 255), Err(Verdict::BadLen));
    }
}
