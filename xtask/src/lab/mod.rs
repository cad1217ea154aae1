//! `cargo xtask lab`: the gateway pair of docs' README in namespaces, carpd
//! on each gateway, and a live view of elections while you break things.
//! `--check` is the same lab as a pass/fail test of the main job: one MASTER
//! per vhid, and the VIPs answer and forward.

mod view;

use std::fs;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use carp_tests::{CLIENT, Carpd, Error, GATEWAYS, Lab, SERVER, VHIDS, wait_until};
use nix::sys::signal::Signal;

use self::view::{Poll, View};
use crate::release;
use crate::tools::is_root;

/// Lab namespaces are `lab-<pid>-<n>-<node>`; leftovers of a run that died
/// are swept by the next one.
const LAB_PREFIX: &str = "lab";
/// How often the view asks each carpd for its status.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// carpd start plus one election: master-down is 3 x interval (about 4 s
/// for gw2's advskew 100), so this leaves ample room on a busy machine.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// A new master's gratuitous ARP is immediate; this covers a slow machine.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(check_only: bool) -> Result<()> {
    if !is_root() {
        bail!(
            "the lab creates network namespaces and runs carpd: run it as root (`sudo -E cargo xtask lab`)"
        );
    }
    if given_binaries() {
        println!("lab: using $CARPD_BIN and $CARPCTL_BIN, not building");
    } else {
        release::build()?;
    }
    let interrupts = crate::interrupt::interrupts()?;
    if check_only {
        check(&interrupts)
    } else {
        live(&interrupts)
    }
}

