//! A steady ping from one namespace, read as it goes: which echo replies
//! came back and when, how many were duplicates (two nodes answering), and
//! how many requests went unanswered.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::process::{Process, Signal};

/// ping prints its summary within this of SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Pinger {
    process: Process,
    log: PathBuf,
}

/// One echo reply as ping printed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reply {
    /// Since the Unix epoch (`ping -D`).
    pub at: Duration,
    pub seq: u32,
    /// Printed with `(DUP!)`: a second reply to one request.
    pub duplicate: bool,
}

/// What ping said when it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub transmitted: u32,
    pub received: u32,
    pub duplicates: u32,
}

impl Pinger {
    /// `ping -D -i <interval> <destination>` in `netns`, output in `log`.
    pub fn start(netns: &Netns, destination: &str, interval: Duration, log: &Path) -> Result<Self> {
        let interval = format!("{:.3}", interval.as_secs_f64());
        let process = netns.spawn(
            ["ping", "-D", "-n", "-i", &interval, destination],
            Some(log),
        )?;
        Ok(Self {
            process,
            log: log.to_owned(),
        })
    }

    /// Every reply printed so far.
    pub fn replies(&self) -> Vec<Reply> {
        fs::read_to_string(&self.log)
            .map(|text| text.lines().filter_map(parse_reply).collect())
            .unwrap_or_default()
    }

    /// The last reply printed so far.
    pub fn last_reply(&self) -> Option<Reply> {
        self.replies().last().copied()
    }

    /// Stops ping (SIGINT, so it prints its summary) and returns the
    /// summary and every reply.
    pub fn stop(mut self) -> Result<(Summary, Vec<Reply>)> {
        self.process.kill(Signal::SIGINT)?;
        self.process.wait_exit(STOP_TIMEOUT)?;
        let text = fs::read_to_string(&self.log).map_err(|source| Error::Io {
            what: format!("read {}", self.log.display()),
            source,
        })?;
        let summary = text.lines().find_map(parse_summary).ok_or_else(|| {
            Error::Topology(format!("ping printed no summary in {}", self.log.display()))
        })?;
        Ok((summary, text.lines().filter_map(parse_reply).collect()))
    }
}

/// `[1764150000.123456] 64 bytes from 10.0.1.1: icmp_seq=5 ttl=64 time=0.1 ms (DUP!)`
fn parse_reply(line: &str) -> Option<Reply> {
    let rest = line.strip_prefix('[')?;
    let (stamp, rest) = rest.split_once(']')?;
    if !rest.contains(" bytes from ") {
        return None;
    }
    let seq = rest.split_once("icmp_seq=")?.1;
    let seq = seq
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some(Reply {
        at: Duration::try_from_secs_f64(stamp.parse().ok()?).ok()?,
        seq,
        duplicate: rest.contains("(DUP!)"),
    })
}

/// `20 packets transmitted, 19 received, +2 duplicates, 5% packet loss, time 390ms`
fn parse_summary(line: &str) -> Option<Summary> {
    let (transmitted, rest) = line.split_once(" packets transmitted, ")?;
    let (received, rest) = rest.split_once(" received")?;
    let duplicates = rest
        .split_once('+')
        .and_then(|(_, d)| d.split_once(" duplicates"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0);
    Some(Summary {
        transmitted: transmitted.trim().parse().ok()?,
        received: received.trim().parse().ok()?,
        duplicates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_duplicates_are_read_from_ping_lines() {
        let reply = parse_reply(
            "[1764150000.500000] 64 bytes from 10.0.1.1: icmp_seq=5 ttl=64 time=0.1 ms",
        );
        assert_eq!(
            reply,
            Some(Reply {
                at: Duration::from_millis(1_764_150_000_500),
                seq: 5,
                duplicate: false
            })
        );
        let dup = parse_reply(
            "[1764150000.5] 64 bytes from 10.0.1.1: icmp_seq=7 ttl=64 time=0.1 ms (DUP!)",
        );
        assert_eq!(dup.map(|r| (r.seq, r.duplicate)), Some((7, true)));
        assert_eq!(
            parse_reply("PING 10.0.1.1 (10.0.1.1) 56(84) bytes of data."),
            None
        );
        assert_eq!(
            parse_reply("[1764150000.5] From 10.0.1.100 icmp_seq=3 Destination Host Unreachable"),
            None
        );
    }

    #[test]
    fn the_summary_counts_losses_and_duplicates() {
        assert_eq!(
            parse_summary("20 packets transmitted, 19 received, 5% packet loss, time 390ms"),
            Some(Summary {
                transmitted: 20,
                received: 19,
                duplicates: 0
            })
        );
        assert_eq!(
            parse_summary(
                "20 packets transmitted, 20 received, +2 duplicates, 0% packet loss, time 390ms"
            ),
            Some(Summary {
                transmitted: 20,
                received: 20,
                duplicates: 2
            })
        );
        assert_eq!(
            parse_summary("rtt min/avg/max/mdev = 0.1/0.2/0.3/0.1 ms"),
            None
        );
    }
}
