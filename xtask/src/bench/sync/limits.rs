//! The host's conntrack limits, raised for the run and put back after.
//!
//! `nf_conntrack_max` and `nf_conntrack_buckets` can only be written in the
//! initial namespace and hold for all: the limit applies to each
//! namespace's own count, the hash table is shared by every namespace. A
//! value is put back only if it is still the one set here, so a change
//! somebody else made meanwhile is left alone.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

const MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const BUCKETS: &str = "/proc/sys/net/netfilter/nf_conntrack_buckets";

/// Restores what it raised when dropped (Ctrl-C included).
#[derive(Debug)]
pub struct HostLimits {
    raised: Vec<Raised>,
}

#[derive(Debug)]
struct Raised {
    path: PathBuf,
    old: u64,
    set: u64,
}

/// What each node's table must hold: `entries` plus the latency probes,
/// with room to spare.
pub fn wanted_max(entries: u64, probes: u64) -> u64 {
    let needed = entries + probes;
    needed + needed / 10 + 10_000
}

/// Buckets for two tables of `entries` in the shared hash: about two
/// entries a chain, a power of two as the kernel's own default.
pub fn wanted_buckets(entries: u64) -> u64 {
    entries.max(1).next_power_of_two()
}

impl HostLimits {
    /// Raises each limit that is below what `entries` per node needs.
    pub fn raise(entries: u64, probes: u64) -> Result<Self> {
        let mut limits = Self { raised: Vec::new() };
        limits.raise_one(Path::new(MAX), wanted_max(entries, probes))?;
        limits.raise_one(Path::new(BUCKETS), wanted_buckets(entries))?;
        Ok(limits)
    }

    fn raise_one(&mut self, path: &Path, wanted: u64) -> Result<()> {
        let old = read(path)?;
        if old >= wanted {
            return Ok(());
        }
        write(path, wanted)?;
        // The kernel may round (buckets): remember what it took.
        let set = read(path)?;
        println!("bench: {} {old} -> {set} for the run", name(path));
        self.raised.push(Raised {
            path: path.to_owned(),
            old,
            set,
        });
        Ok(())
    }
}

impl Drop for HostLimits {
    fn drop(&mut self) {
        for raised in self.raised.iter().rev() {
            let restored = match read(&raised.path) {
                Ok(now) if now == raised.set => write(&raised.path, raised.old).map(|()| true),
                Ok(_) => Ok(false),
                Err(error) => Err(error),
            };
            match restored {
                Ok(true) => println!("bench: {} back to {}", name(&raised.path), raised.old),
                Ok(false) => println!(
                    "bench: {} was changed by someone else during the run; left as it is",
                    name(&raised.path)
                ),
                Err(error) => eprintln!("bench: cannot restore {}: {error:#}", name(&raised.path)),
            }
        }
    }
}

fn name(path: &Path) -> String {
    path.file_name().map_or_else(String::new, |name| {
        format!("net.netfilter.{}", name.to_string_lossy())
    })
}

fn read(path: &Path) -> Result<u64> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{} reads {text:?}", path.display()))
}

fn write(path: &Path, value: u64) -> Result<()> {
    fs::write(path, format!("{value}\n"))
        .with_context(|| format!("cannot write {value} to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_leaves_room_for_the_probes_and_more() {
        assert_eq!(wanted_max(100_000, 1000), 121_100);
        assert!(wanted_max(1_000_000, 1000) > 1_001_000);
    }

    #[test]
    fn buckets_are_a_power_of_two_at_least_the_entries() {
        assert_eq!(wanted_buckets(100_000), 131_072);
        assert_eq!(wanted_buckets(1_000_000), 1_048_576);
        assert_eq!(wanted_buckets(0), 1);
    }
}
