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

    fn sysctl(&self, key: &str, value: &str) {
        self.exec(&["sysctl", "-q", "-w", &format!("{key}={value}")]);
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
/// set, the timeout counting down, BE_LIBERAL added to TCP flags.
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
            Err(_) => panic!("{what}: no such event within {PATIENCE:?}; saw {seen:#?}"),
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
