//! The ping tracker: one ICMP / ICMP6 echo request per check, sent by carpd
//! itself over a raw socket so it needs no ping binary and no fork.
//!
//! A raw ICMP socket gets a copy of every ICMP message the host receives. Three
//! layers keep others' out: a socket filter passes only echo replies with our
//! identifier, `connect` makes the kernel pass only packets from the target,
//! and every packet read is matched on identifier, sequence, token (and, for
//! IPv4, source). A check reads at most `MAX_PACKETS` packets.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::Outcome;
use super::icmp::{self, Echo};

/// Packets read in one check before it gives up; matching replies are found
/// long before this unless someone floods us with look-alikes.
const MAX_PACKETS: usize = 64;
/// Echo replies to our requests are 36 (IPv4) or 16 (ICMP6) bytes; anything
/// cut short by this buffer is not ours.
const RECEIVE_BUFFER: usize = 256;

#[derive(Debug, thiserror::Error)]
enum PingError {
    #[error("cannot open a raw ICMP socket: {0}")]
    Open(io::Error),
    #[error("cannot bind to {interface}: {source}")]
    Bind {
        interface: String,
        source: io::Error,
    },
    #[error("cannot reach {target}: {source}")]
    Connect { target: IpAddr, source: io::Error },
    #[error("sending to {target}: {source}")]
    Send { target: IpAddr, source: io::Error },
    #[error("receiving from {target}: {source}")]
    Receive { target: IpAddr, source: io::Error },
    #[error("no reply from {target} among {MAX_PACKETS} ICMP packets")]
    TooManyPackets { target: IpAddr },
}

/// One ping tracker: its identifier stays, its sequence counts checks.
#[derive(Debug)]
pub struct Ping {
    target: IpAddr,
    interface: Option<String>,
    identifier: u16,
    sequence: u16,
}

impl Ping {
    pub fn new(target: IpAddr, interface: Option<String>) -> Self {
        Self {
            target,
            interface,
            identifier: rand::random(),
            sequence: rand::random(),
        }
    }

    /// Good when the echo reply arrives within `timeout`; the socket is
    /// closed when the check ends either way.
    pub async fn check(&mut self, timeout: Duration) -> Outcome {
        self.sequence = self.sequence.wrapping_add(1);
        let echo = Echo {
            identifier: self.identifier,
            sequence: self.sequence,
            token: rand::random(),
        };
        match tokio::time::timeout(timeout, self.exchange(&echo)).await {
            Ok(Ok(())) => Outcome::good(format!("echo reply from {}", self.target)),
            Ok(Err(error)) => Outcome::bad(error.to_string()),
            Err(_elapsed) => Outcome::bad(format!(
                "no reply from {} within {} ms",
                self.target,
                timeout.as_millis()
            )),
        }
    }

    async fn exchange(&self, echo: &Echo) -> Result<(), PingError> {
        let target = self.target;
        let socket = open(target, self.interface.as_deref(), echo.identifier)?;
        // SAFETY: the socket owns its fd and moves into the AsyncFd, so the fd
        // stays open for as long as it is registered.
        let socket = unsafe {
            AsyncFd::register_with_interest(socket, Interest::READABLE | Interest::WRITABLE)
        }
        .map_err(|error| PingError::Open(io::Error::from(error)))?;
        let request = match target {
            IpAddr::V4(_) => echo.request_v4(),
            IpAddr::V6(_) => echo.request_v6(),
        };
        socket
            .async_io(Interest::WRITABLE, |socket| socket.send(&request))
            .await
            .map_err(|source| PingError::Send { target, source })?;
        let mut buffer = [0u8; RECEIVE_BUFFER];
        for _ in 0..MAX_PACKETS {
            let length = socket
                .async_io(Interest::READABLE, |mut socket| socket.read(&mut buffer))
                .await
                .map_err(|source| PingError::Receive { target, source })?;
            let packet = &buffer[..length];
            let ours = match target {
                IpAddr::V4(from) => echo.is_reply_v4(packet, from),
                IpAddr::V6(_) => echo.is_reply_v6(packet),
            };
            if ours {
                return Ok(());
            }
        }
        Err(PingError::TooManyPackets { target })
    }
}

