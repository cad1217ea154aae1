//! Byte layouts of what the agent sends besides the CARP header itself.

use std::net::{Ipv4Addr, Ipv6Addr};

use carp_common::{CARP_HEADER_LEN, CARP_TTL, IPPROTO_CARP};

/// 224.0.0.18, where IPv4 advertisements go unless a unicast peer is set.
pub const CARP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// `ff02::12`, where IPv6 advertisements go unless a unicast peer is set.
pub const CARP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// The Ethernet addresses of 224.0.0.18 and `ff02::12`.
pub const CARP_GROUP_V4_MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
pub const CARP_GROUP_V6_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 0x12];
/// The Ethernet address of `ff02::1` (all nodes).
pub const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

const IPTOS_LOWDELAY: u8 = 0x10;
const IP_DF: u16 = 0x4000;
const IPV4_HEADER_LEN: usize = 20;
/// An IPv4 CARP advertisement: header plus CARP header.
pub const ADVERT_V4_LEN: usize = IPV4_HEADER_LEN + CARP_HEADER_LEN;

/// The IPv4 packet of an advertisement as OpenBSD sends it: TOS low-delay,
/// DF, the caller's random id, TTL 255, protocol 112.
pub fn advert_v4(
    source: Ipv4Addr,
    destination: Ipv4Addr,
    id: u16,
    carp: &[u8; CARP_HEADER_LEN],
) -> [u8; ADVERT_V4_LEN] {
    let mut packet = [0u8; ADVERT_V4_LEN];
    packet[0] = 0x45;
    packet[1] = IPTOS_LOWDELAY;
    packet[2..4].copy_from_slice(&u16::try_from(ADVERT_V4_LEN).unwrap_or(56).to_be_bytes());
    packet[4..6].copy_from_slice(&id.to_be_bytes());
    packet[6..8].copy_from_slice(&IP_DF.to_be_bytes());
    packet[8] = CARP_TTL;
    packet[9] = IPPROTO_CARP;
    packet[12..16].copy_from_slice(&source.octets());
    packet[16..20].copy_from_slice(&destination.octets());
    let sum = crate::wire::internet_checksum(&packet[..IPV4_HEADER_LEN]);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    packet[IPV4_HEADER_LEN..].copy_from_slice(carp);
    packet
}

const IPV6_HEADER_LEN: usize = 40;
/// An IPv6 CARP advertisement: header plus CARP header.
pub const ADVERT_V6_LEN: usize = IPV6_HEADER_LEN + CARP_HEADER_LEN;

/// The IPv6 packet of an advertisement: hop limit 255, next header 112
/// (the CARP checksum covers the CARP header alone, so no pseudo-header).
pub fn advert_v6(
    source: Ipv6Addr,
    destination: Ipv6Addr,
    carp: &[u8; CARP_HEADER_LEN],
) -> [u8; ADVERT_V6_LEN] {
    let mut packet = [0u8; ADVERT_V6_LEN];
    packet[0] = 0x60;
    packet[4..6].copy_from_slice(&u16::try_from(CARP_HEADER_LEN).unwrap_or(36).to_be_bytes());
    packet[6] = IPPROTO_CARP;
    packet[7] = CARP_TTL;
    packet[8..24].copy_from_slice(&source.octets());
    packet[24..40].copy_from_slice(&destination.octets());
    packet[IPV6_HEADER_LEN..].copy_from_slice(carp);
    packet
}

/// An Ethernet frame around `payload`.
pub fn ethernet(destination: [u8; 6], source: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&destination);
    frame.extend_from_slice(&source);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Length of a gratuitous ARP frame (without FCS and padding).
pub const GARP_LEN: usize = 42;

