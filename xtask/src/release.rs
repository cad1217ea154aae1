//! `cargo xtask build`: carpd and carpctl, release build.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::setup;
use crate::tools::{cargo, run};

/// Paths of the built binaries.
pub struct Binaries {
    pub carpd: PathBuf,
    pub carpctl: PathBuf,
}

pub fn build() -> Result<Binaries> {
    setup::run()?;
    compile()
}

/// The release build without setup (for `xtask test`, which ran setup).
pub fn compile() -> Result<Binaries> {
    run(cargo().args(["build", "--release", "-p", "carp-user"]))?;
    let dir = carp_tests::release_dir();
    let binaries = Binaries {
        carpd: dir.join("carpd"),
        carpctl: dir.join("carpctl"),
    };
    for path in [&binaries.carpd, &binaries.carpctl] {
        if !path.is_file() {
            bail!("the build succeeded but {} is missing", path.display());
        }
    }
    println!("built {}", binaries.carpd.display());
    println!("built {}", binaries.carpctl.display());
    Ok(binaries)
}
