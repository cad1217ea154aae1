//! ICMP and ICMP6 echo messages for the ping tracker, and the socket filters
//! that keep everyone else's ICMP out of its raw socket. Pure.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Identifier          |        Sequence Number        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Data (our token) ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::Ipv4Addr;

use crate::wire::internet_checksum;

pub const ECHO_REQUEST_V4: u8 = 8;
pub const ECHO_REPLY_V4: u8 = 0;
pub const ECHO_REQUEST_V6: u8 = 128;
pub const ECHO_REPLY_V6: u8 = 129;
const ECHO_HEADER_LEN: usize = 8;
const IPV4_MIN_HEADER_LEN: usize = 20;
const IPPROTO_ICMP: u8 = 1;

/// What identifies our request in a reply: identifier, sequence number and a
/// random token carried as data (an echo reply returns the data unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    pub identifier: u16,
    pub sequence: u16,
    pub token: [u8; 8],
}

impl Echo {
    fn encode(&self, kind: u8) -> Vec<u8> {
        let mut message = Vec::with_capacity(ECHO_HEADER_LEN + self.token.len());
        message.extend_from_slice(&[kind, 0, 0, 0]);
        message.extend_from_slice(&self.identifier.to_be_bytes());
        message.extend_from_slice(&self.sequence.to_be_bytes());
        message.extend_from_slice(&self.token);
        message
    }

    /// An ICMP echo request with its checksum.
    pub fn request_v4(&self) -> Vec<u8> {
        let mut message = self.encode(ECHO_REQUEST_V4);
        let checksum = internet_checksum(&message);
        message[2..4].copy_from_slice(&checksum.to_be_bytes());
        message
    }

    /// An ICMP6 echo request; the checksum stays 0 because the kernel always
    /// computes it on raw ICMP6 sockets (it covers a pseudo-header with the
    /// source address the kernel picks).
    pub fn request_v6(&self) -> Vec<u8> {
        self.encode(ECHO_REQUEST_V6)
    }

    /// Whether `packet`, as an IPv4 raw socket returns it (IP header first),
    /// is the reply to this request from `from`.
    pub fn is_reply_v4(&self, packet: &[u8], from: Ipv4Addr) -> bool {
        let Some(&first) = packet.first() else {
            return false;
        };
        let header_len = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || header_len < IPV4_MIN_HEADER_LEN || packet.len() < header_len {
            return false;
        }
        if packet[9] != IPPROTO_ICMP || packet[12..16] != from.octets() {
            return false;
        }
        let total_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        let Some(message) = packet.get(header_len..total_len.min(packet.len())) else {
            return false;
        };
        // The kernel hands raw sockets ICMP messages it has not verified.
        internet_checksum(message) == 0 && self.is_echo_reply(message, ECHO_REPLY_V4)
    }

    /// Whether `message`, as an ICMP6 raw socket returns it (no IPv6 header;
    /// the kernel has verified the checksum), is the reply to this request.
    pub fn is_reply_v6(&self, message: &[u8]) -> bool {
        self.is_echo_reply(message, ECHO_REPLY_V6)
    }

    fn is_echo_reply(&self, message: &[u8], kind: u8) -> bool {
        message.len() == ECHO_HEADER_LEN + self.token.len()
            && message[0] == kind
            && message[1] == 0
            && message[4..6] == self.identifier.to_be_bytes()
            && message[6..8] == self.sequence.to_be_bytes()
            && message[ECHO_HEADER_LEN..] == self.token
    }
}

// Classic BPF opcodes from <linux/filter.h>.
const BPF_LD: u16 = 0x00;
const BPF_LDX: u16 = 0x01;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_H: u16 = 0x08;
const BPF_B: u16 = 0x10;
const BPF_JEQ: u16 = 0x10;
const BPF_K: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_IND: u16 = 0x40;
const BPF_MSH: u16 = 0xa0;
/// "Accept": keep up to this many bytes of the packet.
const ACCEPT: u32 = 0xffff;

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Accepts only echo replies carrying `identifier`. An IPv4 raw socket's
/// filter sees the IP header first, so the ICMP header is found through the
/// header length (`ldx 4*([0]&0xf)`).
pub fn filter_v4(identifier: u16) -> [libc::sock_filter; 7] {
    [
        insn(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0),
        insn(BPF_LD | BPF_B | BPF_IND, 0, 0, 0),
        insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 3, u32::from(ECHO_REPLY_V4)),
        insn(BPF_LD | BPF_H | BPF_IND, 0, 0, 4),
        insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, u32::from(identifier)),
        insn(BPF_RET | BPF_K, 0, 0, ACCEPT),
        insn(BPF_RET | BPF_K, 0, 0, 0),
    ]
}

