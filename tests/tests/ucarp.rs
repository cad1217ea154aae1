//! Interop with ucarp: carpd on one node and ucarp on the other share a vhid
//! with one IPv4 VIP (ucarp hashes exactly that one address), and elect the
//! node with the lower advskew either way round, with no digest errors on
//! either side.
//!
//! ```text
//!   carpd 10.0.5.2 ─┐
//!   ucarp 10.0.5.3 ─┼─ seg        VIP 10.0.5.1 (vhid 7)
//!   probe 10.0.5.100┘
//! ```

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use carp_tests::{
    CarpState, Carpd, NodeSpec, POLL_INTERVAL, Process, Topology, TopologySpec, require_root,
    wait_for, wait_until,
};

/// Namespaces of these tests start with this (unique per test file).
const PREFIX: &str = "ctucarp";
const BRIDGE: &str = "seg";
const IFNAME: &str = "eth0";
const CARPD_NODE: &str = "carpd";
const UCARP_NODE: &str = "ucarp";
const PROBE_NODE: &str = "probe";
const CARPD_ADDRESS: &str = "10.0.5.2";
const UCARP_ADDRESS: &str = "10.0.5.3";
const PROBE_ADDRESS: &str = "10.0.5.100";
const VIP: &str = "10.0.5.1";
const PREFIX_LEN: u8 = 24;
const VHID: u8 = 7;
/// carp(4)'s virtual MAC for vhid 7: who answers ARP with it is carpd's carp0.
const VIRTUAL_MAC: &str = "00:00:5e:00:01:07";
const PASS: &str = "ucarp-interop";
/// The lower advskew wins; the other side's master-down timer is then
/// 3 x (1 + 100/256) s, about 4.2 s.
const WINNING_ADVSKEW: u8 = 0;
const LOSING_ADVSKEW: u8 = 100;

const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Both start as BACKUP with a master-down timer of about 3 s; one or two
/// preemptions may follow. The rest is margin for two shared CI cores.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(20);
/// After the election nothing may change for longer than the backup's
/// master-down timer (about 4.2 s): a backup that rejected the master's
/// adverts would take over within it.
const STABLE_WINDOW: Duration = Duration::from_secs(6);
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// ucarp's own words (src/carp.c) for a digest it rejects, and for the
/// other checks it makes before that.
const UCARP_REJECTIONS: [&str; 4] = ["Bad digest", "Bad TTL", "Bad version", "Bad IP checksum"];
const UCARP_STATE: &str = "Switching to state: ";
/// carpd's log line for a rejected HMAC.
const CARPD_BADAUTH: &str = "incorrect hash";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Winner {
    Carpd,
    Ucarp,
}

/// carpd and ucarp running on the segment. Fields drop in order: the
/// daemons, then the namespaces, then their files.
struct Pair {
    carpd: Carpd,
    ucarp: Process,
    topology: Topology,
    ucarp_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pair {
    fn start(carpd_advskew: u8, ucarp_advskew: u8) -> anyhow::Result<Self> {
        require_root()?;
        let ucarp = ucarp_bin()?;
        let topology = Topology::build(PREFIX, &spec())?;
        let dir = tempfile::tempdir()?;

        let config = dir.path().join("carpd.toml");
        let socket = dir.path().join("carpd.sock");
        fs::write(&config, carpd_config(&socket, carpd_advskew))?;
        let mut carpd = Carpd::start(
            topology.node(CARPD_NODE)?,
            CARPD_NODE,
            &config,
            &socket,
            &dir.path().join("carpd.log"),
            false,
        )?;
        carpd.wait_ready(READY_TIMEOUT)?;

        let up = script(dir.path(), "vip-up.sh", "ip addr add \"$2/24\" dev \"$1\"")?;
        let down = script(
            dir.path(),
            "vip-down.sh",
            "ip addr del \"$2/24\" dev \"$1\" 2>/dev/null || true",
        )?;
        let ucarp_log = dir.path().join("ucarp.log");
        let args: Vec<String> = vec![
            // Line-buffered: ucarp prints state changes with stdio, and a
            // test must see each line when it happens.
            "stdbuf".into(),
            "-oL".into(),
            "-eL".into(),
            ucarp.display().to_string(),
            format!("--interface={IFNAME}"),
            format!("--srcip={UCARP_ADDRESS}"),
            format!("--vhid={VHID}"),
            format!("--pass={PASS}"),
            format!("--addr={VIP}"),
            "--advbase=1".into(),
            format!("--advskew={ucarp_advskew}"),
            "--preempt".into(),
            format!("--upscript={}", up.display()),
            format!("--downscript={}", down.display()),
        ];
        let ucarp = topology.node(UCARP_NODE)?.spawn(&args, Some(&ucarp_log))?;
        Ok(Self {
            carpd,
            ucarp,
            topology,
            ucarp_log,
            _dir: dir,
        })
    }

    fn carpd_state(&self) -> anyhow::Result<CarpState> {
        let status = self.carpd.status()?;
        let row = status
            .by_vhid(VHID)
            .with_context(|| format!("no vhid {VHID} in carpd's status"))?;
        Ok(row.state.clone())
    }

    /// ucarp's state: the last one it logged switching to.
    fn ucarp_state(&self) -> Option<CarpState> {
        let log = fs::read_to_string(&self.ucarp_log).ok()?;
        let state = log
            .lines()
            .rev()
            .find_map(|line| line.split_once(UCARP_STATE))?
            .1
            .trim();
        Some(CarpState::from(state.to_owned()))
    }

    /// Whether ucarp's upscript has put the VIP on its node.
    fn ucarp_holds_vip(&self) -> anyhow::Result<bool> {
        let addresses = self
            .topology
            .node(UCARP_NODE)?
            .ip(["-4", "-o", "addr", "show", "dev", IFNAME])?;
        Ok(addresses.contains(&format!(" {VIP}/")))
    }

    /// (carpd, ucarp, ucarp holds the VIP) as they are now.
    fn observe(&self) -> anyhow::Result<(CarpState, Option<CarpState>, bool)> {
        Ok((
            self.carpd_state()?,
            self.ucarp_state(),
            self.ucarp_holds_vip()?,
        ))
    }

    fn expected(winner: Winner) -> (CarpState, Option<CarpState>, bool) {
        match winner {
            Winner::Carpd => (CarpState::Master, Some(CarpState::Backup), false),
            Winner::Ucarp => (CarpState::Backup, Some(CarpState::Master), true),
        }
    }

    fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.carpd.ensure_running()?;
        self.ucarp
            .ensure_running()
            .with_context(|| format!("ucarp exited; its log:\n{}", self.ucarp_log_text()))?;
        Ok(())
    }