/// Both binaries named in the environment (as `cargo xtask test` does for
/// the tests): then the lab runs those, e.g. a debug build or another tree's.
fn given_binaries() -> bool {
    ["CARPD_BIN", "CARPCTL_BIN"]
        .iter()
        .all(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// carpd on each gateway of a fresh lab. Field order matters: the daemons
/// drop (are killed) before their namespaces are deleted.
struct Session {
    daemons: Vec<Carpd>,
    lab: Lab,
    dir: PathBuf,
    started: Instant,
}

impl Session {
    fn start() -> Result<Self> {
        let lab = Lab::build(LAB_PREFIX)?;
        let dir = std::env::temp_dir().join(format!("carp-{}", lab.topology().stem()));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let started = Instant::now();
        let daemons = match lab.start_all_carpd(&dir) {
            Ok(daemons) => daemons,
            Err(error) => {
                // Nothing ran: no log worth keeping.
                if let Err(cleanup) = fs::remove_dir_all(&dir) {
                    eprintln!("xtask: cannot remove {}: {cleanup}", dir.display());
                }
                return Err(error.into());
            }
        };
        Ok(Self {
            daemons,
            lab,
            dir,
            started,
        })
    }

    /// Asks every carpd for its status; returns the lines of what changed.
    fn poll(&mut self, view: &mut View) -> Vec<String> {
        let mut lines = Vec::new();
        for daemon in &mut self.daemons {
            let poll = match daemon.process().try_wait() {
                Ok(Some(status)) => Poll::Exited(status.to_string()),
                Ok(None) | Err(_) => match daemon.status() {
                    Ok(status) => Poll::Status(status),
                    // carpctl's own words, not the whole `ip netns exec` line.
                    Err(Error::Command { output, .. }) => Poll::NoAnswer(output),
                    Err(error) => Poll::NoAnswer(error.to_string()),
                },
            };
            lines.extend(view.observe(self.started.elapsed(), daemon.node(), poll));
        }
        lines
    }

    fn netns(&self, node: &str) -> String {
        self.lab
            .topology()
            .node(node)
            .map_or_else(|_| "?".to_owned(), |netns| netns.name().to_owned())
    }

    fn print_banner(&self) {
        println!(
            "carp lab: namespaces {}-*, files in {}",
            self.lab.topology().stem(),
            self.dir.display()
        );
        let carpctl = carp_tests::carpctl_bin()
            .map_or_else(|_| "carpctl".into(), |p| p.display().to_string());
        for daemon in &self.daemons {
            let node = daemon.node();
            let netns = self.netns(node);
            println!(
                "  {node}: netns {netns}, carpd pid {}, log {}",
                daemon.pid(),
                daemon.log().display()
            );
            println!(
                "    status:       ip netns exec {netns} {carpctl} --socket {} status",
                daemon.socket().display()
            );
            println!("    crash carpd:  kill -9 {}", daemon.pid());
            println!(
                "    pull a cable: ip -n {netns} link set eth-out down   (eth-in, eth-sync too)"
            );
            println!("    plug it back: ip -n {netns} link set eth-out up");
        }
        println!(
            "  traffic through the VIPs: ip netns exec {} ping {}",
            self.netns(CLIENT.name),
            SERVER.address.split('/').next().unwrap_or(SERVER.address)
        );
        println!("  gw1 should win both vhids (advskew 0 against 100). Ctrl-C tears the lab down.");
    }

    fn print_log_tails(&self) {
        for daemon in &self.daemons {
            println!(
                "--- last lines of {} ---\n{}",
                daemon.log().display(),
                daemon.log_tail(15)
            );
        }
    }
}

/// The interactive lab: prints transitions until Ctrl-C.
fn live(interrupts: &Receiver<Signal>) -> Result<()> {
    let mut session = Session::start()?;
    session.print_banner();
    let mut view = View::default();
    loop {
        let lines = session.poll(&mut view);
        if !lines.is_empty() {
            for line in lines {
                println!("{line}");
            }
            print!("{}", view.table());
        }
        match interrupts.recv_timeout(POLL_INTERVAL) {
            Ok(signal) => {
                println!("{signal}: tearing the lab down");
                break;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let dir = session.dir.clone();
    drop(session);
    println!("lab torn down; configs and logs kept in {}", dir.display());
    Ok(())
}

/// The lab as a test: exactly one MASTER per vhid within `CHECK_TIMEOUT`,
/// then the VIPs answer and forward between client and server.
fn check(interrupts: &Receiver<Signal>) -> Result<()> {
    let mut session = Session::start()?;
    let mut view = View::default();
    let outcome = converge(&mut session, &mut view, interrupts).and_then(|()| {
        print!("{}", view.table());
        forwards(&session.lab)
    });
    let dir = session.dir.clone();
    if outcome.is_err() {
        print!("{}", view.table());
        session.print_log_tails();
    }
    drop(session);
    match outcome {
        Ok(()) => {
            // Only logs of a passing run: nothing worth keeping.
            fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
            println!("lab check passed");
            Ok(())
        }
        Err(error) => Err(error.context(format!(
            "lab check failed (configs and logs kept in {})",
            dir.display()
        ))),
    }
}

fn converge(session: &mut Session, view: &mut View, interrupts: &Receiver<Signal>) -> Result<()> {
    let deadline = Instant::now() + CHECK_TIMEOUT;
    loop {
        for line in session.poll(view) {
            println!("{line}");
        }
        for daemon in &mut session.daemons {
            daemon.ensure_running()?;
        }
        if view.statuses().len() == GATEWAYS.len() && view.converged() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "after {}s, not every vhid ({}) has exactly one MASTER",
                CHECK_TIMEOUT.as_secs(),
                VHIDS
                    .iter()
                    .map(|v| v.vhid.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        match interrupts.recv_timeout(POLL_INTERVAL) {
            Ok(signal) => bail!("interrupted ({signal})"),
            Err(RecvTimeoutError::Timeout) => {}
            // Nobody can interrupt any more (a test): just pace the polls.
            Err(RecvTimeoutError::Disconnected) => thread::sleep(POLL_INTERVAL),
        }
    }
}

/// The hosts reach their VIP and each other through it: the master does
/// the job, not just the election.
fn forwards(lab: &Lab) -> Result<()> {
    let client = lab.client()?;
    let server = lab.server()?;
    let checks = [
        (client, CLIENT.name, CLIENT.gateway, "its VIP"),
        (server, SERVER.name, SERVER.gateway, "its VIP"),
        (
            client,
            CLIENT.name,
            SERVER.address,
            "the server, routed through both VIPs",
        ),
    ];
    for (netns, name, address, what) in checks {
        let address = address.split('/').next().unwrap_or(address);
        let awaited = format!("{name} to reach {address} ({what})");
        wait_until(FORWARD_TIMEOUT, &awaited, || netns.ping(address).is_ok())?;
        println!("{name} -> {address} ({what}): ok");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// `cargo xtask lab --check` without the build: the binaries come from
    /// `CARPD_BIN` / `CARPCTL_BIN` (set by `cargo xtask test`).
    #[test]
    fn lab_check_elects_one_master_per_vhid_and_forwards() -> Result<()> {
        carp_tests::require_root()?;
        let (_keep_open, interrupts) = mpsc::channel();
        check(&interrupts)
    }
}
