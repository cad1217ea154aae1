//! Running the daemons under test on a gateway namespace, crashing them and
//! stopping them on purpose.

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use carp_tests::{BpfMount, Carpd, Netns, Process, Signal};
use nix::unistd::Pid;

use super::capture::now;
use super::events::Nanos;
use super::impls::{self, Implementation, Mode, Rank};

/// carpd answers on its control socket well within this.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The programs a run needs, found once.
pub struct Tools {
    pub ucarp: Option<PathBuf>,
    pub keepalived: Option<PathBuf>,
}

impl Tools {
    pub fn find(mode: Mode) -> Result<Self> {
        for program in ["tcpdump", "ping", "stdbuf"] {
            find_program(program)?;
        }
        let wanted = |implementation| mode.implementations().contains(&implementation);
        let ucarp = if wanted(Implementation::Ucarp) {
            Some(find_program("ucarp")?)
        } else {
            None
        };
        let keepalived = if wanted(Implementation::Keepalived) {
            Some(find_program("keepalived")?)
        } else {
            None
        };
        Ok(Self { ucarp, keepalived })
    }
}

/// How the planned handover is done, for the table: the same signal for
/// every daemon, so the row compares like with like.
pub fn planned_method(mode: Mode) -> String {
    let names: Vec<&str> = mode.implementations().iter().map(|i| i.name()).collect();
    format!(
        "{}: SIGTERM (carpd bows out, keepalived sends priority 0, ucarp runs its down script)",
        names.join(", ")
    )
}

/// `program` from PATH or the sbin directories a non-login root shell may lack.
fn find_program(program: &str) -> Result<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!("{program} is not installed: run `cargo xtask setup` as root to install it")
        })
}

/// One gateway of the pair.
#[derive(Debug, Clone, Copy)]
pub struct Gateway {
    pub name: &'static str,
    pub address: &'static str,
    pub rank: Rank,
}

enum Running {
    /// carpd, and the bpffs its dataplane is pinned in: mounted here, in
    /// our mount namespace, so that the pins (and the XDP program) outlive
    /// a killed carpd as they do on a host; unmounted after carpd.
    Carpd {
        carpd: Carpd,
        _pins: BpfMount,
    },
    Other(Process),
}

/// A daemon under test on one gateway; killed when dropped.
pub struct Daemon {
    running: Running,
    log: PathBuf,
}

/// Where a daemon starts: its namespace, its gateway and the run's files.
pub struct Place<'a> {
    pub netns: &'a Netns,
    pub gateway: Gateway,
    pub dir: &'a Path,
    /// File name prefix for this run (`carpd-crash-1`).
    pub tag: &'a str,
    pub vip: &'a str,
}

impl Daemon {
    pub fn start(
        implementation: Implementation,
        mode: Mode,
        place: &Place,
        tools: &Tools,
    ) -> Result<Self> {
        let Place {
            netns,
            gateway,
            dir,
            tag,
            vip,
        } = *place;
        let file = |suffix: &str| dir.join(format!("{tag}-{}.{suffix}", gateway.name));
        let log = file("log");
        let socket = file("sock");
        let running = match implementation {
            Implementation::Carpd => {
                let config = file("toml");
                let pins = BpfMount::create(&file("pins"))?;
                write(
                    &config,
                    &impls::carpd_config(mode, gateway.rank, &socket, pins.path(), vip),
                )?;
                let carpd = Carpd::start(netns, gateway.name, &config, &socket, &log, false)?;
                Running::Carpd { carpd, _pins: pins }
            }
            Implementation::Ucarp => {
                let ucarp = tools.ucarp.as_deref().context("ucarp was not looked for")?;
                let up = dir.join("ucarp-up.sh");
                let down = dir.join("ucarp-down.sh");
                script(&up, impls::UCARP_UP)?;
                script(&down, impls::UCARP_DOWN)?;
                // Line-buffered, so the log is complete even after a SIGKILL.
                let mut args = vec![
                    "stdbuf".to_owned(),
                    "-oL".to_owned(),
                    "-eL".to_owned(),
                    ucarp.display().to_string(),
                ];
                args.extend(impls::ucarp_args(
                    mode,
                    gateway.rank,
                    gateway.address,
                    vip,
                    &up,
                    &down,
                ));
                Running::Other(netns.spawn(&args, Some(&log))?)
            }
            Implementation::Keepalived => {
                let keepalived = tools
                    .keepalived
                    .as_deref()
                    .context("keepalived was not looked for")?;
                let config = file("conf");
                write(
                    &config,
                    &impls::keepalived_config(mode, gateway.rank, gateway.name, vip),
                )?;
                let args = [
                    keepalived.display().to_string(),
                    "--dont-fork".into(),
                    "--log-console".into(),
                    "--log-detail".into(),
                    "--no-syslog".into(),
                    "--vrrp".into(),
                    // A crash must stay a crash: no respawned VRRP child.
                    "--dont-respawn".into(),
                    format!("--use-file={}", config.display()),
                    // Both nodes run on one host: pid files of their own.
                    format!("--pid={}", file("pid").display()),
                    format!("--vrrp_pid={}", file("vrrp.pid").display()),
                ];
                Running::Other(netns.spawn(args, Some(&log))?)
            }
        };
        Ok(Self { running, log })
    }