    fn wait_elected(&mut self, winner: Winner) -> anyhow::Result<()> {
        let expected = Self::expected(winner);
        let awaited = format!("{winner:?} to win: (carpd, ucarp, ucarp holds VIP) = {expected:?}");
        let mut last = None;
        let elected = wait_for(ELECTION_TIMEOUT, &awaited, || {
            if let Err(exited) = self.ensure_running() {
                return Some(Err(exited));
            }
            let now = self.observe().ok()?;
            let done = now == expected;
            last = Some(now);
            done.then_some(Ok(()))
        });
        elected
            .map_err(anyhow::Error::from)
            .and_then(|inner| inner)
            .with_context(|| format!("last seen {last:?}\n{}", self.logs()))
    }

    /// Watches for [`STABLE_WINDOW`] that nothing changes: this checks that
    /// something does NOT happen, so it is a bounded observation, not a wait.
    fn stays_elected(&mut self, winner: Winner) -> anyhow::Result<()> {
        let expected = Self::expected(winner);
        let started = Instant::now();
        while started.elapsed() < STABLE_WINDOW {
            self.ensure_running()?;
            let now = self.observe()?;
            ensure!(
                now == expected,
                "after {:.1}s of the stable window: (carpd, ucarp, ucarp holds VIP) = {now:?}, expected {expected:?}\n{}",
                started.elapsed().as_secs_f64(),
                self.logs()
            );
            std::thread::sleep(POLL_INTERVAL * 10);
        }
        Ok(())
    }

    /// The MAC the probe's ARP resolves the VIP to.
    fn vip_mac_seen_by_probe(&self) -> anyhow::Result<String> {
        let probe = self.topology.node(PROBE_NODE)?;
        wait_until(PING_TIMEOUT, &format!("the probe to ping {VIP}"), || {
            probe.ping(VIP).is_ok()
        })?;
        let neighbour = probe.ip(["neigh", "show", VIP, "dev", IFNAME])?;
        let mac = neighbour
            .split_whitespace()
            .skip_while(|word| *word != "lladdr")
            .nth(1)
            .with_context(|| format!("no lladdr for {VIP} on the probe: {neighbour:?}"))?;
        Ok(mac.to_owned())
    }

    fn ucarp_mac(&self) -> anyhow::Result<String> {
        let link = self
            .topology
            .node(UCARP_NODE)?
            .ip(["-br", "link", "show", "dev", IFNAME])?;
        link.split_whitespace()
            .nth(2)
            .map(str::to_owned)
            .with_context(|| format!("no MAC in {link:?}"))
    }

    fn ucarp_log_text(&self) -> String {
        fs::read_to_string(&self.ucarp_log).unwrap_or_default()
    }

    fn logs(&self) -> String {
        format!(
            "--- carpd ({}):\n{}\n--- ucarp ({}):\n{}",
            self.carpd.log().display(),
            self.carpd.log_tail(20),
            self.ucarp_log.display(),
            self.ucarp_log_text()
        )
    }

