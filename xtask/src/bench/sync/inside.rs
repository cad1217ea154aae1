//! Work inside a gateway's network namespace from this process: a thread
//! that enters the namespace (`setns`, which moves only the calling
//! thread) and runs a current-thread tokio runtime for the conntrack
//! adapter, whose sockets act on the namespace they were opened in.
//!
//! Every task gets a [`Stop`] flag: the main thread raises it on Ctrl-C and
//! the task returns at its next check, so an interrupted benchmark does not
//! wait for a million-entry fill to end.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use nix::sched::{CloneFlags, setns};

/// Where `ip netns add` binds its namespaces.
const NETNS_RUN_DIR: &str = "/run/netns";
/// How often [`Task::wait`] looks for Ctrl-C.
const POLL: Duration = Duration::from_millis(10);

/// Raised to ask a task to return early.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A task running in a namespace; stopped and joined when dropped.
pub struct Task<T> {
    name: String,
    stop: Stop,
    handle: Option<JoinHandle<Result<T>>>,
}

impl<T: Send + 'static> Task<T> {
    /// Runs `work` on a new thread inside namespace `netns`, with a
    /// current-thread runtime entered (sockets of the adapter need one).
    pub fn spawn<F, Fut>(netns: &str, what: &str, work: F) -> Result<Self>
    where
        F: FnOnce(Stop) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>>,
    {
        let name = format!("{what} in {netns}");
        let stop = Stop::default();
        let path = Path::new(NETNS_RUN_DIR).join(netns);
        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let task_stop = stop.clone();
        let handle = thread::Builder::new()
            .name(what.to_owned())
            .spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .context("setns(CLONE_NEWNET) for a benchmark thread")?;
                drop(file);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot build a tokio runtime")?;
                runtime.block_on(work(task_stop))
            })
            .with_context(|| format!("cannot start a thread for {name}"))?;
        Ok(Self {
            name,
            stop,
            handle: Some(handle),
        })
    }

    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the task's result, calling `check` (the Ctrl-C check)
    /// meanwhile: a failed check stops the task and is returned. At
    /// `deadline` the task is asked to stop and what it has is returned.
    pub fn wait(
        mut self,
        mut check: impl FnMut() -> Result<()>,
        deadline: Option<Instant>,
    ) -> Result<T> {
        while !self.is_finished() {
            if let Err(error) = check() {
                self.stop.raise();
                return Err(error);
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                self.stop.raise();
            }
            thread::sleep(POLL);
        }
        self.join()
    }

    fn join(&mut self) -> Result<T> {
        let handle = self
            .handle
            .take()
            .ok_or_else(|| anyhow!("{}: joined twice", self.name))?;
        handle
            .join()
            .map_err(|_| anyhow!("{}: the thread panicked", self.name))?
            .with_context(|| self.name.clone())
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.stop.raise();
        if let Some(handle) = self.handle.take() {
            // Its outcome no longer matters: the benchmark is failing or
            // finished with it; only the thread must not outlive the guard.
            let _ = handle.join();
        }
    }
}