    /// carpd answers on its socket; the others are still running.
    pub fn ready(&mut self) -> Result<()> {
        match &mut self.running {
            Running::Carpd { carpd, .. } => carpd.wait_ready(READY_TIMEOUT).map(drop)?,
            Running::Other(_) => self.ensure_running()?,
        }
        Ok(())
    }

    pub fn ensure_running(&mut self) -> Result<()> {
        let exited = match &mut self.running {
            Running::Carpd { carpd, .. } => carpd.ensure_running().err(),
            Running::Other(process) => process.ensure_running().err(),
        };
        match exited {
            None => Ok(()),
            Some(error) => Err(anyhow::Error::from(error).context(format!(
                "last lines of {}:\n{}",
                self.log.display(),
                self.log_tail(15)
            ))),
        }
    }

    pub fn pid(&self) -> u32 {
        match &self.running {
            Running::Carpd { carpd, .. } => carpd.pid(),
            Running::Other(process) => process.pid(),
        }
    }

    fn process(&self) -> Option<&Process> {
        match &self.running {
            Running::Carpd { .. } => None,
            Running::Other(process) => Some(process),
        }
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        match &self.running {
            Running::Carpd { carpd, .. } => carpd.kill(signal)?,
            Running::Other(process) => process.kill(signal)?,
        }
        Ok(())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The planned handover: SIGTERM (carpd bows out, keepalived sends
    /// priority 0, ucarp runs its down script). Returns the instant right
    /// before acting.
    pub fn step_down(&self) -> Result<Nanos> {
        let at = now();
        self.signal(Signal::SIGTERM)?;
        Ok(at)
    }

    pub fn label(&self) -> String {
        self.process()
            .map_or_else(|| "carpd".to_owned(), |process| process.label().to_owned())
    }
}

/// Crashes `daemon` and whatever else runs in its namespace with SIGKILL,
/// the daemon's own process last. Returns the instant right before.
///
/// keepalived is two processes, and its VRRP child is told (SIGTERM) when
/// its parent dies: with the parent killed first, the child sometimes
/// stopped cleanly (priority 0 on the wire 0.6 ms after the kill, the
/// backup master 7 ms later where a crash takes the 36 ms master-down time
/// at `advert_int` 0.01). Stopping them all with SIGSTOP first did not
/// help: the pending SIGTERM is taken before the stop.
pub fn crash(netns: &Netns, daemon: &Daemon) -> Result<Nanos> {
    let main = Pid::from_raw(i32::try_from(daemon.pid()).context("pid out of range")?);
    // Listing the processes spawns `ip netns pids`: done before the clock starts.
    let mut pids: Vec<Pid> = netns.pids()?.into_iter().map(Pid::from_raw).collect();
    if !pids.contains(&main) {
        bail!("{} does not run in {}", daemon.label(), netns.name());
    }
    pids.retain(|pid| *pid != main);
    pids.push(main);
    let at = now();
    for pid in pids {
        // A process that exited meanwhile (a finished script) is no error.
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
    }
    Ok(at)
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn script(path: &Path, text: &str) -> Result<()> {
    write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}
