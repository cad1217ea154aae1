//! The conntrack adapter against the real kernel: installs, updates and
//! deletes read back with dumps, events of real traffic and of our own
//! writes, the overrun signal, and the property replication exists for: a
//! TCP flow installed from a peer's state lets the connection continue
//! through a ruleset that drops what it does not know.
//!
//! Each test runs in network namespaces of its own (uniquely named, deleted
//! on drop) entered by the test's thread: netlink sockets belong to the
//! namespace of the thread that opens them. Needs root; fails, never skips,
//! without it.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use carp::sync::conntrack::{
    BatchReport, Cause, Conntrack, Event, EventSocket, Family, Origin, TcpWindow,
};
use carp::sync::{Flow, FlowKey, L4, TcpInfo, Tuple};

const TCP_ESTABLISHED: u8 = 3;
const IPS_SEEN_REPLY: u32 = 1 << 1;
const IPS_ASSURED: u32 = 1 << 2;
const IPS_CONFIRMED: u32 = 1 << 3;
const FLAG_WINDOW_SCALE: u8 = 0x01;
const FLAG_SACK_PERM: u8 = 0x02;
const FLAG_BE_LIBERAL: u8 = 0x08;
/// Bounds a wait for something that normally happens within milliseconds.
const PATIENCE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Namespaces

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A named network namespace (`ip netns`), deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(role: &str) -> Self {
        require_root();
        let name = format!(
            "carpct-{}-{}-{role}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        let netns = Self { name };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    fn ip(&self, args: &[&str]) -> String {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    fn exec(&self, args: &[&str]) -> String {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args))
    }

    /// Writes a sysctl of the namespace (`/proc/sys/net` shows the
    /// namespace of the thread that opens it).
    fn sysctl(&self, key: &str, value: &str) {
        let _inside = self.enter();
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).unwrap_or_else(|error| panic!("{path}: {error}"));
    }

    fn nft(&self, ruleset: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft starts");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(ruleset.as_bytes())
            .expect("nft reads the ruleset");
        let output = child.wait_with_output().expect("nft finishes");
        assert!(
            output.status.success(),
            "nft -f in {}: {}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Moves the calling thread into the namespace until the guard drops.
    fn enter(&self) -> Entered {
        let original = File::open("/proc/thread-self/ns/net").expect("own netns opens");
        let target = File::open(format!("/run/netns/{}", self.name)).expect("netns opens");
        set_netns(&target);
        Entered { original }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let status = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        if !matches!(status, Ok(status) if status.success()) {
            eprintln!("could not delete netns {}", self.name);
        }
    }
}

/// The thread is in another namespace until this drops.
struct Entered {
    original: File,
}

impl Drop for Entered {
    fn drop(&mut self) {
        set_netns(&self.original);
    }
}

fn set_netns(file: &File) {
    // SAFETY: setns(2) on a descriptor we own; it changes only the calling
    // thread's network namespace.
    let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(result, 0, "setns: {}", std::io::Error::last_os_error());
}

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .expect("an Uid line");
    assert_eq!(
        effective, "0",
        "the conntrack tests need root (network namespaces, ctnetlink): run them with `sudo -E cargo test -p carp-user --test conntrack` or `cargo xtask test`"
    );
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("the command starts");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

// ---------------------------------------------------------------------------
// Flows

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn tcp_flow(client: IpAddr, server: IpAddr, client_port: u16, server_port: u16) -> Flow {
    Flow {
        original: Tuple {
            src: client,
            dst: server,
            proto: 6,
            l4: L4::Ports {
                src: client_port,
                dst: server_port,
            },
        },
        reply: Tuple {
            src: server,
            dst: client,
            proto: 6,
            l4: L4::Ports {
                src: server_port,
                dst: client_port,
            },
        },
        zone: 0,
        status: IPS_SEEN_REPLY | IPS_ASSURED,
        timeout_secs: 3600,
        mark: 0,
        tcp: Some(TcpInfo {
            state: TCP_ESTABLISHED,
            wscale_original: 7,
            wscale_reply: 9,
            flags_original: FLAG_WINDOW_SCALE | FLAG_SACK_PERM,
            flags_reply: FLAG_WINDOW_SCALE | FLAG_SACK_PERM,
        }),
    }
}

fn udp_flow(client: IpAddr, server: IpAddr, client_port: u16, server_port: u16) -> Flow {
    let mut flow = tcp_flow(client, server, client_port, server_port);
    flow.original.proto = 17;
    flow.reply.proto = 17;
    flow.tcp = None;
    flow.timeout_secs = 120;
    flow
}

fn icmp_echo(client: IpAddr, server: IpAddr, id: u16) -> Flow {
    Flow {
        original: Tuple {
            src: client,
            dst: server,
            proto: 1,
            l4: L4::Icmp {
                id,
                kind: 8,
                code: 0,
            },
        },
        reply: Tuple {
            src: server,
            dst: client,
            proto: 1,
            l4: L4::Icmp {
                id,
                kind: 0,
                code: 0,
            },
        },
        zone: 0,
        status: IPS_SEEN_REPLY,
        timeout_secs: 30,
        mark: 0,
        tcp: None,
    }
}

/// A flow as the kernel reports it after an install of `flow`: CONFIRMED
/// set, the timeout counting down, `BE_LIBERAL` added to TCP flags.
fn assert_installed(flow: &Flow, dumped: &Flow, window: TcpWindow) {
    let mut expected = *flow;
    expected.status |= IPS_CONFIRMED;
    expected.timeout_secs = dumped.timeout_secs;
    if let (Some(tcp), TcpWindow::Liberal) = (expected.tcp.as_mut(), window) {
        tcp.flags_original |= FLAG_BE_LIBERAL;
        tcp.flags_reply |= FLAG_BE_LIBERAL;
    }
    assert_eq!(*dumped, expected, "the kernel's copy of {:?}", flow.key());
    assert!(
        dumped.timeout_secs <= flow.timeout_secs && dumped.timeout_secs + 5 >= flow.timeout_secs,
        "timeout {} after installing {}",
        dumped.timeout_secs,
        flow.timeout_secs
    );
}

fn find<'a>(flows: &'a [Flow], key: &FlowKey) -> &'a Flow {
    flows
        .iter()
        .find(|flow| flow.key() == *key)
        .unwrap_or_else(|| panic!("{key:?} not in the dump {flows:#?}"))
}

