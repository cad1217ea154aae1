//! Ctrl-C (and SIGTERM, SIGHUP) for the lab and the benchmark: a signal
//! handler turns each into a message their loops look at, so they stop at
//! the next check and every guard drops (daemons killed, namespaces deleted).
//!
//! A handler, not a blocked mask and sigwait(2): std starts child processes
//! with the parent's signal mask, so with SIGTERM blocked here carpd (and
//! ucarp, keepalived) would never see a SIGTERM, and never bow out.

use std::sync::mpsc::{self, Receiver};
use std::thread;

use anyhow::{Context as _, Result};
use nix::sys::signal::Signal;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

pub fn interrupts() -> Result<Receiver<Signal>> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install the Ctrl-C handler")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for number in signals.forever() {
            let Ok(signal) = Signal::try_from(number) else {
                continue;
            };
            if tx.send(signal).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
