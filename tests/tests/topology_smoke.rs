//! The test kit itself: the lab topology forwards on every segment, cleans
//! up after itself (also when a test panics), and two labs coexist.

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use carp_tests::{
    Capture, Lab, Netns, Signal, netns_exists, require_root, sweep_stale, wait_until,
};

/// Namespaces of these tests start with this, so a sweep by another test
/// binary (other prefixes) never touches them.
const PREFIX: &str = "ctsmoke";

#[test]
fn gateways_reach_each_other_on_every_segment_and_hosts_reach_them() -> anyhow::Result<()> {
    require_root()?;
    let lab = Lab::build(PREFIX)?;
    let gw1 = lab.gateway("gw1")?;
    let gw2 = lab.gateway("gw2")?;
    for address in ["10.0.1.3", "10.0.2.3", "10.0.3.3", "fd00:1::3"] {
        gw1.ping(address)?;
    }
    for address in ["10.0.1.2", "10.0.2.2", "10.0.3.2", "fd00:1::2"] {
        gw2.ping(address)?;
    }
    lab.client()?.ping("10.0.1.2")?;
    lab.server()?.ping("10.0.2.2")?;
    for gw in [gw1, gw2] {
        assert_eq!(
            gw.run(["cat", "/proc/sys/net/ipv4/ip_forward"])?.trim(),
            "1"
        );
    }
    assert_eq!(
        lab.client()?
            .run(["cat", "/proc/sys/net/ipv4/ip_forward"])?
            .trim(),
        "0",
        "only gateways forward"
    );
    // The hosts' default route points at the VIP that carpd will own.
    let route = lab.client()?.ip(["route", "show", "default"])?;
    assert!(route.contains("via 10.0.1.1 dev eth0"), "{route}");
    Ok(())
}

#[test]
fn namespaces_are_gone_after_the_lab_drops() -> anyhow::Result<()> {
    require_root()?;
    let lab = Lab::build(PREFIX)?;
    let names = lab.topology().namespaces();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(names.iter().all(|name| netns_exists(name)), "{names:?}");
    drop(lab);
    let left: Vec<&String> = names.iter().filter(|name| netns_exists(name)).collect();
    assert!(left.is_empty(), "still there: {left:?}");
    Ok(())
}

#[test]
fn namespaces_are_gone_after_a_test_panics() -> anyhow::Result<()> {
    require_root()?;
    let (names_tx, names_rx) = mpsc::channel();
    let outcome = thread::spawn(move || {
        let lab = Lab::build(PREFIX).expect("lab builds");
        names_tx
            .send(lab.topology().namespaces())
            .expect("the test waits for the names");
        panic!("deliberate panic with the lab alive");
    })
    .join();
    assert!(outcome.is_err(), "the thread must have panicked");
    let names = names_rx.recv()?;
    assert!(!names.is_empty());
    let left: Vec<&String> = names.iter().filter(|name| netns_exists(name)).collect();
    assert!(left.is_empty(), "still there after the panic: {left:?}");
    Ok(())
}

#[test]
fn two_labs_exist_at_once() -> anyhow::Result<()> {
    require_root()?;
    let first = Lab::build(PREFIX)?;
    let second = Lab::build(PREFIX)?;
    let first_names = first.topology().namespaces();
    let second_names = second.topology().namespaces();
    assert!(
        first_names.iter().all(|name| !second_names.contains(name)),
        "{first_names:?} vs {second_names:?}"
    );
    // Same addresses in both, kept apart by the namespaces.
    first.gateway("gw1")?.ping("10.0.1.3")?;
    second.gateway("gw1")?.ping("10.0.1.3")?;
    second.client()?.ping("10.0.1.2")?;
    Ok(())
}

#[test]
fn capture_sees_pings_and_a_pulled_link_stops_them() -> anyhow::Result<()> {
    require_root()?;
    let lab = Lab::build(PREFIX)?;
    let gw1 = lab.gateway("gw1")?;
    let gw2 = lab.gateway("gw2")?;
    let mut capture = Capture::start(gw2, "eth-out", "icmp")?;
    gw1.ping("10.0.1.3")?;
    let line = capture.wait_for(Duration::from_secs(5), |line| {
        line.contains("10.0.1.2 > 10.0.1.3") && line.contains("ICMP echo request")
    })?;
    // -e: the link-level header is there too.
    assert!(line.contains("ethertype IPv4"), "{line}");

    gw2.link_down("eth-out")?;
    assert!(gw1.ping("10.0.1.3").is_err(), "ping crossed a downed link");
    gw2.link_up("eth-out")?;
    wait_until(Duration::from_secs(5), "gw1 to reach gw2 again", || {
        gw1.ping("10.0.1.3").is_ok()
    })?;
    Ok(())
}

#[test]
fn processes_run_inside_and_die_with_their_guard() -> anyhow::Result<()> {
    require_root()?;
    let netns = Netns::new(PREFIX, "proc")?;
    let sleeper = netns.spawn(["sleep", "30"], None)?;
    let pid = sleeper.pid();
    let inside = netns.pids()?;
    assert!(
        inside.contains(&i32::try_from(pid)?),
        "{pid} not in {inside:?}"
    );
    drop(sleeper);
    assert!(!Path::new(&format!("/proc/{pid}")).exists());

    let mut second = netns.spawn(["sleep", "30"], None)?;
    second.kill(Signal::SIGKILL)?;
    second.wait_exit(Duration::from_secs(5))?;
    assert!(!second.is_running());
    Ok(())
}

#[test]
fn sweep_deletes_namespaces_of_dead_runs_only() -> anyhow::Result<()> {
    require_root()?;
    let prefix = "ctsweep";
    // A pid that existed and is gone: a finished child's.
    let mut child = Command::new("true").spawn()?;
    let dead_pid = child.id();
    child.wait()?;
    let stale = format!("{prefix}-{dead_pid}-0-sw");
    carp_tests::output(Command::new("ip").args(["netns", "add", &stale]))?;
    let live = Netns::new(prefix, "live")?;

    let swept = sweep_stale(prefix)?;
    assert!(swept.contains(&stale), "{swept:?}");
    assert!(!netns_exists(&stale));
    assert!(
        netns_exists(live.name()),
        "a live run's namespace was swept"
    );
    Ok(())
}