fn assert_clean(report: &BatchReport, what: &str) {
    assert_eq!(
        report.failed,
        0,
        "{what}: {} of {} failed, first: {}",
        report.failed,
        report.requested,
        report
            .first_error
            .map_or_else(String::new, |error| error.to_string())
    );
}

fn sample_flows() -> Vec<Flow> {
    let client6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10));
    let server6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x20));
    let mut marked = udp_flow(v4(10, 0, 0, 1), v4(10, 0, 1, 1), 5353, 53);
    marked.mark = 0x2a;
    vec![
        tcp_flow(v4(10, 0, 0, 1), v4(10, 0, 1, 1), 40000, 443),
        marked,
        icmp_echo(v4(10, 0, 0, 1), v4(10, 0, 1, 1), 0x1234),
        tcp_flow(client6, server6, 50000, 22),
    ]
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn installed_flows_dump_back_as_they_were_sent() {
    let netns = Netns::new("roundtrip");
    let _inside = netns.enter();
    runtime().block_on(async {
        let mut conntrack = Conntrack::open().expect("ctnetlink opens");
        let flows = sample_flows();
        let report = conntrack.install(&flows).await.expect("install runs");
        assert_clean(&report, "install");
        assert_eq!(report.applied(), flows.len());

        let dump = conntrack.dump(Family::Any).await.expect("dump runs");
        assert_eq!(dump.stats.skipped, 0, "{:?}", dump.stats.first_skip);
        assert_eq!(dump.flows.len(), flows.len(), "{:#?}", dump.flows);
        for flow in &flows {
            assert_installed(flow, find(&dump.flows, &flow.key()), TcpWindow::Liberal);
        }
        let only_v6 = conntrack.dump(Family::Ipv6).await.expect("dump runs");
        assert_eq!(only_v6.flows.len(), 1);
        assert!(only_v6.flows[0].original.src.is_ipv6());
    });
}

#[test]
fn the_zone_is_part_of_the_key() {
    let netns = Netns::new("zones");
    let _inside = netns.enter();
    runtime().block_on(async {
        let mut conntrack = Conntrack::open().expect("ctnetlink opens");
        let default_zone = tcp_flow(v4(10, 0, 0, 1), v4(10, 0, 1, 1), 40000, 443);
        let zone_7 = Flow {
            zone: 7,
            mark: 1,
            ..default_zone
        };
        let report = conntrack
            .install(&[default_zone, zone_7])
            .await
            .expect("install runs");
        assert_clean(&report, "install");
        let dump = conntrack.dump(Family::Any).await.expect("dump runs");
        assert_eq!(dump.flows.len(), 2, "one entry per zone");
        assert_installed(
            &zone_7,
            find(&dump.flows, &zone_7.key()),
            TcpWindow::Liberal,
        );

        let report = conntrack
            .delete(&[zone_7.key()])
            .await
            .expect("delete runs");
        assert_eq!(report.applied(), 1);
        let dump = conntrack.dump(Family::Any).await.expect("dump runs");
        assert_eq!(dump.flows.len(), 1);
        assert_eq!(dump.flows[0].key(), default_zone.key());
    });
}

