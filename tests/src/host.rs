//! Facts about the host the tests need: root, and where the carp binaries are.

use std::env;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The environment variables `cargo xtask test` sets to the release binaries.
const CARPD_ENV: &str = "CARPD_BIN";
const CARPCTL_ENV: &str = "CARPCTL_BIN";

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Namespace tests call this first so that, without root, they fail with a
/// sentence saying how to run them instead of an `ip` permission error.
pub fn require_root() -> Result<()> {
    if is_root() {
        Ok(())
    } else {
        Err(Error::NotRoot)
    }
}

/// The carp workspace (where this crate was built from).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// carpd: `$CARPD_BIN`, else the workspace's release build.
pub fn carpd_bin() -> Result<PathBuf> {
    binary("carpd", CARPD_ENV)
}

/// carpctl: `$CARPCTL_BIN`, else the workspace's release build.
pub fn carpctl_bin() -> Result<PathBuf> {
    binary("carpctl", CARPCTL_ENV)
}

fn binary(name: &'static str, env_name: &'static str) -> Result<PathBuf> {
    let path = match env::var_os(env_name) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => release_dir().join(name),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingBinary {
            name,
            path,
            env: env_name,
        })
    }
}

/// Where `cargo build --release` puts binaries: `$CARGO_TARGET_DIR/release`,
/// else `<workspace>/target/release`.
pub fn release_dir() -> PathBuf {
    let target = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("target"),
    };
    target.join("release")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("tests").join("Cargo.toml").is_file());
    }

    #[test]
    fn a_missing_binary_names_the_path_and_the_variable() {
        let error = binary("carp-nonexistent", "CARP_TESTS_NO_SUCH_VARIABLE")
            .expect_err("the binary does not exist");
        let message = error.to_string();
        assert!(
            message.contains("carp-nonexistent not found at"),
            "{message}"
        );
        assert!(message.contains("CARP_TESTS_NO_SUCH_VARIABLE"), "{message}");
    }
}
