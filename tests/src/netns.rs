//! Network namespaces named `<prefix>-<pid>-<n>-<role>`: unique per process
//! and per topology, so tests run in parallel and twice, and the owner's pid
//! in the name lets a later run sweep what a killed run left behind.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{self, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::command::output;
use crate::error::{Error, Result};
use crate::process::Process;

/// Where `ip netns` keeps its bind mounts (iproute2's `NETNS_RUN_DIR`).
const NETNS_RUN_DIR: &str = "/run/netns";

static NEXT_STEM: AtomicU32 = AtomicU32::new(0);

/// A fresh `<prefix>-<pid>-<n>` for one topology's namespaces.
pub fn unique_stem(prefix: &str) -> String {
    let n = NEXT_STEM.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", process::id())
}

/// A network namespace that is deleted (with every process still in it)
/// when the guard drops, including during a panic's unwinding.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` with `lo` up.
    pub fn create(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        output(Command::new("ip").args(["netns", "add", &name]))?;
        // From here on the guard owns it, so a failure below still deletes it.
        let netns = Self { name };
        netns.ip(["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Creates `<prefix>-<pid>-<n>-<role>`.
    pub fn new(prefix: &str, role: &str) -> Result<Self> {
        Self::create(format!("{}-{role}", unique_stem(prefix)))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec <name> <program>`, for the caller to add arguments.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        command_in(&self.name, program)
    }

    /// Runs `args` (program first) inside the namespace; returns stdout.
    pub fn run<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).args(args);
        output(&mut command)
    }

    /// `ip -n <name> <args>`; returns stdout.
    pub fn ip<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new("ip");
        command.args(["-n", &self.name]).args(args);
        output(&mut command)
    }

    /// Starts `args` (program first) in the namespace, stdout and stderr
    /// appended to `log` (or discarded).
    pub fn spawn<I, S>(&self, args: I, log: Option<&Path>) -> Result<Process>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut args = args.into_iter();
        let Some(program) = args.next() else {
            return Err(Error::Topology(format!(
                "{}: spawn of an empty command",
                self.name
            )));
        };
        let label = format!("{} in {}", Path::new(program.as_ref()).display(), self.name);
        let mut command = self.command(program);
        command.args(args).stdin(Stdio::null());
        match log {
            Some(path) => {
                let file = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| Error::Io {
                        what: format!("open log {}", path.display()),
                        source,
                    })?;
                let for_stderr = file.try_clone().map_err(|source| Error::Io {
                    what: format!("open log {}", path.display()),
                    source,
                })?;
                command.stdout(file).stderr(for_stderr);
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        Process::spawn(label, &mut command)
    }

    /// Writes a sysctl inside the namespace (`net.ipv4.ip_forward` style key).
    /// Through /proc/sys rather than sysctl(8), which procps may not provide.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key);
        let path = path.to_string_lossy();
        self.run([
            "sh",
            "-c",
            "printf '%s\\n' \"$1\" > \"$2\"",
            "sh",
            value,
            &path,
        ])?;
        Ok(())
    }

    pub fn link_up(&self, dev: &str) -> Result<()> {
        self.ip(["link", "set", dev, "up"]).map(drop)
    }

    /// Pulls the cable: the carpdev sees carrier loss like a real unplug.
    pub fn link_down(&self, dev: &str) -> Result<()> {
        self.ip(["link", "set", dev, "down"]).map(drop)
    }

    /// One ping with a one-second wait; `Ok` when a reply came back.
    pub fn ping(&self, destination: &str) -> Result<()> {
        self.run(["ping", "-c", "1", "-W", "1", "-q", destination])
            .map(drop)
    }

    /// Pids of the processes living in the namespace.
    pub fn pids(&self) -> Result<Vec<i32>> {
        pids_in(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(error) = delete(&self.name) {
            eprintln!("carp-tests: {error}");
        }
    }
}

/// `ip netns exec <name> <program>`.
pub(crate) fn command_in(name: &str, program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", name]).arg(program);
    command
}

/// Whether namespace `name` exists.
pub fn exists(name: &str) -> bool {
    Path::new(NETNS_RUN_DIR).join(name).exists()
}

/// Names of all named network namespaces.
pub fn list() -> Result<Vec<String>> {
    let entries = match fs::read_dir(NETNS_RUN_DIR) {
        Ok(entries) => entries,
        // No namespace was ever added on this host.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                what: format!("list {NETNS_RUN_DIR}"),
                source,
            });
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Deletes the namespaces with `prefix` whose owning process is gone
/// (a test run killed before its guards could drop). Returns their names.
pub fn sweep_stale(prefix: &str) -> Result<Vec<String>> {
    let mut swept = Vec::new();
    for name in list()? {
        let Some(pid) = owner_pid(&name, prefix) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        delete(&name)?;
        swept.push(name);
    }
    Ok(swept)
}

/// The pid in `<prefix>-<pid>-...`, if `name` has that shape.
fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let pid = rest.split('-').next()?;
    pid.parse().ok()
}

fn pids_in(name: &str) -> Result<Vec<i32>> {
    let out = output(Command::new("ip").args(["netns", "pids", name]))?;
    Ok(out
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect())
}

/// Kills what still runs inside (a namespace with live processes outlives
/// `ip netns del`, and so would its veths and addresses), then deletes it.
/// Another process sweeping the same leftovers may win the race: a
/// namespace that is already gone counts as deleted.
fn delete(name: &str) -> Result<()> {
    let pids = match pids_in(name) {
        Ok(pids) => pids,
        Err(_) if !exists(name) => return Ok(()),
        Err(error) => return Err(error),
    };
    for pid in pids {
        // It may have exited meanwhile: nothing to do then.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    match output(Command::new("ip").args(["netns", "del", name])) {
        Err(_) if !exists(name) => Ok(()),
        result => result.map(drop),
    }
}

fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_unique_and_carry_the_pid() {
        let first = unique_stem("ct");
        let second = unique_stem("ct");
        assert_ne!(first, second);
        assert_eq!(
            owner_pid(&format!("{first}-gw1"), "ct"),
            Some(process::id())
        );
    }

    #[test]
    fn owner_pid_reads_only_names_of_the_prefix() {
        assert_eq!(owner_pid("lab-4242-0-gw1", "lab"), Some(4242));
        assert_eq!(owner_pid("lab-4242-0-sw", "lab"), Some(4242));
        assert_eq!(owner_pid("lab-x-0-sw", "lab"), None);
        assert_eq!(owner_pid("labs-4242-0-sw", "lab"), None);
        assert_eq!(owner_pid("ct-4242-0-sw", "lab"), None);
        assert_eq!(owner_pid("lab", "lab"), None);
    }

    #[test]
    fn sysctl_keys_map_to_proc_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward"),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net/ipv6/conf/all/forwarding"),
            Path::new("/proc/sys/net/ipv6/conf/all/forwarding")
        );
    }
}
