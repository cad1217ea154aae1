//! An `AF_PACKET` socket that sends whole Ethernet frames out of one interface:
//! gratuitous ARP and unsolicited NA must carry the virtual MAC as source,
//! which no IP socket lets us choose.
//!
//! This is the one place the agent talks to the socket API without a safe
//! wrapper (socket2 has no `sockaddr_ll`); the unsafe blocks are small and
//! only pass buffers we own to the kernel.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
}

impl PacketSocket {
    /// A send-only packet socket on `ifindex` (protocol 0: the kernel queues
    /// nothing for us to read, so it can never fill up).
    pub fn open(ifindex: u32) -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd, ifindex })
    }

    /// Makes the interface accept frames for the multicast `mac` (a balanced
    /// interface's shared MAC on a NIC that filters multicast) for as long
    /// as this socket is open.
    pub fn join_multicast(&self, mac: [u8; 6]) -> io::Result<()> {
        // SAFETY: packet_mreq is plain old data; all-zero is a valid value.
        let mut request: libc::packet_mreq = unsafe { std::mem::zeroed() };
        request.mr_ifindex = i32::try_from(self.ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex out of range"))?;
        #[expect(clippy::cast_possible_truncation, reason = "PACKET_MR_MULTICAST is 0")]
        let kind = libc::PACKET_MR_MULTICAST as u16;
        request.mr_type = kind;
        request.mr_alen = 6;
        request.mr_address[..6].copy_from_slice(&mac);
        #[expect(clippy::cast_possible_truncation, reason = "a 16-byte struct")]
        let length = std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t;
        // SAFETY: the request is a live struct of the length given.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&raw const request).cast(),
                length,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Sends one complete Ethernet frame (destination MAC in bytes 0..6,
    /// ethertype in 12..14). Never blocks: a full queue is an error.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        if frame.len() < 14 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame shorter than an Ethernet header",
            ));
        }
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        #[expect(clippy::cast_possible_truncation, reason = "AF_PACKET is 17")]
        let family = libc::AF_PACKET as u16;
        address.sll_family = family;
        address.sll_protocol = u16::from_ne_bytes([frame[12], frame[13]]);
        address.sll_ifindex = i32::try_from(self.ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex out of range"))?;
        address.sll_halen = 6;
        address.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: the frame and the address are live buffers of the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const address).cast(),
                u32::try_from(std::mem::size_of::<libc::sockaddr_ll>()).unwrap_or(20),
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
