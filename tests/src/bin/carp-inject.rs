//! carp-inject: sends hand-made CARP advertisements, good or deliberately
//! broken, so namespace tests can check what carpd accepts, drops and counts.
//!
//! The CARP header comes from carpd's own codec and HMAC (`carp::wire`): a
//! correctly signed advertisement from here is one carpd must accept. Each
//! option then breaks exactly one thing (TTL, checksum, version, pass, vhid)
//! and leaves the rest valid, so the receiver's verdict names that one thing.
//!
//! IPv4 goes out of a raw socket with `IP_HDRINCL` and a header built here
//! (the TTL is ours to choose); IPv6 out of a protocol-112 raw socket with
//! the hop limit set per socket. Both are bound to `--dev`.
//!
//! ```text
//! ip netns exec client carp-inject --dev eth0 --src 10.0.1.100 --vhid 1 \
//!     --pass lab-secret --addresses 10.0.1.1,fd00:1::1 --advbase 0 --ttl 254 --count 3
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use carp::net::frames::{self, ADVERT_V4_LEN, CARP_GROUP_V4, CARP_GROUP_V6};
use carp::wire::{Advertisement, Authenticator, Key, internet_checksum};
use carp_common::{CARP_HEADER_LEN, CARP_TTL, CARP_TYPE_ADVERTISEMENT, CARP_VERSION, IPPROTO_CARP};
use clap::Parser;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const IPV4_HEADER_LEN: usize = 20;

/// Send CARP advertisements (for tests). A later option overrides an earlier
/// one, so a defect can be appended to a base command line.
#[derive(Parser, Debug)]
#[command(name = "carp-inject", args_override_self = true)]
struct Args {
    /// Interface to send on.
    #[arg(long)]
    dev: String,
    /// Source address; IPv6 sends an IPv6 advertisement. Default: the kernel's choice (IPv4).
    #[arg(long)]
    src: Option<IpAddr>,
    /// Destination. Default: `224.0.0.18`, or `ff02::12` for IPv6.
    #[arg(long)]
    dst: Option<IpAddr>,
    /// Virtual host id in the header (and the HMAC).
    #[arg(long, default_value_t = 1)]
    vhid: u8,
    /// Passphrase for the HMAC (at most 19 bytes).
    #[arg(long, default_value = "")]
    pass: String,
    /// Seconds; with advskew the sender's interval (lower wins).
    #[arg(long, default_value_t = 1)]
    advbase: u8,
    /// 1/256 seconds added to advbase.
    #[arg(long, default_value_t = 0)]
    advskew: u8,
    /// The sender's demote sum (lower wins, before the interval).
    #[arg(long, default_value_t = 0)]
    demote: u8,
    /// The 64-bit counter (the same in every packet sent).
    #[arg(long, default_value_t = 1)]
    counter: u64,
    /// The vhid's addresses the HMAC covers, comma separated (a /prefix is ignored).
    #[arg(long, value_delimiter = ',', value_parser = parse_address)]
    addresses: Vec<IpAddr>,
    /// IPv4 TTL or IPv6 hop limit.
    #[arg(long, default_value_t = CARP_TTL)]
    ttl: u8,
    /// Send a wrong CARP checksum (everything else correct).
    #[arg(long)]
    bad_checksum: bool,
    /// CARP version in the header (the checksum is computed over it).
    #[arg(long, default_value_t = CARP_VERSION, value_parser = clap::value_parser!(u8).range(0..16))]
    version: u8,
    /// How many identical advertisements to send, back to back.
    #[arg(long, default_value_t = 1)]
    count: u32,
}

/// `192.0.2.1` or `192.0.2.1/24` (as a config's `addresses` has them).
fn parse_address(text: &str) -> Result<IpAddr, String> {
    let address = text.split_once('/').map_or(text, |(address, _)| address);
    address
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address"))
}

