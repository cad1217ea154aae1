//! Hooks: operator commands run through `sh -c` on carp events (a state
//! transition, a change of a group's demote counter), like the scripts
//! ifstated or devd run on OpenBSD and FreeBSD.
//!
//! The agent never waits for a hook: each runs in its own task, is killed at
//! the configured timeout, and at most `MAX_RUNNING_HOOKS` run at once. A hook
//! beyond that is skipped rather than queued, so a hook that hangs on every
//! flap cannot pile up processes or memory. Failures are logged and counted.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::config::HooksConfig;
use crate::fsm::State;
use crate::track::exec::run_shell;

/// Hooks running at the same time; more are skipped and counted as failures.
pub const MAX_RUNNING_HOOKS: usize = 8;

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookStats {
    /// Hooks due: started, or skipped because too many were running.
    pub runs: u64,
    /// Hooks that could not start, were skipped, exited non-zero or were killed.
    pub failures: u64,
}

#[derive(Debug, Default)]
struct Counters {
    runs: AtomicU64,
    failures: AtomicU64,
}

impl Counters {
    fn fail(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Transition,
    Demote,
    Conflict,
}

impl Event {
    const fn name(self) -> &'static str {
        match self {
            Event::Transition => "transition",
            Event::Demote => "demote",
            Event::Conflict => "conflict",
        }
    }
}

/// The configured hooks; cheap to clone, clones share the limit and counters.
#[derive(Clone)]
pub struct Hooks {
    transition: Option<Arc<str>>,
    demote: Option<Arc<str>>,
    conflict: Option<Arc<str>>,
    timeout: Duration,
    running: Arc<Semaphore>,
    counters: Arc<Counters>,
}

/// Program names only: a command's arguments may hold secrets.
impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("transition", &self.transition.as_deref().map(program))
            .field("demote", &self.demote.as_deref().map(program))
            .field("conflict", &self.conflict.as_deref().map(program))
            .field("timeout", &self.timeout)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Hooks {
    pub fn new(config: &HooksConfig) -> Self {
        Self {
            transition: config.transition.as_deref().map(Arc::from),
            demote: config.demote.as_deref().map(Arc::from),
            conflict: config.conflict.as_deref().map(Arc::from),
            timeout: config.timeout,
            running: Arc::new(Semaphore::new(MAX_RUNNING_HOOKS)),
            counters: Arc::default(),
        }
    }

    /// Runs the transition hook, if any, for `interface` (vhid `vhid`) going
    /// from `old` to `new`. Returns at once; needs a tokio runtime context.
    pub fn transition(&self, interface: &str, vhid: u8, old: State, new: State) {
        let Some(command) = &self.transition else {
            return;
        };
        let env = vec![
            ("CARP_INTERFACE", interface.to_owned()),
            ("CARP_VHID", vhid.to_string()),
            ("CARP_OLD_STATE", old.to_string()),
            ("CARP_NEW_STATE", new.to_string()),
        ];
        let what = format!("{interface} vhid {vhid} {old} -> {new}");
        self.run(Event::Transition, command, env, what);
    }

    /// Runs the demote hook, if any, for `group`'s counter going from `old`
    /// to `new`. Returns at once; needs a tokio runtime context.
    pub fn demote(&self, group: &str, old: u32, new: u32) {
        let Some(command) = &self.demote else {
            return;
        };
        let env = vec![
            ("CARP_GROUP", group.to_owned()),
            ("CARP_OLD_DEMOTE", old.to_string()),
            ("CARP_NEW_DEMOTE", new.to_string()),
        ];
        let what = format!("group {group} demote {old} -> {new}");
        self.run(Event::Demote, command, env, what);
    }

    /// Runs the conflict hook, if any: another MAC than the virtual one
    /// claimed `vip` of `interface` while we own it. Returns at once.
    pub fn conflict(&self, interface: &str, vhid: u8, vip: IpAddr, mac: &str) {
        let Some(command) = &self.conflict else {
            return;
        };
        let env = vec![
            ("CARP_INTERFACE", interface.to_owned()),
            ("CARP_VHID", vhid.to_string()),
            ("CARP_VIP", vip.to_string()),
            ("CARP_MAC", mac.to_owned()),
        ];
        let what = format!("{interface} {vip} claimed by {mac}");
        self.run(Event::Conflict, command, env, what);
    }

    pub fn stats(&self) -> HookStats {
        HookStats {
            runs: self.counters.runs.load(Ordering::Relaxed),
            failures: self.counters.failures.load(Ordering::Relaxed),
        }
    }

    fn run(
        &self,
        event: Event,
        command: &Arc<str>,
        mut env: Vec<(&'static str, String)>,
        what: String,
    ) {
        self.counters.runs.fetch_add(1, Ordering::Relaxed);
        let hook = event.name();
        env.push(("CARP_EVENT", hook.to_owned()));
        let program = program(command).to_owned();
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime,
            Err(error) => {
                self.counters.fail();
                warn!(hook, program, "{what}: hook not run: {error}");
                return;
            }
        };
        // Taken here, not in the task, so the limit holds however late the
        // tasks get scheduled.
        let Ok(permit) = Arc::clone(&self.running).try_acquire_owned() else {
            self.counters.fail();
            warn!(
                hook,
                program, "{what}: hook skipped, {MAX_RUNNING_HOOKS} hooks already running"
            );
            return;
        };
        let command = Arc::clone(command);
        let counters = Arc::clone(&self.counters);
        let timeout = self.timeout;
        runtime.spawn(async move {
            let outcome = run_shell(&command, &env, timeout).await;
            drop(permit);
            if outcome.success() {
                debug!(hook, program, "{what}: hook done");
            } else {
                counters.fail();
                warn!(hook, program, "{what}: hook failed: {outcome}");
            }
        });
    }
}

