//! A bpffs mounted for one lab gateway's pinned dataplane. carpd runs under
//! `ip netns exec`, which gives it a private mount namespace with a fresh
//! /sys: a bpffs it mounted itself would vanish when it exits. Mounted here,
//! in the test's own namespace, before carpd starts, the pins outlive each
//! carpd (a hitless restart, a SIGKILL) and go with the lab.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::error::{Error, Result};

#[derive(Debug)]
pub struct BpfMount {
    path: PathBuf,
}

impl BpfMount {
    pub fn create(path: &Path) -> Result<Self> {
        fs::create_dir_all(path).map_err(|source| Error::Io {
            what: format!("create {}", path.display()),
            source,
        })?;
        mount(
            Some("bpf"),
            path,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|errno| Error::Io {
            what: format!("mount a bpffs on {}", path.display()),
            source: errno.into(),
        })?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BpfMount {
    fn drop(&mut self) {
        // Detached lazily: a carpd still exiting may hold it. The pins go
        // with the last user, and the XDP links they hold with them.
        if let Err(errno) = umount2(&self.path, MntFlags::MNT_DETACH) {
            eprintln!("carp-tests: umount {}: {errno}", self.path.display());
        }
        if let Err(error) = fs::remove_dir(&self.path) {
            eprintln!("carp-tests: remove {}: {error}", self.path.display());
        }
    }
}

/// Where a lab with namespace stem `stem` mounts its gateways' bpffs.
pub fn pins_root(stem: &str) -> PathBuf {
    std::env::temp_dir().join(format!("carp-pins-{stem}"))
}

/// Unmounts and removes the pin mounts of labs with `prefix` whose test
/// process is gone (killed before its guards could drop).
pub fn sweep_stale(prefix: &str) {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let start = format!("carp-pins-{prefix}-");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&start)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let root = entry.path();
        if let Ok(gateways) = fs::read_dir(&root) {
            for gateway in gateways.flatten() {
                // Dropping the guard unmounts and removes it.
                drop(BpfMount {
                    path: gateway.path(),
                });
            }
        }
        let _ = fs::remove_dir(&root);
    }
}