/// The 36-byte CARP header `args` describe.
fn carp_header(args: &Args) -> anyhow::Result<[u8; CARP_HEADER_LEN]> {
    let key = Key::from_passphrase(args.pass.as_bytes()).context("--pass")?;
    let auth = Authenticator::new(&key, args.vhid, &args.addresses);
    let mut header = Advertisement {
        vhid: args.vhid,
        advskew: args.advskew,
        demote: args.demote,
        advbase: args.advbase,
        counter: args.counter,
        digest: auth.sign(args.counter),
    }
    .encode();
    if args.version != CARP_VERSION {
        header[0] = (args.version << 4) | CARP_TYPE_ADVERTISEMENT;
        // A valid checksum over the wrong version: only the version is bad.
        header[6..8].fill(0);
        let sum = internet_checksum(&header);
        header[6..8].copy_from_slice(&sum.to_be_bytes());
    }
    if args.bad_checksum {
        // Flipping the lowest bit moves the one's-complement sum by exactly
        // one, which never lands on another representation of zero.
        header[7] ^= 1;
    }
    Ok(header)
}

/// An IPv4 packet around `carp`, as carpd builds it but with our `ttl`.
/// A zero `source` is filled in by the kernel (`IP_HDRINCL` does that).
fn ipv4_packet(
    source: Ipv4Addr,
    destination: Ipv4Addr,
    ttl: u8,
    id: u16,
    carp: &[u8; CARP_HEADER_LEN],
) -> [u8; ADVERT_V4_LEN] {
    let mut packet = frames::advert_v4(source, destination, id, carp);
    packet[8] = ttl;
    packet[10..12].fill(0);
    let sum = internet_checksum(&packet[..IPV4_HEADER_LEN]);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    packet
}

fn carp_socket(domain: Domain, dev: &str) -> anyhow::Result<Socket> {
    let socket = Socket::new(
        domain,
        Type::RAW,
        Some(Protocol::from(i32::from(IPPROTO_CARP))),
    )
    .context("raw socket (needs root or CAP_NET_RAW)")?;
    socket
        .bind_device(Some(dev.as_bytes()))
        .with_context(|| format!("bind to device {dev}"))?;
    Ok(socket)
}

fn send_v4(
    args: &Args,
    source: Ipv4Addr,
    destination: Ipv4Addr,
    carp: &[u8; CARP_HEADER_LEN],
) -> anyhow::Result<()> {
    let socket = carp_socket(Domain::IPV4, &args.dev)?;
    socket.set_header_included_v4(true).context("IP_HDRINCL")?;
    // Our own copies would only reach this namespace's stack, which ignores them.
    socket.set_multicast_loop_v4(false)?;
    let to = SockAddr::from(SocketAddrV4::new(destination, 0));
    // Any id will do; vary it so the packets are told apart in a capture.
    let first_id = u16::try_from(std::process::id() & 0xffff).unwrap_or(0);
    let mut id = first_id;
    for _ in 0..args.count {
        let packet = ipv4_packet(source, destination, args.ttl, id, carp);
        socket
            .send_to(&packet, &to)
            .with_context(|| format!("send to {destination} on {}", args.dev))?;
        id = id.wrapping_add(1);
    }
    Ok(())
}

