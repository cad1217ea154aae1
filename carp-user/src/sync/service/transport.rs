//! The sync link: one UDP socket on the syncdev, to the peer (`syncpeer`)
//! or to pfsync's group 224.0.0.240 with a TTL of 1. Datagrams are sync
//! messages (`sync::wire`); authenticity is theirs to prove, the socket only
//! moves bytes and never blocks the runtime.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::sync::wire::MAX_DATAGRAM;

/// pfsync's multicast group: link-local scope, never routed.
pub const SYNC_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 240);
/// Room for a burst of a bulk update (about 2,800 full datagrams) while the
/// receiver installs the previous one.
const SOCKET_BUFFER: usize = 4 << 20;

pub struct SyncSocket {
    socket: UdpSocket,
    destination: SocketAddr,
    /// Only datagrams from here count; anything else is dropped unread.
    peer: Option<IpAddr>,
}

impl SyncSocket {
    /// Opens the socket on `syncdev` (`local` is its address of the peer's
    /// family, or its IPv4 address for multicast). Must be called inside
    /// the tokio runtime.
    pub fn open(syncdev: &str, local: IpAddr, peer: Option<IpAddr>, port: u16) -> io::Result<Self> {
        let (domain, any) = match local {
            IpAddr::V4(_) => (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            IpAddr::V6(_) => (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        };
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.bind_device(Some(syncdev.as_bytes()))?;
        socket.set_nonblocking(true)?;
        // Best effort: a small buffer only costs resyncs, never correctness.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        let destination = match (peer, local) {
            (Some(peer), _) => SocketAddr::new(peer, port),
            (None, IpAddr::V4(local)) => {
                socket.join_multicast_v4(&SYNC_GROUP_V4, &local)?;
                socket.set_multicast_if_v4(&local)?;
                socket.set_multicast_loop_v4(false)?;
                socket.set_multicast_ttl_v4(1)?;
                SocketAddr::new(IpAddr::V4(SYNC_GROUP_V4), port)
            }
            (None, IpAddr::V6(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "multicast sync needs an IPv4 address on the syncdev",
                ));
            }
        };
        socket.bind(&SocketAddr::new(any, port).into())?;
        Ok(Self {
            socket: UdpSocket::from_std(socket.into())?,
            destination,
            peer,
        })
    }

    /// Sends one datagram, waiting (without blocking the runtime) while the
    /// socket's queue is full: a bulk update paces itself this way.
    pub async fn send(&self, datagram: &[u8]) -> io::Result<()> {
        self.socket.send_to(datagram, self.destination).await?;
        Ok(())
    }

    /// The next datagram from the peer (from anyone, for multicast) into
    /// `buffer`; how long it is. Datagrams from elsewhere are counted in
    /// `strangers` and skipped.
    pub async fn recv(&self, buffer: &mut [u8], strangers: &mut u64) -> io::Result<usize> {
        loop {
            let (length, from) = self.socket.recv_from(buffer).await?;
            if self.accepts(from) {
                return Ok(length);
            }
            *strangers += 1;
        }
    }

    /// A datagram already queued, if any: for draining before a takeover.
    pub fn try_recv(&self, buffer: &mut [u8], strangers: &mut u64) -> io::Result<Option<usize>> {
        loop {
            match self.socket.try_recv_from(buffer) {
                Ok((length, from)) if self.accepts(from) => return Ok(Some(length)),
                Ok(_) => *strangers += 1,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(error) => return Err(error),
            }
        }
    }

    fn accepts(&self, from: SocketAddr) -> bool {
        self.peer.is_none_or(|peer| peer == from.ip())
    }
}

/// A buffer for one datagram of any size the protocol allows.
pub fn datagram_buffer() -> Vec<u8> {
    vec![0; MAX_DATAGRAM]
}