/// A gratuitous ARP request saying `vip` is at `virtual_mac`, sent from
/// `from` (the virtual MAC itself, but for a balanced interface whose
/// shared MAC no frame may leave from): sender and target protocol address
/// are both the VIP, as OpenBSD's `carp_send_arp` does.
pub fn gratuitous_arp(from: [u8; 6], virtual_mac: [u8; 6], vip: Ipv4Addr) -> [u8; GARP_LEN] {
    let mut frame = [0u8; GARP_LEN];
    frame[0..6].copy_from_slice(&BROADCAST_MAC);
    frame[6..12].copy_from_slice(&from);
    frame[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let arp = &mut frame[14..];
    arp[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    arp[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    arp[4] = 6;
    arp[5] = 4;
    arp[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    arp[8..14].copy_from_slice(&virtual_mac);
    arp[14..18].copy_from_slice(&vip.octets());
    // Target hardware address stays zero.
    arp[24..28].copy_from_slice(&vip.octets());
    frame
}

const ICMPV6: u8 = 58;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const NA_FLAG_ROUTER: u8 = 0x80;
const NA_FLAG_OVERRIDE: u8 = 0x20;
const ND_OPT_TARGET_LINKADDR: u8 = 2;
/// Ethernet + IPv6 + NA (24) + target link-layer option (8).
pub const UNSOLICITED_NA_LEN: usize = 14 + 40 + 32;

/// An unsolicited neighbour advertisement (override set, router set when we
/// forward) to all nodes, announcing that `vip` now lives at the virtual MAC.
pub fn unsolicited_na(
    virtual_mac: [u8; 6],
    vip: Ipv6Addr,
    router: bool,
) -> [u8; UNSOLICITED_NA_LEN] {
    let mut frame = [0u8; UNSOLICITED_NA_LEN];
    frame[0..6].copy_from_slice(&ALL_NODES_MAC);
    frame[6..12].copy_from_slice(&virtual_mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let (ip, icmp) = frame[14..].split_at_mut(40);
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = ICMPV6;
    ip[7] = 255; // ND requires hop limit 255
    ip[8..24].copy_from_slice(&vip.octets());
    ip[24..40].copy_from_slice(&ALL_NODES.octets());
    icmp[0] = ND_NEIGHBOR_ADVERT;
    icmp[4] = NA_FLAG_OVERRIDE | if router { NA_FLAG_ROUTER } else { 0 };
    icmp[8..24].copy_from_slice(&vip.octets());
    icmp[24] = ND_OPT_TARGET_LINKADDR;
    icmp[25] = 1; // in units of 8 bytes
    icmp[26..32].copy_from_slice(&virtual_mac);
    let sum = icmpv6_checksum(vip, ALL_NODES, icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    frame
}

/// `ICMPv6` checksum: the internet checksum over the IPv6 pseudo-header and the message.
fn icmpv6_checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40 + message.len());
    pseudo.extend_from_slice(&source.octets());
    pseudo.extend_from_slice(&destination.octets());
    pseudo.extend_from_slice(&u32::try_from(message.len()).unwrap_or(0).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, ICMPV6]);
    pseudo.extend_from_slice(message);
    crate::wire::internet_checksum(&pseudo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::virtual_mac;
    use crate::wire::internet_checksum;

    #[test]
    fn advert_v6_and_its_frame() {
        let carp = [0xcdu8; CARP_HEADER_LEN];
        let source = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
        let packet = advert_v6(source, CARP_GROUP_V6, &carp);
        assert_eq!(packet[0] >> 4, 6);
        assert_eq!(u16::from_be_bytes([packet[4], packet[5]]), 36);
        assert_eq!((packet[6], packet[7]), (112, 255));
        assert_eq!(&packet[8..24], &source.octets());
        assert_eq!(&packet[24..40], &CARP_GROUP_V6.octets());
        assert_eq!(&packet[40..], &carp);
        let frame = ethernet(CARP_GROUP_V6_MAC, virtual_mac(3), ETHERTYPE_IPV6, &packet);
        assert_eq!(&frame[0..6], &[0x33, 0x33, 0, 0, 0, 0x12]);
        assert_eq!(&frame[6..12], &virtual_mac(3));
        assert_eq!(&frame[12..14], &[0x86, 0xdd]);
        assert_eq!(&frame[14..], &packet);
    }

    #[test]
    fn advert_v4_header_fields_are_openbsds() {
        let carp = [0xabu8; CARP_HEADER_LEN];
        let packet = advert_v4(Ipv4Addr::new(192, 0, 2, 2), CARP_GROUP_V4, 0x1234, &carp);
        assert_eq!(packet[0], 0x45);
        assert_eq!(packet[1], 0x10, "TOS low-delay");
        assert_eq!(u16::from_be_bytes([packet[2], packet[3]]), 56);
        assert_eq!(&packet[4..6], &[0x12, 0x34]);
        assert_eq!(&packet[6..8], &[0x40, 0x00], "DF, no fragment offset");
        assert_eq!(packet[8], 255);
        assert_eq!(packet[9], 112);
        assert_eq!(&packet[12..16], &[192, 0, 2, 2]);
        assert_eq!(&packet[16..20], &[224, 0, 0, 18]);
        assert_eq!(internet_checksum(&packet[..20]), 0, "header checksum valid");
        assert_eq!(&packet[20..], &carp);
    }

    #[test]
    fn gratuitous_arp_claims_the_vip_for_the_virtual_mac() {
        let vip = Ipv4Addr::new(10, 0, 1, 1);
        let frame = gratuitous_arp(virtual_mac(7), virtual_mac(7), vip);
        let expected: [u8; GARP_LEN] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x5e, 0x00, 0x01, 0x07, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x00, 0x00, 0x5e, 0x00, 0x01, 0x07, 10,
            0, 1, 1, 0, 0, 0, 0, 0, 0, 10, 0, 1, 1,
        ];
        assert_eq!(frame, expected);
        let carpdev = [0x02, 0, 0, 0, 0, 9];
        let shared = [0x01, 0x00, 0x5e, 0x00, 0x01, 0x03];
        let balanced = gratuitous_arp(carpdev, shared, vip);
        assert_eq!(&balanced[6..12], &carpdev, "leaves from the carpdev");
        assert_eq!(&balanced[22..28], &shared, "claims the shared MAC");
    }

    #[test]
    fn unsolicited_na_is_well_formed() {
        let vip: Ipv6Addr = "2001:db8::1".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        let frame = unsolicited_na(virtual_mac(3), vip, true);
        assert_eq!(&frame[0..6], &ALL_NODES_MAC);
        assert_eq!(&frame[6..12], &virtual_mac(3));
        assert_eq!(&frame[12..14], &[0x86, 0xdd]);
        let ip = &frame[14..54];
        assert_eq!(ip[6], 58);
        assert_eq!(ip[7], 255);
        assert_eq!(&ip[8..24], &vip.octets());
        let icmp = &frame[54..];
        assert_eq!(icmp[0], 136);
        assert_eq!(icmp[4], 0xa0, "router and override, not solicited");
        assert_eq!(&icmp[8..24], &vip.octets());
        assert_eq!(&icmp[24..26], &[2, 1]);
        assert_eq!(&icmp[26..32], &virtual_mac(3));
        // A correct checksum makes the pseudo-header sum fold to zero.
        assert_eq!(icmpv6_checksum(vip, ALL_NODES, icmp), 0);
        let plain = unsolicited_na(virtual_mac(3), vip, false);
        assert_eq!(plain[54 + 4], 0x20);
    }
}
