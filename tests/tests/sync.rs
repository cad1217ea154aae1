//! Conntrack state sync between the gateways, seen from the traffic: a
//! stateful firewall pair (established accepted, invalid dropped, new
//! connections only as a SYN from the inside segment, and no loose TCP
//! pickup) keeps a long-lived TCP stream and many idle connections, all
//! opened through the master, alive when the master is killed; a peer that
//! never answers a bulk request demotes the starting node no longer than
//! the bound; forged, replayed and truncated sync datagrams change nothing
//! and are counted.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use carp_tests::{
    CLIENT, CarpState, CarpdOptions, Cluster, Netns, Signal, Status, require_root, wait_for,
};

const STEADY_TIMEOUT: Duration = Duration::from_secs(20);
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// The listener for the TCP traffic, on the client (outside) host.
const PORT: u16 = 7000;
const IDLE_FLOWS: usize = 20;
/// Long enough to span the master-down time (about 4.2 s for gw2) twice.
const TRAFFIC_SECONDS: u64 = 16;

/// The firewall both gateways run: only replicated state lets the
/// connections through the new master. By address, not interface: traffic
/// for the virtual MAC comes in on the carp interfaces.
const RULESET: &str = "table inet carp_test {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ct state invalid drop
    ip saddr 10.0.2.0/24 ip daddr 10.0.1.0/24 tcp flags & (syn | ack | fin | rst) == syn ct state new accept
  }
}";

fn key_file(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("sync.key");
    std::fs::write(&path, b"carp-tests sync key, 32 bytes!!!")?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
}

fn options(key: &Path, extra: &str) -> CarpdOptions {
    CarpdOptions::default().with_toml(&format!(
        "[sync]\nsyncdev = \"eth-sync\"\nkey_file = \"{}\"\n{extra}",
        key.display()
    ))
}

fn firewall(gateway: &Netns) -> anyhow::Result<()> {
    gateway.sysctl("net.netfilter.nf_conntrack_tcp_loose", "0")?;
    let mut nft = Command::new("ip");
    nft.args(["netns", "exec", gateway.name(), "nft", "-f", "-"])
        .stdin(Stdio::piped());
    let mut child = nft.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        std::io::Write::write_all(&mut stdin, RULESET.as_bytes())?;
    }
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "nft -f on {} failed", gateway.name());
    Ok(())
}

fn sync_status(cluster: &Cluster, gateway: &str) -> Option<carp::sync::service::SyncStatus> {
    cluster
        .status(gateway)
        .ok()
        .and_then(|status: Status| status.sync.map(|sync| *sync))
}