/// Accepts only echo replies carrying `identifier`. An ICMP6 raw socket's
/// filter sees the ICMP6 header first.
pub fn filter_v6(identifier: u16) -> [libc::sock_filter; 6] {
    [
        insn(BPF_LD | BPF_B | BPF_ABS, 0, 0, 0),
        insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 3, u32::from(ECHO_REPLY_V6)),
        insn(BPF_LD | BPF_H | BPF_ABS, 0, 0, 4),
        insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, u32::from(identifier)),
        insn(BPF_RET | BPF_K, 0, 0, ACCEPT),
        insn(BPF_RET | BPF_K, 0, 0, 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: Echo = Echo {
        identifier: 0x1234,
        sequence: 0x0007,
        token: *b"carpd-ok",
    };

    /// `request`, turned into the reply a host sends: type changed, checksum
    /// fixed, behind an IPv4 header from `from`.
    fn reply_v4(from: Ipv4Addr, mut message: Vec<u8>) -> Vec<u8> {
        message[0] = ECHO_REPLY_V4;
        message[2..4].fill(0);
        let checksum = internet_checksum(&message);
        message[2..4].copy_from_slice(&checksum.to_be_bytes());
        let total = u16::try_from(20 + message.len()).unwrap_or(u16::MAX);
        let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, IPPROTO_ICMP, 0, 0];
        packet[2..4].copy_from_slice(&total.to_be_bytes());
        packet.extend_from_slice(&from.octets());
        packet.extend_from_slice(&[127, 0, 0, 1]);
        packet.extend_from_slice(&message);
        packet
    }

    #[test]
    fn request_v4_golden_bytes() {
        let request = ECHO.request_v4();
        assert_eq!(
            request,
            [
                8, 0, 0x3c, 0x5a, 0x12, 0x34, 0x00, 0x07, b'c', b'a', b'r', b'p', b'd', b'-', b'o',
                b'k'
            ]
        );
        assert_eq!(internet_checksum(&request), 0);
    }

    #[test]
    fn request_v6_leaves_the_checksum_to_the_kernel() {
        let request = ECHO.request_v6();
        assert_eq!(request[..8], [128, 0, 0, 0, 0x12, 0x34, 0x00, 0x07]);
        assert_eq!(&request[8..], b"carpd-ok");
    }

    #[test]
    fn accepts_its_own_reply_v4() {
        let from = Ipv4Addr::new(192, 0, 2, 254);
        assert!(ECHO.is_reply_v4(&reply_v4(from, ECHO.request_v4()), from));
    }

    #[test]
    fn rejects_everything_else_v4() {
        let from = Ipv4Addr::new(192, 0, 2, 254);
        let good = reply_v4(from, ECHO.request_v4());
        let other = |change: fn(&mut Echo)| {
            let mut echo = ECHO;
            change(&mut echo);
            reply_v4(from, echo.request_v4())
        };
        let mut bad_checksum = good.clone();
        bad_checksum[22] ^= 1;
        let mut not_icmp = good.clone();
        not_icmp[9] = 17;
        let mut request = good.clone();
        request[20] = ECHO_REQUEST_V4;
        let mut with_trailer = good.clone();
        with_trailer.extend_from_slice(&[0, 0]);
        let cases: [(&str, Vec<u8>, Ipv4Addr); 11] = [
            ("another identifier", other(|e| e.identifier ^= 1), from),
            ("another sequence", other(|e| e.sequence ^= 1), from),
            ("another token", other(|e| e.token[0] ^= 1), from),
            ("another source", good.clone(), Ipv4Addr::new(192, 0, 2, 1)),
            ("bad checksum", bad_checksum, from),
            ("not ICMP", not_icmp, from),
            ("a request", request, from),
            ("truncated", good[..30].to_vec(), from),
            ("header only", good[..20].to_vec(), from),
            ("empty", Vec::new(), from),
            (
                "ignored trailer, but total length says 36",
                with_trailer,
                from,
            ),
        ];
        for (name, packet, source) in cases {
            let accepted = ECHO.is_reply_v4(&packet, source);
            assert_eq!(accepted, name.starts_with("ignored"), "{name}");
        }
    }

    #[test]
    fn honours_ipv4_options() {
        let from = Ipv4Addr::new(192, 0, 2, 254);
        let mut packet = reply_v4(from, ECHO.request_v4());
        packet[0] = 0x46;
        packet.splice(20..20, [1, 1, 1, 0]);
        let total = u16::try_from(packet.len()).unwrap_or(u16::MAX);
        packet[2..4].copy_from_slice(&total.to_be_bytes());
        assert!(ECHO.is_reply_v4(&packet, from));
        packet[0] = 0x44;
        assert!(!ECHO.is_reply_v4(&packet, from), "header length below 20");
    }

    #[test]
    fn accepts_only_its_own_reply_v6() {
        let mut reply = ECHO.request_v6();
        reply[0] = ECHO_REPLY_V6;
        assert!(ECHO.is_reply_v6(&reply));
        assert!(!ECHO.is_reply_v6(&ECHO.request_v6()));
        for index in [1, 4, 5, 6, 7, 8, 15] {
            let mut changed = reply.clone();
            changed[index] ^= 1;
            assert!(!ECHO.is_reply_v6(&changed), "byte {index} changed");
        }
        assert!(!ECHO.is_reply_v6(&reply[..15]));
        assert!(!ECHO.is_reply_v6(&[]));
    }

    #[test]
    fn filters_jump_to_their_last_two_instructions() {
        // Every conditional jump lands on "accept" or "drop" at the end.
        let v4 = filter_v4(0xbeef);
        let v6 = filter_v6(0xbeef);
        for filter in [&v4[..], &v6[..]] {
            let last = filter.len() - 1;
            for (index, insn) in filter.iter().enumerate() {
                if insn.code == BPF_JMP | BPF_JEQ | BPF_K {
                    assert_eq!(index + 1 + usize::from(insn.jf), last);
                    assert!(index + 1 + usize::from(insn.jt) < last);
                }
            }
            assert_eq!(filter[last - 1].k, ACCEPT);
            assert_eq!(filter[last].k, 0);
            assert_eq!(filter[last - 2].k, 0xbeef);
        }
    }
}
