//! A child process that cannot outlive its test: killed (SIGKILL) and reaped on drop.

use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus};
use std::time::Duration;

use nix::sys::signal;
use nix::unistd::Pid;

pub use nix::sys::signal::Signal;

use crate::command::describe;
use crate::error::{Error, Result};
use crate::wait::wait_for;

pub struct Process {
    child: Child,
    label: String,
    exit: Option<ExitStatus>,
}

impl Process {
    /// Starts `command`. The child gets its own process group so that a
    /// Ctrl-C meant for the lab or the test runner does not reach it: its
    /// guard decides when it dies.
    pub fn spawn(label: impl Into<String>, command: &mut Command) -> Result<Self> {
        use std::os::unix::process::CommandExt as _;
        let child = command
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn {
                command: describe(command),
                source,
            })?;
        Ok(Self {
            child,
            label: label.into(),
            exit: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Sends `sig` (SIGTERM to ask, SIGKILL to crash it on purpose).
    pub fn kill(&self, sig: Signal) -> Result<()> {
        if self.exit.is_some() {
            return Ok(());
        }
        let pid = i32::try_from(self.pid()).map_err(|_| Error::Io {
            what: format!("{}: pid {} out of range", self.label, self.pid()),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        })?;
        signal::kill(Pid::from_raw(pid), sig).map_err(|errno| Error::Io {
            what: format!("{}: kill({pid}, {sig})", self.label),
            source: errno.into(),
        })
    }

    /// Its exit status if it has exited (reaping it), else `None`.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().map_err(|source| Error::Io {
                what: format!("{}: wait", self.label),
                source,
            })?;
        }
        Ok(self.exit)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Waits at most `timeout` for it to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let what = format!("{} to exit", self.label);
        wait_for(timeout, &what, || self.try_wait().ok().flatten())
    }

    /// Fails with its exit status if it is no longer running: for checks
    /// that a daemon survived a scenario.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.try_wait()? {
            None => Ok(()),
            Some(status) => Err(Error::Exited {
                process: self.label.clone(),
                status,
            }),
        }
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exit.is_some() {
            return;
        }
        // Errors here mean it already exited; either way reap it so no zombie
        // outlives the guard.
        if let Err(error) = self.child.kill() {
            eprintln!("carp-tests: {}: kill: {error}", self.label);
        }
        if let Err(error) = self.child.wait() {
            eprintln!("carp-tests: {}: wait: {error}", self.label);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;
    use std::path::Path;

    use super::*;

    #[test]
    fn kill_delivers_the_signal() -> anyhow::Result<()> {
        let mut sleeper = Process::spawn("sleep", Command::new("sleep").arg("30"))?;
        assert!(sleeper.is_running());
        sleeper.kill(Signal::SIGTERM)?;
        let status = sleeper.wait_exit(Duration::from_secs(5))?;
        assert_eq!(status.signal(), Some(libc_sigterm()));
        assert!(sleeper.ensure_running().is_err());
        Ok(())
    }

    #[test]
    fn drop_kills_and_reaps_the_child() -> anyhow::Result<()> {
        let sleeper = Process::spawn("sleep", Command::new("sleep").arg("30"))?;
        let proc_dir = format!("/proc/{}", sleeper.pid());
        assert!(Path::new(&proc_dir).exists());
        drop(sleeper);
        // Reaped, not a zombie: the pid's /proc entry is gone.
        assert!(!Path::new(&proc_dir).exists(), "{proc_dir} still exists");
        Ok(())
    }

    #[test]
    fn early_exit_is_reported_with_its_status() -> anyhow::Result<()> {
        let mut quitter = Process::spawn("quitter", Command::new("sh").args(["-c", "exit 7"]))?;
        let status = quitter.wait_exit(Duration::from_secs(5))?;
        assert_eq!(status.code(), Some(7));
        let error = quitter.ensure_running().expect_err("it exited");
        assert!(
            error.to_string().starts_with("quitter exited early"),
            "{error}"
        );
        Ok(())
    }

    fn libc_sigterm() -> i32 {
        Signal::SIGTERM as i32
    }
}