#[test]
fn connections_through_the_master_survive_its_death() -> anyhow::Result<()> {
    require_root()?;
    let dir = tempfile::tempdir()?;
    let key = key_file(dir.path())?;
    let options = options(&key, "");
    let mut cluster = Cluster::start("ctsync", &options)?;
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;
    for gateway in ["gw1", "gw2"] {
        firewall(cluster.netns(gateway)?)?;
    }
    // Both in sync: gw2's bulk from gw1 is done.
    let synced = wait_for(STEADY_TIMEOUT, "gw2's bulk update to finish", || {
        sync_status(&cluster, "gw2")
            .filter(|s| s.bulk == "done" && s.peer_up)
            .map(|_| ())
    });
    cluster.with_report(synced)?;

    let client_address = CLIENT.address.split('/').next().unwrap_or_default();
    let _server = cluster.lab().client()?.spawn(
        [env!("CARGO_BIN_EXE_carp-tcp"), "serve", &PORT.to_string()],
        Some(&dir.path().join("serve.log")),
    )?;
    wait_for(STEADY_TIMEOUT, "the listener", || {
        std::fs::read_to_string(dir.path().join("serve.log"))
            .ok()
            .filter(|log| log.contains("listening"))
            .map(|_| ())
    })?;
    let mut traffic = Command::new("ip")
        .args(["netns", "exec", cluster.lab().server()?.name()])
        .arg(env!("CARGO_BIN_EXE_carp-tcp"))
        .args([
            "client",
            &format!("{client_address}:{PORT}"),
            "--flows",
            &IDLE_FLOWS.to_string(),
            "--seconds",
            &TRAFFIC_SECONDS.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = traffic
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut output = Vec::new();
    let ready = lines.recv_timeout(STEADY_TIMEOUT)?;
    output.push(ready.clone());
    anyhow::ensure!(ready.starts_with("ready"), "carp-tcp: {ready}");

    // Every flow reached gw2's table before the master dies.
    let replicated = wait_for(STEADY_TIMEOUT, "the flows to reach gw2", || {
        sync_status(&cluster, "gw2")
            .filter(|s| s.updates_applied > IDLE_FLOWS as u64)
            .map(|_| ())
    });
    cluster.with_report(replicated)?;

    let killed = cluster.signal("gw1", Signal::SIGKILL)?;
    cluster.takeover_times("gw2", killed, TAKEOVER_TIMEOUT)?;
    let deadline = Instant::now() + Duration::from_secs(TRAFFIC_SECONDS) + TAKEOVER_TIMEOUT;
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        output.push(line);
    }
    let status = traffic.wait()?;
    assert!(
        status.success() && output.iter().any(|l| l.starts_with("done")),
        "connections broke across the failover:\n{}{}",
        output.join("\n"),
        cluster.report()
    );
    assert!(cluster.all_vhids_in("gw2", &CarpState::Master));
    eprintln!("{}", output.last().cloned().unwrap_or_default());
    Ok(())
}

#[test]
fn a_peer_that_never_answers_holds_the_bulk_demotion_no_longer_than_the_bound() -> anyhow::Result<()>
{
    require_root()?;
    let dir = tempfile::tempdir()?;
    let key = key_file(dir.path())?;
    let bound = Duration::from_secs(4);
    let options = options(&key, &format!("bulk_timeout = {}\n", bound.as_secs()));
    // gw1 alone: nobody answers its bulk request.
    let started = Instant::now();
    let cluster = Cluster::start_each("ctbulk", &[("gw1", &options)])?;
    let holding = sync_status(&cluster, "gw1").map(|s| (s.bulk.clone(), s.demotion));
    let released = wait_for(bound * 2, "the bulk demotion to be released", || {
        let status = cluster.status("gw1").ok()?;
        let sync = status.sync.as_ref()?;
        (sync.bulk == "failed" && sync.demotion == 0 && status.demote_of("carp") < 32).then_some(())
    });
    cluster.with_report(released)?;
    let held_for = started.elapsed();
    assert!(
        matches!(holding, Some((ref bulk, 32)) if bulk == "requested"),
        "at start the bulk is requested and demotes by 32: {holding:?}"
    );
    assert!(
        held_for <= bound + Duration::from_secs(2),
        "the bulk demotion lasted {held_for:?}, bound {bound:?}"
    );
    Ok(())
}

/// Runs carp-sync-inject in `gateway`'s namespace.
fn inject(
    cluster: &Cluster,
    gateway: &str,
    local: &str,
    key: &Path,
    args: &[&str],
) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(["netns", "exec", cluster.netns(gateway)?.name()])
        .arg(env!("CARGO_BIN_EXE_carp-sync-inject"))
        .args(["--dev", "eth-sync", "--local", local, "--key-file"])
        .arg(key)
        .args(args)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "carp-sync-inject {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[test]
fn forged_replayed_and_truncated_sync_messages_change_nothing_and_are_counted() -> anyhow::Result<()>
{
    require_root()?;
    let dir = tempfile::tempdir()?;
    let key = key_file(dir.path())?;
    let cluster = Cluster::start("ctforge", &options(&key, ""))?;
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;
    let synced = wait_for(STEADY_TIMEOUT, "gw2's bulk update to finish", || {
        sync_status(&cluster, "gw2")
            .filter(|s| s.bulk == "done")
            .map(|_| ())
    });
    cluster.with_report(synced)?;
    let before = sync_status(&cluster, "gw2").unwrap_or_default();
    let gw2_sync = "10.0.3.3";
    for (kind, count) in [
        ("wrong-key", 1),
        ("truncated", 1),
        ("garbage", 1),
        ("unknown-session", 1),
        ("replay", 3),
    ] {
        inject(
            &cluster,
            "gw2",
            gw2_sync,
            &key,
            &["--count", &count.to_string(), kind],
        )?;
    }
    let expected = [
        ("bad_mac", 1),
        ("truncated", 1),
        ("bad_magic", 1),
        ("stale_session", 1),
        ("replayed", 3),
    ];
    let mut last = None;
    let counted = wait_for(STEADY_TIMEOUT, "every bad datagram counted", || {
        let after = sync_status(&cluster, "gw2")?;
        last = Some(after.drops.clone());
        expected
            .iter()
            .all(|(reason, n)| {
                after.drops.get(*reason).copied().unwrap_or(0)
                    >= before.drops.get(*reason).copied().unwrap_or(0) + n
            })
            .then_some(after)
    });
    let after = cluster.with_report(counted).map_err(|error| {
        anyhow::anyhow!(
            "{error}\ngw2's drops before {:?}, last seen {last:?}",
            before.drops
        )
    })?;
    assert_eq!(
        (
            after.updates_received,
            after.updates_applied,
            after.bulk.as_str()
        ),
        (before.updates_received, before.updates_applied, "done"),
        "a bad datagram changed state: before {before:?}, after {after:?}"
    );
    assert!(cluster.all_vhids_in("gw1", &CarpState::Master));
    assert!(cluster.all_vhids_in("gw2", &CarpState::Backup));
    Ok(())
}

/// PROTOCOL.md field story 1 (`OpenBSD` 5.1): the backup's carpd restarts
/// while its sync link flaps. The master must never leave MASTER (a peer's
/// restart is no loss of sync: it must not ask the booting peer for a bulk
/// and demote itself), and the backup must end in sync, as BACKUP.
#[test]
fn a_backup_restarting_while_its_sync_link_flaps_never_takes_over() -> anyhow::Result<()> {
    require_root()?;
    let dir = tempfile::tempdir()?;
    let key = key_file(dir.path())?;
    let options = options(&key, "bulk_timeout = 15\n");
    let mut cluster = Cluster::start("ctflap", &options)?;
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;
    let synced = wait_for(STEADY_TIMEOUT, "gw2 in sync", || {
        sync_status(&cluster, "gw2")
            .filter(|s| s.bulk == "done")
            .map(|_| ())
    });
    cluster.with_report(synced)?;
    let steady_at = carp_tests::wall_clock();

    cluster.signal("gw2", Signal::SIGTERM)?;
    cluster.wait_exit("gw2", STEADY_TIMEOUT)?;
    let gw2 = cluster.netns("gw2")?.name().to_owned();
    // Five flaps of the backup's sync link, its carpd restarting during the
    // second. The pauses are the stimulus, not a synchronisation.
    for flap in 0..5 {
        carp_tests::output(Command::new("ip").args([
            "netns", "exec", &gw2, "ip", "link", "set", "eth-sync", "down",
        ]))?;
        if flap == 1 {
            cluster.restart("gw2", &options)?;
        }
        std::thread::sleep(Duration::from_millis(300));
        carp_tests::output(
            Command::new("ip").args(["netns", "exec", &gw2, "ip", "link", "set", "eth-sync", "up"]),
        )?;
        std::thread::sleep(Duration::from_millis(300));
    }
    let in_sync = wait_for(Duration::from_secs(30), "gw2 in sync again", || {
        sync_status(&cluster, "gw2")
            .filter(|s| s.bulk == "done" && s.peer_up)
            .map(|_| ())
    });
    cluster.with_report(in_sync)?;
    let gw1_changes: Vec<_> = cluster
        .transitions("gw1")?
        .into_iter()
        .filter(|t| t.at > steady_at)
        .collect();
    assert!(
        gw1_changes.is_empty(),
        "the master changed state: {gw1_changes:?}\n--- gw1 ---\n{}\n--- gw2 ---\n{}",
        cluster.log_text("gw1")?,
        cluster.log_text("gw2")?
    );
    let gw2_master: Vec<_> = cluster
        .transitions("gw2")?
        .into_iter()
        .filter(|t| t.at > steady_at && t.to == CarpState::Master)
        .collect();
    assert!(
        gw2_master.is_empty(),
        "the restarting backup became MASTER: {gw2_master:?}"
    );
    assert!(cluster.all_vhids_in("gw2", &CarpState::Backup));
    assert!(cluster.all_vhids_in("gw1", &CarpState::Master));
    Ok(())
}

/// A bulk update larger than the receiver's socket buffer arrives whole:
/// the responder keeps a window of records in flight (flow control).
#[test]
fn a_bulk_of_a_hundred_thousand_entries_arrives_complete() -> anyhow::Result<()> {
    const ENTRIES: u32 = 100_000;
    require_root()?;
    let dir = tempfile::tempdir()?;
    let key = key_file(dir.path())?;
    let options = options(&key, "");
    let mut cluster = Cluster::start("ctbig", &options)?;
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;
    cluster.signal("gw2", Signal::SIGTERM)?;
    cluster.wait_exit("gw2", STEADY_TIMEOUT)?;
    inject(
        &cluster,
        "gw1",
        "10.0.3.2",
        &key,
        &["--count", &ENTRIES.to_string(), "populate"],
    )?;
    let restarted = Instant::now();
    cluster.restart("gw2", &options)?;
    let done = wait_for(Duration::from_mins(1), "gw2's bulk of 100k entries", || {
        let sync = sync_status(&cluster, "gw2")?;
        (sync.bulk != "requested" && sync.bulk != "receiving").then_some(sync)
    });
    let sync = cluster.with_report(done)?;
    let took = restarted.elapsed();
    eprintln!(
        "bulk of {ENTRIES}: {} after {took:?} ({} applied, {} entries, drops {:?})",
        sync.bulk, sync.updates_applied, sync.entries, sync.drops
    );
    assert_eq!(sync.bulk, "done", "{sync:?}");
    assert!(
        sync.entries >= u64::from(ENTRIES),
        "gw2 holds {} entries, gw1 had {ENTRIES}",
        sync.entries
    );
    Ok(())
}
