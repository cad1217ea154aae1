//! Commands through `sh -c`, bounded in time: the exec tracker and the hooks.
//!
//! A command runs in its own process group so that, when it overruns, the
//! shell and whatever it started (a pipeline, a script's children) are killed
//! together; killing only the shell would leave a hung `curl` behind.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tracing::warn;

use super::Outcome;

const SHELL: &str = "/bin/sh";
/// How long a killed command gets to be reaped (a process stuck in the kernel
/// may not die at once); past it tokio reaps it in the background.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// How a command ended.
#[derive(Debug)]
pub enum ShellOutcome {
    Exited(ExitStatus),
    /// Overran its time and was killed.
    TimedOut(Duration),
    /// The shell could not be started or waited for.
    Failed(std::io::Error),
}

impl ShellOutcome {
    pub fn success(&self) -> bool {
        matches!(self, ShellOutcome::Exited(status) if status.success())
    }
}

impl fmt::Display for ShellOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShellOutcome::Exited(status) => match (status.code(), status.signal()) {
                (Some(code), _) => write!(f, "exit status {code}"),
                (None, Some(signal)) => write!(f, "killed by signal {signal}"),
                (None, None) => write!(f, "{status}"),
            },
            ShellOutcome::TimedOut(timeout) => {
                write!(f, "not done within {} ms, killed", timeout.as_millis())
            }
            ShellOutcome::Failed(error) => write!(f, "cannot run {SHELL}: {error}"),
        }
    }
}

/// Runs `command` with `env` added to carpd's environment, no stdin and its
/// output discarded (it may print secrets; carpd's log is no place for them).
/// Whatever is still running in its process group after `timeout` is killed.
pub async fn run_shell(command: &str, env: &[(&str, String)], timeout: Duration) -> ShellOutcome {
    let mut child = match Command::new(SHELL)
        .arg("-c")
        .arg(command)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        // If this future is dropped (a tracker stopped), the shell at least dies.
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(error) => return ShellOutcome::Failed(error),
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => ShellOutcome::Exited(status),
        Ok(Err(error)) => ShellOutcome::Failed(error),
        Err(_elapsed) => {
            kill(&mut child).await;
            ShellOutcome::TimedOut(timeout)
        }
    }
}

/// Kills the command's process group, then the shell in case that failed,
/// and reaps the shell. The shell is not reaped before the group is killed,
/// so its pid (the group id) cannot have been reused by then.
async fn kill(child: &mut Child) {
    if let Some(group) = child.id() {
        kill_group(group).await;
    }
    match tokio::time::timeout(KILL_GRACE, child.kill()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => warn!("cannot kill {SHELL} (pid {:?}): {error}", child.id()),
        Err(_elapsed) => warn!(
            "{SHELL} (pid {:?}) still not reaped {} ms after SIGKILL",
            child.id(),
            KILL_GRACE.as_millis()
        ),
    }
}

/// `kill(2)` on a group is an unsafe libc call; the shell's `kill` builtin
/// does the same without `unsafe` in carpd, and this runs only on overrun.
async fn kill_group(group: u32) {
    let status = Command::new(SHELL)
        .arg("-c")
        .arg(format!("kill -s KILL -- -{group}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(KILL_GRACE, status).await {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => warn!("killing process group {group}: kill ended with {status}"),
        Ok(Err(error)) => warn!("killing process group {group}: {error}"),
        Err(_elapsed) => warn!("killing process group {group}: kill did not finish"),
    }
}

/// The exec tracker: exit status 0 is good.
pub(super) async fn check(command: &str, timeout: Duration) -> Outcome {
    let outcome = run_shell(command, &[], timeout).await;
    Outcome {
        ok: outcome.success(),
        detail: outcome.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Instant;

    use super::*;

    /// Whether `pid` is gone (a zombie waiting for init counts as gone).
    fn is_gone(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            // "pid (comm) S ...": the state follows the last ')'.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        }
    }

    async fn wait_until_gone(pid: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_gone(pid) {
            assert!(Instant::now() < deadline, "pid {pid} still alive");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn read_pid(path: &Path) -> String {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    #[tokio::test]
    async fn true_is_good_false_is_bad() {
        let good = check("true", Duration::from_secs(5)).await;
        assert!(good.ok);
        assert_eq!(good.detail, "exit status 0");
        let bad = check("false", Duration::from_secs(5)).await;
        assert!(!bad.ok);
        assert_eq!(bad.detail, "exit status 1");
        let killed = check("kill -s TERM $$", Duration::from_secs(5)).await;
        assert!(!killed.ok);
        assert_eq!(killed.detail, format!("killed by signal {}", libc::SIGTERM));
    }

    #[tokio::test]
    async fn an_overrun_is_bad_and_killed_quickly() {
        let started = Instant::now();
        let outcome = check("sleep 5", Duration::from_millis(100)).await;
        assert!(!outcome.ok);
        assert_eq!(outcome.detail, "not done within 100 ms, killed");
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn an_overrun_kills_the_shell_and_its_children() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let shell_pid = dir.path().join("shell.pid");
        let sleep_pid = dir.path().join("sleep.pid");
        // The sleep is a child of the shell, not exec'd in its place.
        let command = format!(
            "echo $$ > {}; sleep 30 & echo $! > {}; wait",
            shell_pid.display(),
            sleep_pid.display()
        );
        let started = Instant::now();
        let outcome = check(&command, Duration::from_millis(500)).await;
        assert!(!outcome.ok, "{}", outcome.detail);
        assert!(started.elapsed() < Duration::from_millis(1500));
        // The shell was reaped by run_shell itself; the orphaned sleep by init.
        assert!(is_gone(&read_pid(&shell_pid)));
        wait_until_gone(&read_pid(&sleep_pid)).await;
    }

    #[tokio::test]
    async fn passes_the_environment_and_reports_a_missing_command() {
        let env = [("CARP_TEST_VALUE", "a b".to_owned())];
        let outcome = run_shell(
            "test \"$CARP_TEST_VALUE\" = 'a b'",
            &env,
            Duration::from_secs(5),
        )
        .await;
        assert!(outcome.success(), "{outcome}");
        let outcome = run_shell("/nonexistent/carp-hook", &[], Duration::from_secs(5)).await;
        assert_eq!(outcome.to_string(), "exit status 127");
    }
}
