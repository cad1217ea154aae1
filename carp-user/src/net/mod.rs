//! The agent's side effects on the network: carp interfaces over rtnetlink,
//! advertisement sockets, gratuitous ARP / unsolicited NA, and sysctls.
//! Frame layouts are pure functions in `frames` so they are tested byte by byte.

pub mod advert_socket;
pub mod frames;
pub mod link;
pub mod link_monitor;
pub mod packet_socket;
pub mod sysctl;

/// The CARP virtual MAC of a vhid: 00:00:5e:00:01:<vhid>.
pub const fn virtual_mac(vhid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x01, vhid]
}

/// `balancing ip`'s shared MAC, 01:00:5e:00:01:<vhid>: multicast, so every
/// switch floods it to every node.
pub const fn multicast_virtual_mac(vhid: u8) -> [u8; 6] {
    [0x01, 0x00, 0x5e, 0x00, 0x01, vhid]
}

/// `00:00:5e:00:01:05` form, for logs and status.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_mac_follows_the_iana_vrrp_block() {
        assert_eq!(format_mac(&virtual_mac(5)), "00:00:5e:00:01:05");
        assert_eq!(format_mac(&virtual_mac(255)), "00:00:5e:00:01:ff");
    }
}
