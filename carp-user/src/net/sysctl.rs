//! Per-interface sysctls the carp interfaces need, restored on exit.
//!
//! The values found before the first change are also written to a journal
//! file beside the control socket, so a carpd started after a crash (SIGKILL
//! leaves our values in place) restores the operator's originals, not ours.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// One sysctl we changed and the value it had before.
#[derive(Debug)]
struct Changed {
    path: PathBuf,
    before: String,
}

/// Remembers what it changed so shutdown can put it back.
#[derive(Debug, Default)]
pub struct Sysctls {
    changed: Vec<Changed>,
    /// Where the originals are kept across a crash; none in tests.
    journal: Option<PathBuf>,
    /// Originals a crashed run recorded, by /proc/sys path.
    inherited: BTreeMap<PathBuf, String>,
}

fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// Journal lines are `<path> <value>`: neither holds a space or newline.
fn parse_journal(text: &str) -> BTreeMap<PathBuf, String> {
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(path, _)| path.starts_with("/proc/sys/"))
        .map(|(path, value)| (PathBuf::from(path), value.to_owned()))
        .collect()
}

impl Sysctls {
    /// Keeps originals in `journal`, taking over those a crashed run left.
    pub fn with_journal(journal: &Path) -> Self {
        let inherited = fs::read_to_string(journal)
            .map(|text| parse_journal(&text))
            .unwrap_or_default();
        if !inherited.is_empty() {
            tracing::info!(
                "{}: restoring the sysctl values a previous carpd found ({} of them)",
                journal.display(),
                inherited.len()
            );
        }
        Self {
            changed: Vec::new(),
            journal: Some(journal.to_owned()),
            inherited,
        }
    }

    /// Sets `key` (dotted, e.g. `net.ipv4.conf.eth0.arp_ignore`) to `value`,
    /// remembering the old value the first time. Interface names never hold dots
    /// in our config (validated), so the dotted form is unambiguous.
    pub fn set(&mut self, key: &str, value: &str) -> std::io::Result<()> {
        let path = path(key);
        let current = fs::read_to_string(&path)?.trim().to_owned();
        let before = self.inherited.remove(&path).unwrap_or(current.clone());
        if current != value {
            fs::write(&path, value)?;
        }
        if before != value && !self.changed.iter().any(|c| c.path == path) {
            self.changed.push(Changed { path, before });
            self.write_journal();
        }
        Ok(())
    }

    /// Reads a sysctl, trimmed.
    pub fn get(key: &str) -> std::io::Result<String> {
        Ok(fs::read_to_string(path(key))?.trim().to_owned())
    }

    fn write_journal(&self) {
        let Some(journal) = &self.journal else {
            return;
        };
        let mut text = String::new();
        for changed in &self.changed {
            // Writing to a String cannot fail.
            let _ = writeln!(text, "{} {}", changed.path.display(), changed.before);
        }
        if let Err(error) = fs::write(journal, text) {
            tracing::warn!(
                "{}: cannot record sysctl originals: {error}",
                journal.display()
            );
        }
    }

    /// Puts back every value we changed, newest first. Interfaces we deleted
    /// take their sysctls with them; those writes fail and are ignored.
    pub fn restore(&mut self) {
        while let Some(changed) = self.changed.pop() {
            if let Err(error) = fs::write(&changed.path, &changed.before) {
                tracing::debug!(path = %changed.path.display(), %error, "sysctl not restored");
            }
        }
        if let Some(journal) = &self.journal
            && let Err(error) = fs::remove_file(journal)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("{}: cannot remove: {error}", journal.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_a_crashed_run_recorded() {
        let journal = "/proc/sys/net/ipv4/conf/eth0/arp_ignore 0\n\
                       /proc/sys/net/ipv4/conf/eth0/arp_announce 0\n\
                       /etc/passwd x\n\
                       garbage\n";
        let parsed = parse_journal(journal);
        assert_eq!(parsed.len(), 2, "{parsed:?}");
        assert_eq!(
            parsed.get(Path::new("/proc/sys/net/ipv4/conf/eth0/arp_ignore")),
            Some(&"0".to_owned())
        );
    }
}
