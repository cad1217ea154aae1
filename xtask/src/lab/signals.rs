//! Ctrl-C for the lab without a signal handler: SIGINT, SIGTERM and SIGHUP
//! are blocked and a thread takes them with sigwait(2), turning each into a
//! message the main loop sees between polls. Children are unaffected: std
//! resets the signal mask of every process it spawns.

use std::sync::mpsc::{self, Receiver};
use std::thread;

use anyhow::{Context as _, Result};
use nix::sys::signal::{SigSet, Signal};

/// Must run before the process starts any other thread: the mask is per
/// thread and inherited, and a thread that does not block the signals would
/// take the default action (exit without teardown).
pub fn interrupts() -> Result<Receiver<Signal>> {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set.thread_block().context("cannot block SIGINT")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        while let Ok(signal) = set.wait() {
            if tx.send(signal).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