#[test]
fn an_operation_cancelled_half_way_does_not_confuse_the_next() {
    let netns = Netns::new("cancel");
    let _inside = netns.enter();
    runtime().block_on(async {
        let mut conntrack = Conntrack::open().expect("ctnetlink opens");
        let flows = many_flows(30_000);
        assert_clean(
            &conntrack.install(&flows).await.expect("install runs"),
            "install",
        );

        // Poll a dump once: tokio's cooperative budget makes it yield after
        // part of the table; then drop it with the rest of the dump pending.
        let mut seen = 0;
        {
            let dump = conntrack.dump_each(Family::Any, |_| seen += 1);
            tokio::pin!(dump);
            assert!(
                futures::poll!(dump.as_mut()).is_pending(),
                "the dump finished in one poll: nothing was cancelled"
            );
        }
        assert!(seen > 0 && seen < flows.len(), "cancelled after {seen}");

        let dump = conntrack.dump(Family::Any).await.expect("dump runs");
        assert_eq!(dump.flows.len(), flows.len());
        let keys: Vec<FlowKey> = flows.iter().map(Flow::key).collect();
        let report = conntrack.delete(&keys).await.expect("delete runs");
        assert_clean(&report, "delete");
        assert_eq!(report.applied(), flows.len());
    });
}

#[test]
fn an_install_over_an_existing_entry_updates_it() {
    let netns = Netns::new("update");
    let _inside = netns.enter();
    runtime().block_on(async {
        let mut conntrack = Conntrack::open().expect("ctnetlink opens");
        let flows = sample_flows();
        assert_clean(
            &conntrack.install(&flows).await.expect("install runs"),
            "install",
        );

        let changed: Vec<Flow> = flows
            .iter()
            .map(|flow| Flow {
                timeout_secs: 7200,
                mark: if flow.mark == 0 { 0x99 } else { 0 },
                ..*flow
            })
            .collect();
        let report = conntrack.install(&changed).await.expect("update runs");
        assert_clean(&report, "update");
        let dump = conntrack.dump(Family::Any).await.expect("dump runs");
        assert_eq!(dump.flows.len(), flows.len(), "updated, not added");
        for flow in &changed {
            assert_installed(flow, find(&dump.flows, &flow.key()), TcpWindow::Liberal);
        }
    });
}

#[test]
fn entries_the_kernel_refuses_are_counted_and_the_rest_applied() {
    let netns = Netns::new("refuse");
    let _inside = netns.enter();
    runtime().block_on(async {
        let mut conntrack = Conntrack::open().expect("ctnetlink opens");
        let established = tcp_flow(v4(10, 0, 0, 1), v4(10, 0, 1, 1), 40000, 443);
        assert_clean(
            &conntrack
                .install(&[established])
                .await
                .expect("install runs"),
            "install",
        );

        // The kernel will not clear ASSURED (EBUSY); a tuple mixing families
        // is refused before sending; the other two go in.
        let unassured = Flow {
            status: IPS_SEEN_REPLY,
            ..established
        };
        let mut mixed = udp_flow(v4(10, 0, 0, 1), v4(10, 0, 1, 1), 1, 2);
        mixed.reply.src = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let fine = [
            udp_flow(v4(10, 0, 0, 3), v4(10, 0, 1, 1), 1, 2),
            icmp_echo(v4(10, 0, 0, 4), v4(10, 0, 1, 1), 7),
        ];
        let batch = [fine[0], unassured, mixed, fine[1]];
        let report = conntrack.install(&batch).await.expect("install runs");
        assert_eq!(
            (report.requested, report.failed, report.applied()),
            (4, 2, 2)
        );
        let first = report.first_error.expect("a first error");
        assert_eq!(first.index, 1);
        assert_eq!(first.key, established.key());
        assert_eq!(first.cause, Cause::Kernel(libc::EBUSY));

        let dump = conntrack.dump(Family::Any).await.expect("dump runs");
        assert_eq!(dump.flows.len(), 3);
        for flow in &fine {
            find(&dump.flows, &flow.key());
        }
        assert_eq!(
            find(&dump.flows, &established.key()).status & IPS_ASSURED,
            IPS_ASSURED,
            "the refused update left the entry alone"
        );
    });
}