/// The program a command runs, for the log: its first word after any
/// `NAME=value` assignments, never its arguments (they may hold secrets).
fn program(command: &str) -> &str {
    command
        .split_whitespace()
        .find(|word| !word.contains('='))
        .unwrap_or("sh")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Instant;

    use super::*;

    fn hooks(transition: Option<String>, demote: Option<String>, timeout_ms: u64) -> Hooks {
        Hooks::new(&HooksConfig {
            transition,
            demote,
            conflict: None,
            timeout: Duration::from_millis(timeout_ms),
        })
    }

    /// Polls `done` every 10 ms for at most 10 s.
    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "still waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A hook that writes its CARP_* environment to `out`, renamed into place
    /// so the test never reads half a file.
    fn env_dumper(out: &Path) -> String {
        let out = out.display();
        format!("env | grep '^CARP_' > {out}.tmp && mv {out}.tmp {out}")
    }

    async fn environment_written_to(out: &Path) -> BTreeMap<String, String> {
        wait_for("the hook's output", || out.exists()).await;
        let text = std::fs::read_to_string(out).unwrap_or_else(|e| panic!("{e}"));
        text.lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect()
    }

    fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn transition_hook_gets_its_environment() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let out = dir.path().join("env");
        let hooks = hooks(Some(env_dumper(&out)), None, 5000);
        hooks.transition("carp0", 7, State::Backup, State::Master);
        let environment = environment_written_to(&out).await;
        assert_eq!(
            environment,
            expected(&[
                ("CARP_EVENT", "transition"),
                ("CARP_INTERFACE", "carp0"),
                ("CARP_VHID", "7"),
                ("CARP_OLD_STATE", "BACKUP"),
                ("CARP_NEW_STATE", "MASTER"),
            ])
        );
        hooks.demote("carp", 0, 1);
        assert_eq!(
            hooks.stats(),
            HookStats {
                runs: 1,
                failures: 0
            }
        );
    }

    #[tokio::test]
    async fn demote_hook_gets_its_environment() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let out = dir.path().join("env");
        let hooks = hooks(None, Some(env_dumper(&out)), 5000);
        hooks.transition("carp0", 7, State::Init, State::Backup);
        hooks.demote("outside", 0, 50);
        let environment = environment_written_to(&out).await;
        assert_eq!(
            environment,
            expected(&[
                ("CARP_EVENT", "demote"),
                ("CARP_GROUP", "outside"),
                ("CARP_OLD_DEMOTE", "0"),
                ("CARP_NEW_DEMOTE", "50"),
            ])
        );
        assert_eq!(
            hooks.stats(),
            HookStats {
                runs: 1,
                failures: 0
            }
        );
    }

    #[tokio::test]
    async fn a_failing_hook_is_counted() {
        let hooks = hooks(Some("exit 1".into()), None, 5000);
        hooks.transition("carp0", 1, State::Master, State::Backup);
        wait_for("the failure", || hooks.stats().failures == 1).await;
        assert_eq!(hooks.stats().runs, 1);
    }

    #[tokio::test]
    async fn a_hanging_hook_is_killed_at_the_timeout() {
        let hooks = hooks(None, Some("sleep 7".into()), 100);
        let started = Instant::now();
        hooks.demote("carp", 128, 0);
        wait_for("the kill", || hooks.stats().failures == 1).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn beyond_the_limit_hooks_are_skipped_not_queued() {
        let hooks = hooks(Some("sleep 7".into()), None, 500);
        for vhid in 1..=8 {
            hooks.transition("carp0", vhid, State::Init, State::Backup);
        }
        assert_eq!(
            hooks.stats(),
            HookStats {
                runs: 8,
                failures: 0
            }
        );
        hooks.transition("carp0", 9, State::Init, State::Backup);
        assert_eq!(
            hooks.stats(),
            HookStats {
                runs: 9,
                failures: 1
            }
        );
        // The eight are killed at their timeout and free their slots.
        wait_for("the eight kills", || hooks.stats().failures == 9).await;
        hooks.transition("carp0", 10, State::Init, State::Backup);
        assert_eq!(
            hooks.stats(),
            HookStats {
                runs: 10,
                failures: 9
            }
        );
        wait_for("the tenth kill", || hooks.stats().failures == 10).await;
    }

    #[test]
    fn outside_a_runtime_a_hook_fails_without_panicking() {
        let hooks = hooks(Some("true".into()), None, 100);
        hooks.transition("carp0", 1, State::Init, State::Backup);
        assert_eq!(
            hooks.stats(),
            HookStats {
                runs: 1,
                failures: 1
            }
        );
    }

    #[test]
    fn logs_the_program_not_its_arguments() {
        assert_eq!(
            program("/usr/local/bin/on-carp --token s3cret"),
            "/usr/local/bin/on-carp"
        );
        assert_eq!(program("TOKEN=s3cret notify carp"), "notify");
        assert_eq!(program("  logger  x"), "logger");
        assert_eq!(program("A=1"), "sh");
        let hooks = hooks(Some("/bin/on-carp --token s3cret".into()), None, 100);
        let debug = format!("{hooks:?}");
        assert!(
            debug.contains("/bin/on-carp") && !debug.contains("s3cret"),
            "{debug}"
        );
    }
}