fn send_v6(
    args: &Args,
    source: Option<Ipv6Addr>,
    destination: Ipv6Addr,
    carp: &[u8; CARP_HEADER_LEN],
) -> anyhow::Result<()> {
    let ifindex = nix::net::if_::if_nametoindex(args.dev.as_str())
        .with_context(|| format!("no interface {}", args.dev))?;
    let socket = carp_socket(Domain::IPV6, &args.dev)?;
    socket.set_multicast_if_v6(ifindex)?;
    socket.set_multicast_hops_v6(u32::from(args.ttl))?;
    socket.set_unicast_hops_v6(u32::from(args.ttl))?;
    socket.set_multicast_loop_v6(false)?;
    let scope = |address: Ipv6Addr| {
        if address.is_multicast() || address.is_unicast_link_local() {
            ifindex
        } else {
            0
        }
    };
    if let Some(source) = source {
        socket
            .bind(&SockAddr::from(SocketAddrV6::new(
                source,
                0,
                0,
                scope(source),
            )))
            .with_context(|| format!("bind to {source}"))?;
    }
    let to = SockAddr::from(SocketAddrV6::new(destination, 0, 0, scope(destination)));
    for _ in 0..args.count {
        socket
            .send_to(carp, &to)
            .with_context(|| format!("send to {destination} on {}", args.dev))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("carp-inject: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let carp = carp_header(args)?;
    let (source, destination) = match (args.src, args.dst) {
        (Some(IpAddr::V6(src)), None) => (IpAddr::V6(src), IpAddr::V6(CARP_GROUP_V6)),
        (None | Some(IpAddr::V4(_)), None) => (
            args.src.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            IpAddr::V4(CARP_GROUP_V4),
        ),
        (None, Some(IpAddr::V4(dst))) => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V4(dst)),
        (None, Some(IpAddr::V6(dst))) => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), IpAddr::V6(dst)),
        (Some(src), Some(dst)) => (src, dst),
    };
    match (source, destination) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => send_v4(args, src, dst, &carp)?,
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            send_v6(args, (!src.is_unspecified()).then_some(src), dst, &carp)?;
        }
        _ => bail!("--src {source} and --dst {destination} are of different families"),
    }
    println!(
        "carp-inject: sent {} advertisement(s) on {}: {source} > {destination} vhid {} advbase {} advskew {} demote {} ttl {}",
        args.count, args.dev, args.vhid, args.advbase, args.advskew, args.demote, args.ttl
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use carp::wire::DecodeError;

    use super::*;

    fn args(extra: &[&str]) -> Args {
        let base = [
            "carp-inject",
            "--dev",
            "eth0",
            "--vhid",
            "7",
            "--pass",
            "secret",
            "--addresses",
            "10.0.1.1/24,fd00:1::1/64",
            "--advbase",
            "0",
            "--counter",
            "42",
        ];
        Args::parse_from(base.iter().chain(extra))
    }

    fn authenticator() -> Authenticator {
        let key = Key::from_passphrase(b"secret").unwrap_or_else(|e| panic!("{e}"));
        let addresses = ["10.0.1.1", "fd00:1::1"]
            .map(|a| a.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        Authenticator::new(&key, 7, &addresses)
    }

    #[test]
    fn a_default_advert_decodes_and_verifies() -> anyhow::Result<()> {
        let header = carp_header(&args(&[]))?;
        let advert = Advertisement::decode(&header)?;
        assert_eq!((advert.vhid, advert.advbase, advert.advskew), (7, 0, 0));
        assert_eq!(advert.counter, 42);
        assert!(authenticator().verify(42, &advert.digest));
        Ok(())
    }

    #[test]
    fn each_defect_breaks_only_its_own_check() -> anyhow::Result<()> {
        let checksum = carp_header(&args(&["--bad-checksum"]))?;
        assert_eq!(
            Advertisement::decode(&checksum),
            Err(DecodeError::BadChecksum)
        );

        let version = carp_header(&args(&["--version", "3"]))?;
        assert_eq!(internet_checksum(&version), 0, "checksum still right");
        assert_eq!(
            Advertisement::decode(&version),
            Err(DecodeError::BadVersion(3))
        );

        let wrong_pass = Advertisement::decode(&carp_header(&args(&["--pass", "other"]))?)?;
        assert!(!authenticator().verify(42, &wrong_pass.digest));
        Ok(())
    }

    #[test]
    fn the_ipv4_header_is_complete_and_checksummed() -> anyhow::Result<()> {
        let carp = carp_header(&args(&[]))?;
        let packet = ipv4_packet(
            Ipv4Addr::new(10, 0, 1, 100),
            CARP_GROUP_V4,
            254,
            0x1234,
            &carp,
        );
        assert_eq!(internet_checksum(&packet[..IPV4_HEADER_LEN]), 0);
        assert_eq!(
            &packet[..12],
            &[
                0x45, 0x10, 0, 56, 0x12, 0x34, 0x40, 0, 254, 112, packet[10], packet[11]
            ]
        );
        assert_eq!(&packet[12..20], &[10, 0, 1, 100, 224, 0, 0, 18]);
        assert_eq!(&packet[IPV4_HEADER_LEN..], &carp);
        Ok(())
    }

    #[test]
    fn addresses_take_an_optional_prefix() {
        assert_eq!(
            parse_address("10.0.1.1/24"),
            Ok(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)))
        );
        assert_eq!(parse_address("fd00:1::1").map(|a| a.is_ipv6()), Ok(true));
        assert!(parse_address("10.0.1/24").is_err());
    }
}