#[test]
fn deletes_remove_entries_and_count_those_already_gone() {
    let netns = Netns::new("delete");
    let _inside = netns.enter();
    runtime().block_on(async {
        let mut conntrack = Conntrack::open().expect("ctnetlink opens");
        let flows = sample_flows();
        assert_clean(
            &conntrack.install(&flows).await.expect("install runs"),
            "install",
        );

        let never_there = udp_flow(v4(10, 9, 9, 9), v4(10, 0, 1, 1), 9, 9).key();
        let keys = [flows[0].key(), flows[3].key(), never_there];
        let report = conntrack.delete(&keys).await.expect("delete runs");
        assert_clean(&report, "delete");
        assert_eq!((report.absent, report.applied()), (1, 2));

        let dump = conntrack.dump(Family::Any).await.expect("dump runs");
        let left: Vec<FlowKey> = dump.flows.iter().map(Flow::key).collect();
        assert_eq!(left.len(), 2, "{left:#?}");
        assert!(left.contains(&flows[1].key()) && left.contains(&flows[2].key()));
        assert_eq!(
            conntrack.get(&flows[0].key()).await.expect("get runs"),
            None
        );
        let kept = conntrack
            .get(&flows[1].key())
            .await
            .expect("get runs")
            .expect("still there");
        assert_installed(&flows[1], &kept, TcpWindow::Liberal);
    });
}

/// The next event that `wanted` accepts, within `PATIENCE`.
async fn event_where(
    events: &mut EventSocket,
    what: &str,
    wanted: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.next()).await {
            Ok(Ok(event)) if wanted(&event) => return event,
            Ok(Ok(event)) => seen.push(event),
            Ok(Err(error)) => panic!("{what}: reading events failed: {error}"),
            Err(elapsed) => panic!("{what}: {elapsed} ({PATIENCE:?}); saw {seen:#?}"),
        }
    }
}

/// Conntrack tracks nothing until a rule needs it: any `ct` expression
/// registers its hooks in the namespace.
const TRACK_EVERYTHING: &str = "
table inet carp_ct_test {
    chain output {
        type filter hook output priority filter; policy accept;
        # a data segment on an established flow: a mark-only change, which
        # ctnetlink reports without the TCP state
        tcp flags & psh == psh ct state established ct mark set 0x5
    }
    chain input {
        type filter hook input priority filter; policy accept;
        ct state established,related accept
    }
}
";

