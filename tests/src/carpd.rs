//! carpd in a namespace, and carpctl to read its state.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::command::output;
use crate::error::{Error, Result};
use crate::host::{carpctl_bin, carpd_bin};
use crate::netns::{Netns, command_in};
use crate::process::{Process, Signal};
use crate::status::Status;
use crate::wait::wait_for;

/// A running carpd; killed (SIGKILL) when dropped.
pub struct Carpd {
    node: String,
    netns: String,
    process: Process,
    config: PathBuf,
    socket: PathBuf,
    log: PathBuf,
}

impl Carpd {
    /// Starts `carpd --config <config>` in `netns`, output appended to `log`.
    /// `socket` is the `control_socket` the config names.
    pub fn start(
        netns: &Netns,
        node: &str,
        config: &Path,
        socket: &Path,
        log: &Path,
        fresh: bool,
    ) -> Result<Self> {
        let carpd = carpd_bin()?;
        let mut args = vec![carpd.as_os_str(), "--config".as_ref(), config.as_os_str()];
        if fresh {
            args.push("--fresh".as_ref());
        }
        let process = netns.spawn(args, Some(log))?;
        Ok(Self {
            node: node.to_owned(),
            netns: netns.name().to_owned(),
            process,
            config: config.to_path_buf(),
            socket: socket.to_path_buf(),
            log: log.to_path_buf(),
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn config(&self) -> &Path {
        &self.config
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn kill(&self, sig: Signal) -> Result<()> {
        self.process.kill(sig)
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// `carpctl status --json` against this carpd.
    pub fn status(&self) -> Result<Status> {
        status_in(&self.netns, &self.socket)
    }

    /// `carpctl --socket <socket> <args>` against this carpd: its stdout,
    /// or an error quoting what carpctl said (its exit status is non-zero
    /// when carpd refused the request).
    pub fn carpctl<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = command_in(&self.netns, carpctl_bin()?);
        command.arg("--socket").arg(&self.socket).args(args);
        output(&mut command)
    }

    /// Its whole log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails, quoting the end of its log, if carpd has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.process.try_wait()? {
            None => Ok(()),
            Some(status) => Err(Error::DaemonExited {
                node: self.node.clone(),
                status,
                log: self.log.clone(),
                tail: self.log_tail(20),
            }),
        }
    }

    /// Waits until carpd answers on its control socket; fails at once if it
    /// exits meanwhile (a config it rejects, a missing capability).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Status> {
        let what = format!(
            "carpd on {} to answer on {}",
            self.node,
            self.socket.display()
        );
        wait_for(timeout, &what, || match self.ensure_running() {
            Err(exited) => Some(Err(exited)),
            Ok(()) => self.status().ok().map(Ok),
        })?
    }

    /// The last `lines` lines of its log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// `carpctl --socket <socket> status --json`, run inside `netns`.
pub fn carpctl_status(netns: &Netns, socket: &Path) -> Result<Status> {
    status_in(netns.name(), socket)
}

fn status_in(netns: &str, socket: &Path) -> Result<Status> {
    let mut command = command_in(netns, carpctl_bin()?);
    command
        .arg("--socket")
        .arg(socket)
        .args(["status", "--json"]);
    let json = output(&mut command)?;
    Status::parse(&json).map_err(|source| Error::Status {
        what: format!("carpctl status in {netns}"),
        source,
    })
}
