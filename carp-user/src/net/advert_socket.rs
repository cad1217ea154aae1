//! Sockets that send CARP advertisements out of one carpdev.
//!
//! Receiving never goes through these: advertisements reach the agent only
//! from the XDP program's ring buffer. IPv4 uses `IPPROTO_RAW` (header built by
//! us, so TOS, DF, id and TTL are exactly OpenBSD's) which never receives.
//! IPv6 needs a protocol-112 raw socket, which would get a copy of every
//! advertisement; a drop-all socket filter keeps its queue empty.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use carp_common::{CARP_HEADER_LEN, CARP_TTL, IPPROTO_CARP};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::frames::{self, CARP_GROUP_V4, CARP_GROUP_V6};

/// Where advertisements go: the CARP multicast groups or a unicast peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Multicast,
    Peer(IpAddr),
}

pub struct AdvertSocketV4 {
    socket: Socket,
    destination: Ipv4Addr,
}

impl AdvertSocketV4 {
    pub fn open(carpdev: &str, destination: Destination) -> io::Result<Self> {
        let socket = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )?;
        socket.bind_device(Some(carpdev.as_bytes()))?;
        socket.set_multicast_loop_v4(false)?;
        socket.set_nonblocking(true)?;
        let destination = match destination {
            Destination::Peer(IpAddr::V4(peer)) => peer,
            Destination::Peer(IpAddr::V6(_)) | Destination::Multicast => CARP_GROUP_V4,
        };
        Ok(Self {
            socket,
            destination,
        })
    }

    /// Sends one advertisement from `source` (the carpdev's first IPv4 address).
    pub fn send(&self, source: Ipv4Addr, carp: &[u8; CARP_HEADER_LEN]) -> io::Result<()> {
        let packet = frames::advert_v4(source, self.destination, rand::random(), carp);
        let to = SockAddr::from(SocketAddrV4::new(self.destination, 0));
        self.socket.send_to(&packet, &to).map(|_| ())
    }
}

pub struct AdvertSocketV6 {
    socket: Socket,
    destination: SocketAddrV6,
}

impl AdvertSocketV6 {
    pub fn open(carpdev: &str, ifindex: u32, destination: Destination) -> io::Result<Self> {
        let socket = Socket::new(
            Domain::IPV6,
            Type::RAW,
            Some(Protocol::from(i32::from(IPPROTO_CARP))),
        )?;
        socket.bind_device(Some(carpdev.as_bytes()))?;
        socket.set_multicast_if_v6(ifindex)?;
        socket.set_multicast_hops_v6(u32::from(CARP_TTL))?;
        socket.set_unicast_hops_v6(u32::from(CARP_TTL))?;
        socket.set_multicast_loop_v6(false)?;
        // "ret #0": accept nothing, so copies of incoming adverts never queue.
        socket.attach_filter(&[libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0,
        }])?;
        socket.set_nonblocking(true)?;
        let address = match destination {
            Destination::Peer(IpAddr::V6(peer)) => peer,
            Destination::Peer(IpAddr::V4(_)) | Destination::Multicast => CARP_GROUP_V6,
        };
        let scope = if is_link_scoped(address) { ifindex } else { 0 };
        Ok(Self {
            socket,
            destination: SocketAddrV6::new(address, 0, 0, scope),
        })
    }

    /// Sends one advertisement; the kernel picks the carpdev's link-local source.
    pub fn send(&self, carp: &[u8; CARP_HEADER_LEN]) -> io::Result<()> {
        let to = SockAddr::from(SocketAddr::V6(self.destination));
        self.socket.send_to(carp, &to).map(|_| ())
    }
}

fn is_link_scoped(address: Ipv6Addr) -> bool {
    address.is_multicast() || address.is_unicast_link_local()
}