#[test]
fn events_report_real_traffic_and_mark_our_own_writes() {
    let netns = Netns::new("events");
    netns.nft(TRACK_EVERYTHING);
    let _inside = netns.enter();
    runtime().block_on(async {
        let mut writer = Conntrack::open().expect("ctnetlink opens");
        let mut other = Conntrack::open().expect("ctnetlink opens");
        let mut events = EventSocket::subscribe(1 << 20).expect("subscribes");
        events.mark_ours(writer.port_id());
        assert!(
            events.receive_buffer().expect("readable") >= 1 << 20,
            "SO_RCVBUFFORCE took"
        );

        // Real traffic: a TCP connection over lo with data both ways.
        let listener = TcpListener::bind("127.0.0.1:0").expect("listens");
        let server = listener.local_addr().expect("bound");
        let mut client = TcpStream::connect(server).expect("connects");
        let (mut accepted, peer) = listener.accept().expect("accepts");
        client.write_all(b"ping").expect("writes");
        let mut buffer = [0; 4];
        accepted.read_exact(&mut buffer).expect("reads");
        let traffic_key = |flow: &Flow| {
            flow.original.l4
                == L4::Ports {
                    src: peer.port(),
                    dst: server.port(),
                }
        };
        let established = event_where(&mut events, "established over lo", |event| {
            matches!(event, Event::Upsert { flow, origin: Origin::Kernel }
                if traffic_key(flow) && flow.tcp.is_some_and(|tcp| tcp.state == TCP_ESTABLISHED))
        })
        .await;
        let Event::Upsert { flow, .. } = established else {
            unreachable!("matched above")
        };
        assert_eq!(flow.original.src, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(flow.status & IPS_SEEN_REPLY != 0);
        // The data segment's mark change came without CTA_PROTOINFO and was
        // completed with a lookup.
        let marked = event_where(&mut events, "the mark change", |event| {
            matches!(event, Event::Upsert { flow, origin: Origin::Kernel }
                if traffic_key(flow) && flow.mark == 0x5)
        })
        .await;
        let Event::Upsert { flow: marked, .. } = marked else {
            unreachable!("matched above")
        };
        assert_eq!(marked.tcp.map(|tcp| tcp.state), Some(TCP_ESTABLISHED));
        assert!(events.completed() >= 1, "a mark-only update was completed");

        // Our own install, update and delete.
        let ours = udp_flow(v4(10, 0, 0, 1), v4(10, 0, 1, 1), 5000, 53);
        assert_clean(&writer.install(&[ours]).await.expect("install runs"), "install");
        event_where(&mut events, "our install", |event| {
            matches!(event, Event::Upsert { flow, origin: Origin::Ours } if flow.key() == ours.key())
        })
        .await;
        let updated = Flow { mark: 3, ..ours };
        assert_clean(&writer.install(&[updated]).await.expect("install runs"), "update");
        event_where(&mut events, "our update", |event| {
            matches!(event, Event::Upsert { flow, origin: Origin::Ours }
                if flow.key() == ours.key() && flow.mark == 3)
        })
        .await;
        assert_clean(&writer.delete(&[ours.key()]).await.expect("delete runs"), "delete");
        event_where(&mut events, "our delete", |event| {
            *event == Event::Delete { key: ours.key(), origin: Origin::Ours }
        })
        .await;

        // Another socket's write is someone else's.
        let theirs = icmp_echo(v4(10, 0, 0, 1), v4(10, 0, 1, 1), 99);
        assert_clean(&other.install(&[theirs]).await.expect("install runs"), "install");
        let port = other.port_id();
        event_where(&mut events, "another socket's install", |event| {
            matches!(event, Event::Upsert { flow, origin: Origin::Process(p) }
                if flow.key() == theirs.key() && *p == port)
        })
        .await;
        drop((client, accepted));
    });
}

/// `ignore_ours`: the kernel drops the events of our own installs and
/// deletes before they are queued (what keeps a bulk from overrunning the
/// queue), and still delivers everyone else's. Events arrive in the order
/// of the writes, so anything of ours would come before theirs.
#[test]
fn a_socket_that_ignores_our_writes_never_receives_them() {
    let netns = Netns::new("ignore");
    let _inside = netns.enter();
    runtime().block_on(async {
        let mut writer = Conntrack::open().expect("ctnetlink opens");
        let mut other = Conntrack::open().expect("ctnetlink opens");
        let mut events = EventSocket::subscribe(1 << 20).expect("subscribes");
        events
            .ignore_ours(writer.port_id())
            .expect("the socket filter attaches");
        let ours: Vec<Flow> = (0..200u16)
            .map(|n| udp_flow(v4(10, 4, 0, 1), v4(10, 5, 0, 1), 20_000 + n, 53))
            .collect();
        assert_clean(
            &writer.install(&ours).await.expect("install runs"),
            "install",
        );
        let keys: Vec<FlowKey> = ours.iter().map(Flow::key).collect();
        assert_clean(&writer.delete(&keys).await.expect("delete runs"), "delete");
        let theirs = icmp_echo(v4(10, 4, 0, 1), v4(10, 5, 0, 1), 77);
        assert_clean(
            &other.install(&[theirs]).await.expect("install runs"),
            "install",
        );
        let deadline = Instant::now() + PATIENCE;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.next()).await {
                Ok(Ok(Event::Upsert { flow, origin })) if flow.key() == theirs.key() => {
                    assert_eq!(origin, Origin::Process(other.port_id()));
                    break;
                }
                Ok(Ok(event)) => before.push(event),
                Ok(Err(error)) => panic!("reading events failed: {error}"),
                Err(elapsed) => panic!("another socket's install: {elapsed} ({PATIENCE:?})"),
            }
        }
        assert!(
            before.is_empty(),
            "{} events reached the socket before theirs, first {:?}",
            before.len(),
            before.first()
        );
    });
}

#[test]
fn an_overflowing_event_queue_reports_overrun_then_carries_on() {
    let netns = Netns::new("overrun");
    let _inside = netns.enter();
    runtime().block_on(async {
        let mut writer = Conntrack::open().expect("ctnetlink opens");
        // The smallest queue the kernel allows: a few events.
        let mut events = EventSocket::subscribe(1).expect("subscribes");
        let flows: Vec<Flow> = (0..2000u16)
            .map(|n| udp_flow(v4(10, 1, 0, 1), v4(10, 2, 0, 1), 10_000 + n, 53))
            .collect();
        assert_clean(
            &writer.install(&flows).await.expect("install runs"),
            "install",
        );
        event_where(&mut events, "the overrun", |event| *event == Event::Overrun).await;

        // The socket still works after the overrun.
        let late = udp_flow(v4(10, 3, 0, 1), v4(10, 2, 0, 1), 1, 53);
        loop {
            // Drain what was queued before the overrun was noticed.
            match tokio::time::timeout(Duration::from_millis(50), events.next()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => panic!("reading events failed: {error}"),
                Err(_) => break,
            }
        }
        assert_clean(
            &writer.install(&[late]).await.expect("install runs"),
            "install",
        );
        event_where(
            &mut events,
            "an event after the overrun",
            |event| matches!(event, Event::Upsert { flow, .. } if flow.key() == late.key()),
        )
        .await;
    });
}

