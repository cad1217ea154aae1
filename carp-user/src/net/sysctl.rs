//! Per-interface sysctls the carp interfaces need, restored on exit.

use std::fs;
use std::path::PathBuf;

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
}

fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

impl Sysctls {
    /// Sets `key` (dotted, e.g. `net.ipv4.conf.eth0.arp_ignore`) to `value`,
    /// remembering the old value the first time. Interface names never hold dots
    /// in our config (validated), so the dotted form is unambiguous.
    pub fn set(&mut self, key: &str, value: &str) -> std::io::Result<()> {
        let path = path(key);
        let before = fs::read_to_string(&path)?.trim().to_owned();
        if before == value {
            return Ok(());
        }
        fs::write(&path, value)?;
        if !self.changed.iter().any(|c| c.path == path) {
            self.changed.push(Changed { path, before });
        }
        Ok(())
    }

    /// Reads a sysctl, trimmed.
    pub fn get(key: &str) -> std::io::Result<String> {
        Ok(fs::read_to_string(path(key))?.trim().to_owned())
    }

    /// Puts back every value we changed, newest first. Interfaces we deleted
    /// take their sysctls with them; those writes fail and are ignored.
    pub fn restore(&mut self) {
        while let Some(changed) = self.changed.pop() {
            if let Err(error) = fs::write(&changed.path, &changed.before) {
                tracing::debug!(path = %changed.path.display(), %error, "sysctl not restored");
            }
        }
    }
}
