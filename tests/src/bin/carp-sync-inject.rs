//! carp-sync-inject: sends bad sync datagrams at a carpd, so the tests can
//! check they change nothing and are counted by reason.
//!
//! - `wrong-key`: a well-formed Update installing a flow, signed with
//!   another key (`bad_mac`);
//! - `truncated`: the first 20 bytes of a correctly signed datagram;
//! - `garbage`: bytes that are no sync datagram at all (`bad_magic`);
//! - `unknown-session`: a correctly signed Update from a session the
//!   receiver never heard (`stale_session`: it does not name the receiver's);
//! - `replay`: waits for one datagram from the sync group and sends it
//!   again `--count` times (`replayed`);
//! - `populate`: installs `--count` synthetic established TCP flows into
//!   this namespace's conntrack table (what a bulk update then carries).
//!
//! ```text
//! ip netns exec gw2 carp-sync-inject --dev eth-sync --local 10.0.3.3 \
//!     --key-file sync.key replay --count 3
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use carp::sync::wire::{Change, Envelope, Message, SyncKey};
use carp::sync::{Flow, L4, TcpInfo, Tuple};
use clap::{Parser, ValueEnum};
use socket2::{Domain, Protocol, Socket, Type};

const SYNC_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 240);
const REPLAY_WAIT: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(name = "carp-sync-inject")]
struct Args {
    /// The sync link.
    #[arg(long)]
    dev: String,
    /// Our address on it.
    #[arg(long)]
    local: Ipv4Addr,
    #[arg(long, default_value_t = carp::sync::wire::DEFAULT_PORT)]
    port: u16,
    /// The cluster's sync key.
    #[arg(long)]
    key_file: PathBuf,
    #[arg(long, default_value_t = 1)]
    count: u32,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    WrongKey,
    Truncated,
    Garbage,
    UnknownSession,
    Replay,
    Populate,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(sent) => {
            println!("carp-sync-inject: sent {sent} datagram(s)");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("carp-sync-inject: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<u32> {
    let key_bytes = std::fs::read(&args.key_file).context("key file")?;
    let key = SyncKey::new(&key_bytes).context("key")?;
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.bind_device(Some(args.dev.as_bytes()))?;
    socket.set_multicast_if_v4(&args.local)?;
    socket.set_multicast_ttl_v4(1)?;
    // The local carpd hears what we send.
    socket.set_multicast_loop_v4(true)?;
    let group = SocketAddr::V4(SocketAddrV4::new(SYNC_GROUP, args.port));
    let datagram = match args.kind {
        Kind::WrongKey => {
            let wrong = SyncKey::new(b"not the cluster's key, at all!!!").context("key")?;
            update(&wrong)?
        }
        Kind::Truncated => update(&key)?[..20].to_vec(),
        // Long enough to be read as a header (shorter is `truncated`).
        Kind::Garbage => b"this is not a sync datagram, not even close to one. ".repeat(3),
        Kind::UnknownSession => update(&key)?,
        Kind::Populate => return populate(args.count),
        Kind::Replay => {
            socket.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), args.port).into())?;
            socket.join_multicast_v4(&SYNC_GROUP, &args.local)?;
            socket.set_read_timeout(Some(REPLAY_WAIT))?;
            Vec::new()
        }
    };
    let socket: UdpSocket = socket.into();
    let datagram = if matches!(args.kind, Kind::Replay) {
        let received = receive_one(&socket, &key)?;
        socket.leave_multicast_v4(&SYNC_GROUP, &args.local)?;
        received
    } else {
        datagram
    };
    for _ in 0..args.count {
        socket.send_to(&datagram, group)?;
    }
    Ok(args.count)
}

/// The next authentic datagram from the sync group.
fn receive_one(socket: &UdpSocket, key: &SyncKey) -> anyhow::Result<Vec<u8>> {
    let mut buffer = vec![0u8; 65_536];
    loop {
        let (length, _) = socket
            .recv_from(&mut buffer)
            .context("no sync datagram to replay")?;
        if Envelope::decode(&buffer[..length], key).is_ok() {
            return Ok(buffer[..length].to_vec());
        }
    }
}

/// An Update from a session nobody knows, installing one TCP flow.
fn update(key: &SyncKey) -> anyhow::Result<Vec<u8>> {
    let flow = Flow {
        original: tcp_tuple([10, 0, 2, 66], [10, 0, 1, 66], 40_000, 22),
        reply: tcp_tuple([10, 0, 1, 66], [10, 0, 2, 66], 22, 40_000),
        zone: 0,
        status: 0x6,
        timeout_secs: 3600,
        mark: 0x666,
        tcp: Some(TcpInfo {
            state: 3,
            wscale_original: 7,
            wscale_reply: 7,
            flags_original: 0,
            flags_reply: 0,
        }),
    };
    let envelope = Envelope {
        sender_session: NonZeroU64::new(0x0bad_5e55_1011).unwrap_or(NonZeroU64::MIN),
        peer_session: 0x1234,
        seq: NonZeroU64::MIN,
        message: Message::Update(vec![Change::Upsert(flow)]),
    };
    match envelope.encode(key) {
        Ok(datagram) => Ok(datagram),
        Err(error) => bail!("encoding: {error}"),
    }
}

/// Installs `count` established TCP flows 10.1.x.y:port -> 10.2.0.1:80.
fn populate(count: u32) -> anyhow::Result<u32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut conntrack = carp::sync::conntrack::Conntrack::open().context("conntrack")?;
        let flows: Vec<Flow> = (0..count).map(synthetic).collect();
        for chunk in flows.chunks(10_000) {
            let report = conntrack.install(chunk).await.context("install")?;
            if report.failed > 0 {
                bail!(
                    "{} of {} flows refused: {:?}",
                    report.failed,
                    chunk.len(),
                    report.first_error
                );
            }
        }
        Ok(count)
    })
}

/// Flow number `n`: a distinct client address and port for each.
fn synthetic(n: u32) -> Flow {
    let [_, a, b, c] = n.to_be_bytes();
    let client = [10, 1, a, b];
    let port = 1024 + u16::from(c);
    Flow {
        original: tcp_tuple(client, [10, 2, 0, 1], port, 80),
        reply: tcp_tuple([10, 2, 0, 1], client, 80, port),
        zone: 0,
        status: 0x6,
        timeout_secs: 3600,
        mark: 0,
        tcp: Some(TcpInfo {
            state: 3,
            wscale_original: 7,
            wscale_reply: 7,
            flags_original: 0,
            flags_reply: 0,
        }),
    }
}

/// An IPv4 TCP tuple.
fn tcp_tuple(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Tuple {
    Tuple {
        src: IpAddr::V4(src.into()),
        dst: IpAddr::V4(dst.into()),
        proto: carp::sync::flow::PROTO_TCP,
        l4: L4::Ports {
            src: sport,
            dst: dport,
        },
    }
}