/// A gateway's policy, on the server itself: nothing but SYNs opens a
/// flow; what conntrack does not know (INVALID) is counted and dropped, in
/// both directions. `notrack_in` / `notrack_out` are empty until a test
/// lets packets past conntrack (as if through the other node).
const GATEWAY_RULES: &str = r#"
table inet carp_ct_gate {
    counter invalid_in {}
    counter invalid_out {}
    counter from_client {}
    chain notrack_in {
        type filter hook prerouting priority raw; policy accept;
    }
    chain notrack_out {
        type filter hook output priority raw; policy accept;
    }
    chain input {
        type filter hook input priority filter; policy drop;
        ip saddr 10.99.0.1 counter name "from_client"
        iifname "lo" accept
        ct state invalid counter name "invalid_in" drop
        ct state established,related,untracked accept
        tcp flags & (fin | syn | rst | ack) == syn ct state new accept
    }
    chain output {
        type filter hook output priority filter; policy accept;
        ct state invalid counter name "invalid_out" drop
    }
}
"#;

fn counter(netns: &Netns, table: &str, name: &str) -> u64 {
    let listing = netns.exec(&["nft", "list", "counter", "inet", table, name]);
    listing
        .split_whitespace()
        .skip_while(|word| *word != "packets")
        .nth(1)
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in {listing}"))
}

fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A client and a server namespace on a veth, the server with
/// `GATEWAY_RULES` and `tcp_loose=0`, and a TCP connection between them
/// that has carried data both ways.
struct Gateway {
    client_ns: Netns,
    server_ns: Netns,
    client: TcpStream,
    server: TcpStream,
    key: FlowKey,
    runtime: tokio::runtime::Runtime,
    /// A request socket in the server's namespace.
    conntrack: Conntrack,
}

impl Gateway {
    fn new(window: TcpWindow) -> Self {
        let client_ns = Netns::new("client");
        let server_ns = Netns::new("server");
        run(Command::new("ip").args([
            "link",
            "add",
            "c0",
            "netns",
            &client_ns.name,
            "type",
            "veth",
            "peer",
            "name",
            "s0",
            "netns",
            &server_ns.name,
        ]));
        client_ns.ip(&["address", "add", "10.99.0.1/24", "dev", "c0"]);
        client_ns.ip(&["link", "set", "c0", "up"]);
        server_ns.ip(&["address", "add", "10.99.0.2/24", "dev", "s0"]);
        server_ns.ip(&["link", "set", "s0", "up"]);
        server_ns.nft(GATEWAY_RULES);
        server_ns.sysctl("net.netfilter.nf_conntrack_tcp_loose", "0");

        let listener = {
            let _inside = server_ns.enter();
            TcpListener::bind("10.99.0.2:0").expect("listens")
        };
        let server_address = listener.local_addr().expect("bound");
        let mut client = {
            let _inside = client_ns.enter();
            TcpStream::connect_timeout(&server_address, PATIENCE).expect("connects")
        };
        let (mut server, client_address) = listener.accept().expect("accepts");
        for stream in [&client, &server] {
            stream
                .set_read_timeout(Some(PATIENCE))
                .expect("timeout set");
            stream.set_nodelay(true).expect("nodelay set");
        }
        let mut buffer = [0; 6];
        client.write_all(b"before").expect("writes");
        server.read_exact(&mut buffer).expect("the server reads");
        server.write_all(b"ok").expect("writes");
        client
            .read_exact(&mut buffer[..2])
            .expect("the client reads");

        let runtime = runtime();
        let mut conntrack = {
            let _inside = server_ns.enter();
            runtime.block_on(async { Conntrack::open() })
        }
        .expect("ctnetlink opens");
        conntrack.set_tcp_window(window);
        let key = FlowKey {
            original: Tuple {
                src: client_address.ip(),
                dst: server_address.ip(),
                proto: 6,
                l4: L4::Ports {
                    src: client_address.port(),
                    dst: server_address.port(),
                },
            },
            zone: 0,
        };
        Self {
            client_ns,
            server_ns,
            client,
            server,
            key,
            runtime,
            conntrack,
        }
    }

    /// What the node that carried the connection would have replicated.
    fn replicated_state(&mut self) -> Flow {
        let flow = self
            .runtime
            .block_on(self.conntrack.get(&self.key))
            .expect("get runs")
            .expect("the server tracks the connection");
        assert_eq!(flow.tcp.map(|tcp| tcp.state), Some(TCP_ESTABLISHED));
        flow
    }

    /// The node taking over has no state for the connection.
    fn forget(&mut self) {
        let report = self
            .runtime
            .block_on(self.conntrack.delete(&[self.key]))
            .expect("delete runs");
        assert_eq!(report.applied(), 1);
    }