/// A non-blocking raw socket that only receives echo replies with
/// `identifier` from `target`, bound to `interface` when given.
fn open(target: IpAddr, interface: Option<&str>, identifier: u16) -> Result<Socket, PingError> {
    let socket = match target {
        IpAddr::V4(_) => Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)),
        IpAddr::V6(_) => Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)),
    }
    .map_err(PingError::Open)?;
    match target {
        IpAddr::V4(_) => socket.attach_filter(&icmp::filter_v4(identifier)),
        IpAddr::V6(_) => socket.attach_filter(&icmp::filter_v6(identifier)),
    }
    .map_err(PingError::Open)?;
    socket.set_nonblocking(true).map_err(PingError::Open)?;
    if let Some(interface) = interface {
        socket
            .bind_device(Some(interface.as_bytes()))
            .map_err(|source| PingError::Bind {
                interface: interface.to_owned(),
                source,
            })?;
    }
    // Connected, the kernel drops packets from other sources before they are
    // queued, and reports ICMP errors for our requests (host unreachable) as
    // socket errors. A link-local IPv6 target takes its scope from the
    // interface the socket is bound to.
    socket
        .connect(&SockAddr::from(SocketAddr::new(target, 0)))
        .map_err(|source| PingError::Connect { target, source })?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Instant;

    use super::*;

    fn has_ipv6_loopback() -> bool {
        std::fs::read_to_string("/proc/net/if_inet6")
            .is_ok_and(|table| table.lines().any(|line| line.starts_with(&"0".repeat(31))))
    }

    #[tokio::test]
    async fn loopback_answers_v4() {
        let mut ping = Ping::new(IpAddr::V4(Ipv4Addr::LOCALHOST), None);
        for _ in 0..3 {
            let outcome = ping.check(Duration::from_secs(2)).await;
            assert!(outcome.ok, "{}", outcome.detail);
            assert_eq!(outcome.detail, "echo reply from 127.0.0.1");
        }
        let mut bound = Ping::new(IpAddr::V4(Ipv4Addr::LOCALHOST), Some("lo".into()));
        let outcome = bound.check(Duration::from_secs(2)).await;
        assert!(outcome.ok, "{}", outcome.detail);
    }

    #[tokio::test]
    async fn loopback_answers_v6() {
        if !has_ipv6_loopback() {
            eprintln!("skipped: no ::1 on this host");
            return;
        }
        let mut ping = Ping::new(IpAddr::V6(Ipv6Addr::LOCALHOST), Some("lo".into()));
        for _ in 0..3 {
            let outcome = ping.check(Duration::from_secs(2)).await;
            assert!(outcome.ok, "{}", outcome.detail);
        }
    }

    /// The socket filter drops our own echo request (looped back on `lo`)
    /// and replies with another identifier: loopback answers in order, so
    /// the first packet read is the reply to the second request.
    #[test]
    fn the_filter_passes_only_replies_with_our_identifier() {
        let mut targets = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
        if has_ipv6_loopback() {
            targets.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
        }
        for target in targets {
            let ours = Echo {
                identifier: rand::random(),
                sequence: 1,
                token: rand::random(),
            };
            let other = Echo {
                identifier: ours.identifier.wrapping_add(1),
                ..ours
            };
            let socket = open(target, Some("lo"), ours.identifier)
                .unwrap_or_else(|e| panic!("{target}: {e}"));
            let configure = socket
                .set_nonblocking(false)
                .and_then(|()| socket.set_read_timeout(Some(Duration::from_secs(2))));
            configure.unwrap_or_else(|e| panic!("{target}: {e}"));
            for echo in [other, ours] {
                let request = match target {
                    IpAddr::V4(_) => echo.request_v4(),
                    IpAddr::V6(_) => echo.request_v6(),
                };
                (&socket)
                    .write_all(&request)
                    .unwrap_or_else(|e| panic!("{target}: {e}"));
            }
            let mut buffer = [0u8; RECEIVE_BUFFER];
            let length = (&socket)
                .read(&mut buffer)
                .unwrap_or_else(|e| panic!("{target}: {e}"));
            let first = &buffer[..length];
            let is_ours = match target {
                IpAddr::V4(from) => ours.is_reply_v4(first, from),
                IpAddr::V6(_) => ours.is_reply_v6(first),
            };
            assert!(is_ours, "{target}: first packet read {first:02x?}");
        }
    }

    #[tokio::test]
    async fn a_missing_interface_fails_at_once() {
        let mut ping = Ping::new(IpAddr::V4(Ipv4Addr::LOCALHOST), Some("carpnosuch0".into()));
        let started = Instant::now();
        let outcome = ping.check(Duration::from_secs(2)).await;
        assert!(!outcome.ok);
        assert!(
            outcome.detail.starts_with("cannot bind to carpnosuch0: "),
            "{}",
            outcome.detail
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    /// Out of `lo`, a documentation address is either refused by the kernel
    /// (no route) or loops back to a host that does not own it and drops it:
    /// no reply either way, on any host.
    #[tokio::test]
    async fn an_address_nobody_answers_fails_within_the_timeout() {
        let mut targets = vec![IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))];
        if has_ipv6_loopback() {
            targets.push(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)));
        }
        for target in targets {
            let mut ping = Ping::new(target, Some("lo".into()));
            let started = Instant::now();
            let outcome = ping.check(Duration::from_millis(300)).await;
            assert!(!outcome.ok, "{target}: {}", outcome.detail);
            assert!(
                started.elapsed() < Duration::from_millis(800),
                "{target}: {:?}",
                started.elapsed()
            );
        }
    }
}