    /// Neither side rejected the other's advertisements.
    fn check_no_rejections(&self) -> anyhow::Result<()> {
        let status = self.carpd.status()?;
        let row = status
            .by_vhid(VHID)
            .with_context(|| format!("no vhid {VHID} in carpd's status"))?;
        let drops: Vec<_> = row.counters.drops.iter().filter(|(_, n)| **n > 0).collect();
        ensure!(
            drops.is_empty(),
            "carpd dropped adverts (ucarp's?): {drops:?}\n{}",
            self.logs()
        );
        let carpd_log = fs::read_to_string(self.carpd.log())?;
        ensure!(
            !carpd_log.contains(CARPD_BADAUTH),
            "carpd rejected a digest:\n{carpd_log}"
        );
        let ucarp_log = self.ucarp_log_text();
        if let Some(line) = ucarp_log
            .lines()
            .find(|line| UCARP_REJECTIONS.iter().any(|bad| line.contains(bad)))
        {
            bail!("ucarp rejected carpd's advert: {line}\n{}", self.logs());
        }
        Ok(())
    }
}

fn spec() -> TopologySpec {
    let address = |ip: &str| format!("{ip}/{PREFIX_LEN}");
    TopologySpec::new()
        .bridge(BRIDGE)
        .node(NodeSpec::new(CARPD_NODE).port(IFNAME, BRIDGE, &[&address(CARPD_ADDRESS)]))
        .node(NodeSpec::new(UCARP_NODE).port(IFNAME, BRIDGE, &[&address(UCARP_ADDRESS)]))
        .node(NodeSpec::new(PROBE_NODE).port(IFNAME, BRIDGE, &[&address(PROBE_ADDRESS)]))
}

/// One vhid with exactly one IPv4 address: the only kind ucarp can share.
fn carpd_config(socket: &Path, advskew: u8) -> String {
    let quoted = |text: &str| serde_json::Value::from(text).to_string();
    format!(
        "preempt = true\ncontrol_socket = {}\n\n[[carp]]\nname = \"carp0\"\ncarpdev = {}\nvhid = {VHID}\npass = {}\nadvbase = 1\nadvskew = {advskew}\naddresses = [{}]\n",
        quoted(&socket.to_string_lossy()),
        quoted(IFNAME),
        quoted(PASS),
        quoted(&format!("{VIP}/{PREFIX_LEN}")),
    )
}

/// An executable `sh` script for ucarp, which calls it as `<script> <interface> <vip>`.
fn script(dir: &Path, name: &str, body: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n"))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// ucarp from PATH (or the sbin directories a non-login root shell may lack).
fn ucarp_bin() -> anyhow::Result<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("ucarp"))
        .find(|candidate| candidate.is_file())
        .context(
            "ucarp is not installed (Debian package `ucarp`): run `cargo xtask setup` as root to install it",
        )
}

fn interop(carpd_advskew: u8, ucarp_advskew: u8, winner: Winner) -> anyhow::Result<()> {
    let mut pair = Pair::start(carpd_advskew, ucarp_advskew)?;
    pair.wait_elected(winner)?;
    let adverts_before = pair
        .carpd
        .status()?
        .by_vhid(VHID)
        .map(|row| row.counters.clone());
    pair.stays_elected(winner)?;
    pair.check_no_rejections()?;

    // The master's adverts kept flowing through the window: the backup
    // stayed backup because it accepted them, not because none came.
    let adverts_after = pair
        .carpd
        .status()?
        .by_vhid(VHID)
        .map(|row| row.counters.clone());
    let (Some(before), Some(after)) = (adverts_before, adverts_after) else {
        bail!("no vhid {VHID} in carpd's status");
    };
    let min_adverts = STABLE_WINDOW.as_secs() / 2;
    match winner {
        Winner::Carpd => ensure!(
            after.adverts_sent >= before.adverts_sent + min_adverts,
            "carpd as MASTER sent {} adverts in {STABLE_WINDOW:?}",
            after.adverts_sent - before.adverts_sent
        ),
        Winner::Ucarp => ensure!(
            after.adverts_received >= before.adverts_received + min_adverts,
            "carpd as BACKUP received {} of ucarp's adverts in {STABLE_WINDOW:?}",
            after.adverts_received - before.adverts_received
        ),
    }

    // Whoever is master answers ARP for the VIP: carpd with the virtual MAC,
    // ucarp (which has no virtual MAC) with its interface's own.
    let expected_mac = match winner {
        Winner::Carpd => VIRTUAL_MAC.to_owned(),
        Winner::Ucarp => pair.ucarp_mac()?,
    };
    let mac = pair.vip_mac_seen_by_probe()?;
    assert_eq!(
        mac, expected_mac,
        "{VIP} answered by the wrong node ({winner:?} should be master)"
    );
    pair.check_no_rejections()?;
    Ok(())
}

#[test]
fn carpd_with_the_lower_advskew_is_master_over_ucarp() -> anyhow::Result<()> {
    interop(WINNING_ADVSKEW, LOSING_ADVSKEW, Winner::Carpd)
}

#[test]
fn ucarp_with_the_lower_advskew_is_master_over_carpd() -> anyhow::Result<()> {
    interop(LOSING_ADVSKEW, WINNING_ADVSKEW, Winner::Ucarp)
}