    fn install(&mut self, flow: Flow) {
        let report = self
            .runtime
            .block_on(self.conntrack.install(&[flow]))
            .expect("install runs");
        assert_clean(&report, "install");
    }

    fn tracked(&mut self) -> Flow {
        self.runtime
            .block_on(self.conntrack.get(&self.key))
            .expect("get runs")
            .expect("still tracked")
    }

    /// Segments the client has retransmitted (`ss`'s `retrans:now/total`).
    fn client_retransmissions(&self) -> u64 {
        let listing = self.client_ns.exec(&["ss", "-tni", "dst", "10.99.0.2"]);
        listing
            .split_whitespace()
            .find_map(|word| word.strip_prefix("retrans:"))
            .and_then(|counts| counts.split('/').nth(1))
            .map_or(0, |total| total.parse().unwrap_or(0))
    }

    fn packets_from_client(&self) -> u64 {
        counter(&self.server_ns, "carp_ct_gate", "from_client")
    }

    fn invalid(&self, direction: &str) -> u64 {
        counter(
            &self.server_ns,
            "carp_ct_gate",
            &format!("invalid_{direction}"),
        )
    }
}

fn assert_nothing_to_read(stream: &mut TcpStream, what: &str) {
    stream.set_nonblocking(true).expect("non-blocking");
    let mut buffer = [0; 1];
    assert_eq!(
        stream.read(&mut buffer).map_err(|error| error.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "{what}"
    );
    stream.set_nonblocking(false).expect("blocking");
}

/// The failover story: the server's conntrack forgets an established
/// connection (a node that never saw its handshake), so with `tcp_loose=0`
/// a mid-stream segment is INVALID and dropped; then the flow as the other
/// node had it is installed, and the client's retransmission, and the
/// server's answer, pass.
fn a_replicated_flow_carries_a_connection_mid_stream(window: TcpWindow) {
    let mut gateway = Gateway::new(window);
    let replicated = gateway.replicated_state();
    gateway.forget();

    let dropped = gateway.invalid("in");
    gateway.client.write_all(b"during").expect("writes");
    // The segment and a retransmission of it: no state, no entry.
    wait_until("two mid-stream segments dropped as INVALID", || {
        gateway.invalid("in") >= dropped + 2
    });
    assert_nothing_to_read(&mut gateway.server, "nothing reached the server");

    gateway.install(replicated);
    let mut buffer = [0; 6];
    gateway
        .server
        .read_exact(&mut buffer)
        .expect("the retransmitted segment reaches the server");
    assert_eq!(&buffer, b"during");
    gateway.server.write_all(b"after").expect("writes");
    gateway
        .client
        .read_exact(&mut buffer[..5])
        .expect("the server's answer reaches the client");
    assert_eq!(&buffer[..5], b"after");

    let tcp = gateway.tracked().tcp.expect("TCP state");
    assert_eq!(tcp.state, TCP_ESTABLISHED);
    let liberal = tcp.flags_original & tcp.flags_reply & FLAG_BE_LIBERAL != 0;
    assert_eq!(liberal, window == TcpWindow::Liberal);
}

#[test]
fn a_replicated_flow_carries_a_connection_mid_stream_liberal() {
    a_replicated_flow_carries_a_connection_mid_stream(TcpWindow::Liberal);
}

#[test]
fn a_replicated_flow_carries_a_connection_mid_stream_tracked() {
    a_replicated_flow_carries_a_connection_mid_stream(TcpWindow::Track);
}

/// Why installs are liberal by default. During the failover the server got
/// data through the other node but its ACKs were lost; the client's first
/// segment through this node is a retransmission of the oldest data, and
/// the server's duplicate ACK acknowledges beyond anything this node saw
/// sent. With window tracking (`TcpWindow::Track`) that ACK, and every
/// later server segment, is INVALID: the connection stalls. Liberal flows
/// carry on. Returns whether the server's answer reached the client.
fn after_lost_acks(window: TcpWindow, wait: Duration) -> (bool, u64) {
    let mut gateway = Gateway::new(window);
    // A retransmission timeout, not a tail-loss probe, resends the data:
    // the oldest segment, alone.
    gateway.client_ns.sysctl("net.ipv4.tcp_early_retrans", "0");
    let replicated = gateway.replicated_state();
    gateway.forget();

    // Through "the other node": past conntrack, and the server's ACKs lost.
    gateway.server_ns.exec(&[
        "nft",
        "add rule inet carp_ct_gate notrack_in ip saddr 10.99.0.1 notrack",
    ]);
    gateway.server_ns.exec(&[
        "nft",
        "add rule inet carp_ct_gate notrack_out ip daddr 10.99.0.1 notrack",
    ]);
    gateway.client_ns.nft(
        "table inet lossy {
            chain input {
                type filter hook input priority filter; policy accept;
                ip saddr 10.99.0.2 drop
            }
        }",
    );
    // Several full segments, so the retransmission cannot cover them all.
    let data = vec![b'x'; 8000];
    gateway.client.write_all(&data).expect("writes");
    let mut received = vec![0; data.len()];
    gateway
        .server
        .read_exact(&mut received)
        .expect("the server gets the data");

    // Let the client's first retransmission timeout pass: the server answers
    // the repeated segment at once (lost too), and then has nothing more to
    // send, so the next packet this node sees is the client's.
    wait_until("a retransmission by the client", || {
        gateway.client_retransmissions() >= 1
    });
    gateway
        .server_ns
        .exec(&["nft", "flush chain inet carp_ct_gate notrack_in"]);
    gateway
        .server_ns
        .exec(&["nft", "flush chain inet carp_ct_gate notrack_out"]);
    gateway.client_ns.exec(&["nft", "delete table inet lossy"]);
    // This node takes over.
    let arrived = gateway.packets_from_client();
    gateway.install(replicated);
    // The client's retransmission is the first packet of the connection
    // this node sees; the server answers it with its duplicate ACK.
    wait_until("the client's retransmission", || {
        gateway.packets_from_client() > arrived
    });
    gateway.server.write_all(b"after").expect("writes");
    gateway
        .client
        .set_read_timeout(Some(wait))
        .expect("timeout set");
    let mut buffer = [0; 5];
    let answered = gateway.client.read_exact(&mut buffer).is_ok();
    (answered, gateway.invalid("out"))
}

