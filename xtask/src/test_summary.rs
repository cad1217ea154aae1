//! Adds up cargo test's per-binary "test result:" lines into one closing
//! line, so the end of `cargo xtask test` says how many tests ran in all
//! (cargo's own last line is the doc tests of the last crate, often 0).

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::tools::describe;

/// Passed, failed and ignored tests over every test binary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Totals {
    /// Counts one line if it is a cargo test summary.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(label), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.ignored += count,
                _ => {}
            }
        }
    }
}

/// Runs `command` (a `cargo test`), echoing its stdout as it comes and
/// counting its summaries; fails on a non-zero exit.
pub fn run_counting(command: &mut Command) -> Result<Totals> {
    let line = describe(command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let mut totals = Totals::default();
    if let Some(stdout) = child.stdout.take() {
        for text in BufReader::new(stdout).lines() {
            let text = text.context("reading cargo test's output")?;
            println!("{text}");
            totals.add_line(&text);
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        bail!(
            "`{line}` failed ({status}): {} passed, {} failed",
            totals.passed,
            totals.failed
        );
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_up_every_binary() {
        let mut totals = Totals::default();
        for line in [
            "running 3 tests",
            "test result: ok. 66 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.32s",
            "test result: FAILED. 2 passed; 1 failed; 4 ignored; 0 measured; 0 filtered out; finished in 6.44s",
            "test some::name ... ok",
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
        ] {
            totals.add_line(line);
        }
        assert_eq!(
            totals,
            Totals {
                passed: 68,
                failed: 1,
                ignored: 4
            }
        );
    }

    #[test]
    fn ignores_other_lines() {
        let mut totals = Totals::default();
        totals.add_line("test result: garbled");
        totals.add_line("3 passed; 1 failed");
        assert_eq!(totals, Totals::default());
    }
}
