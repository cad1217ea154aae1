//! Sending CARP advertisements out of one carpdev.
//!
//! To the multicast groups they leave as whole Ethernet frames from the
//! virtual MAC, as OpenBSD's do: every advertisement then re-teaches the
//! switches where the MASTER is, also after a partition heals without a
//! state change (an IP socket would send from the carpdev's own MAC). To a
//! unicast peer they go through an IP socket, which resolves the peer's MAC.
//!
//! Receiving never goes through these: advertisements reach the agent only
//! from the XDP program's ring buffer. `IPPROTO_RAW` never receives; the
//! IPv6 protocol-112 raw socket would get a copy of every advertisement, so
//! a drop-all socket filter keeps its queue empty.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use carp_common::{CARP_HEADER_LEN, CARP_TTL, IPPROTO_CARP};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::frames::{
    self, CARP_GROUP_V4, CARP_GROUP_V4_MAC, CARP_GROUP_V6, CARP_GROUP_V6_MAC, ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
};
use super::packet_socket::PacketSocket;

/// Where advertisements go: the CARP multicast groups or a unicast peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Multicast,
    Peer(IpAddr),
}

/// Multicast advertisements as Ethernet frames from the virtual MAC.
struct Frames {
    socket: PacketSocket,
    virtual_mac: [u8; 6],
}

impl Frames {
    fn send(&self, group_mac: [u8; 6], ethertype: u16, packet: &[u8]) -> io::Result<()> {
        self.socket.send(&frames::ethernet(
            group_mac,
            self.virtual_mac,
            ethertype,
            packet,
        ))
    }
}

pub struct AdvertSocketV4 {
    route: V4Route,
}

enum V4Route {
    Multicast(Frames),
    Peer { socket: Socket, peer: Ipv4Addr },
}

impl AdvertSocketV4 {
    pub fn open(
        carpdev: &str,
        ifindex: u32,
        destination: Destination,
        virtual_mac: [u8; 6],
    ) -> io::Result<Self> {
        let route = match destination {
            Destination::Peer(IpAddr::V4(peer)) => {
                let socket = Socket::new(
                    Domain::IPV4,
                    Type::RAW,
                    Some(Protocol::from(libc::IPPROTO_RAW)),
                )?;
                socket.bind_device(Some(carpdev.as_bytes()))?;
                socket.set_nonblocking(true)?;
                V4Route::Peer { socket, peer }
            }
            Destination::Peer(IpAddr::V6(_)) | Destination::Multicast => {
                V4Route::Multicast(Frames {
                    socket: PacketSocket::open(ifindex)?,
                    virtual_mac,
                })
            }
        };
        Ok(Self { route })
    }

    /// Sends one advertisement from `source` (the carpdev's first IPv4 address).
    pub fn send(&self, source: Ipv4Addr, carp: &[u8; CARP_HEADER_LEN]) -> io::Result<()> {
        match &self.route {
            V4Route::Multicast(frames) => {
                let packet = frames::advert_v4(source, CARP_GROUP_V4, rand::random(), carp);
                frames.send(CARP_GROUP_V4_MAC, ETHERTYPE_IPV4, &packet)
            }
            V4Route::Peer { socket, peer } => {
                let packet = frames::advert_v4(source, *peer, rand::random(), carp);
                let to = SockAddr::from(SocketAddrV4::new(*peer, 0));
                socket.send_to(&packet, &to).map(|_| ())
            }
        }
    }
}

pub struct AdvertSocketV6 {
    route: V6Route,
}

enum V6Route {
    Multicast { frames: Frames, source: Ipv6Addr },
    Socket { socket: Socket, to: SocketAddrV6 },
}

impl AdvertSocketV6 {
    /// `link_local` is the carpdev's link-local address, the source of
    /// multicast advertisements; without one (still tentative, say) they go
    /// through an IP socket, which picks the source, from the carpdev's MAC.
    pub fn open(
        carpdev: &str,
        ifindex: u32,
        destination: Destination,
        virtual_mac: [u8; 6],
        link_local: Option<Ipv6Addr>,
    ) -> io::Result<Self> {
        if let (Destination::Multicast, Some(source)) = (destination, link_local) {
            return Ok(Self {
                route: V6Route::Multicast {
                    frames: Frames {
                        socket: PacketSocket::open(ifindex)?,
                        virtual_mac,
                    },
                    source,
                },
            });
        }
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
            route: V6Route::Socket {
                socket,
                to: SocketAddrV6::new(address, 0, 0, scope),
            },
        })
    }

    pub fn send(&self, carp: &[u8; CARP_HEADER_LEN]) -> io::Result<()> {
        match &self.route {
            V6Route::Multicast { frames, source } => {
                let packet = frames::advert_v6(*source, CARP_GROUP_V6, carp);
                frames.send(CARP_GROUP_V6_MAC, ETHERTYPE_IPV6, &packet)
            }
            V6Route::Socket { socket, to } => {
                let to = SockAddr::from(SocketAddr::V6(*to));
                socket.send_to(carp, &to).map(|_| ())
            }
        }
    }
}

fn is_link_scoped(address: Ipv6Addr) -> bool {
    address.is_multicast() || address.is_unicast_link_local()
}