#[test]
fn liberal_flows_survive_acks_lost_in_the_failover() {
    let (answered, _) = after_lost_acks(TcpWindow::Liberal, PATIENCE);
    assert!(answered, "the server's answer reached the client");
}

#[test]
fn tracked_flows_stall_when_acks_were_lost_in_the_failover() {
    let (answered, invalid_out) = after_lost_acks(TcpWindow::Track, Duration::from_secs(3));
    assert!(
        !answered,
        "the kernel accepted an ACK beyond what it saw sent: TcpWindow::Track may be safe now"
    );
    assert!(
        invalid_out > 0,
        "the server's segments were dropped as INVALID"
    );
}

/// `n` distinct established TCP flows.
fn many_flows(n: u32) -> Vec<Flow> {
    (0..n)
        .map(|i| {
            let [_, a, b, c] = i.to_be_bytes();
            tcp_flow(v4(10, a, b, c), v4(192, 0, 2, 1), 40000, 443)
        })
        .collect()
}

/// Installs, dumps, updates and deletes `CARP_CT_BENCH_FLOWS` flows
/// (default 100 000) and prints the rates (`--nocapture`; build with
/// `--release` for numbers worth quoting). More than
/// `net.netfilter.nf_conntrack_max` entries need that raised first.
#[test]
fn bulk_install_dump_update_and_delete() {
    let count: u32 = std::env::var("CARP_CT_BENCH_FLOWS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100_000);
    let netns = Netns::new("bulk");
    let _inside = netns.enter();
    runtime().block_on(async {
        let mut conntrack = Conntrack::open().expect("ctnetlink opens");
        let flows = many_flows(count);
        let rate = |what: &str, started: Instant| {
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{what}: {count} entries in {seconds:.3} s, {:.0} entries/s",
                f64::from(count) / seconds
            );
        };

        let started = Instant::now();
        let report = conntrack.install(&flows).await.expect("install runs");
        rate("install (create)", started);
        assert_clean(&report, "install");
        assert_eq!(report.applied(), flows.len());

        let started = Instant::now();
        let mut seen = 0usize;
        let stats = conntrack
            .dump_each(Family::Ipv4, |_| seen += 1)
            .await
            .expect("dump runs");
        rate("dump", started);
        assert_eq!((seen, stats.skipped), (flows.len(), 0));

        let updated: Vec<Flow> = flows.iter().map(|flow| Flow { mark: 1, ..*flow }).collect();
        let started = Instant::now();
        let report = conntrack.install(&updated).await.expect("update runs");
        rate("install (update)", started);
        assert_clean(&report, "update");

        let keys: Vec<FlowKey> = flows.iter().map(Flow::key).collect();
        let started = Instant::now();
        let report = conntrack.delete(&keys).await.expect("delete runs");
        rate("delete", started);
        assert_clean(&report, "delete");
        assert_eq!(report.applied(), flows.len());
        let left = conntrack.dump(Family::Any).await.expect("dump runs");
        assert!(left.flows.is_empty());
    });
}
