//! Bounded polling: namespace tests await events instead of sleeping, and a
//! timeout says what was awaited and for how long.

use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Short enough that a test notices a change within a few milliseconds,
/// long enough not to busy the two cores the tests share.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `probe` until it yields a value, at most `timeout`.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                after: timeout,
            });
        }
        thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

/// Polls `done` until it holds, at most `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    wait_for(timeout, what, || done().then_some(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_as_soon_as_the_probe_yields() -> anyhow::Result<()> {
        let mut calls = 0;
        let value = wait_for(Duration::from_secs(5), "the third call", || {
            calls += 1;
            (calls == 3).then_some(calls * 10)
        })?;
        assert_eq!(value, 30);
        Ok(())
    }

    #[test]
    fn timeout_names_what_was_awaited_and_how_long() {
        let started = Instant::now();
        let error = wait_until(Duration::from_millis(100), "gw1 to become MASTER", || false)
            .expect_err("a predicate that never holds must time out");
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(
            error.to_string(),
            "timed out after 0.1s waiting for gw1 to become MASTER"
        );
    }

    #[test]
    fn a_zero_timeout_still_checks_once() -> anyhow::Result<()> {
        wait_until(Duration::ZERO, "an already true condition", || true)?;
        Ok(())
    }
}
