//! One error type for the kit, so a failed step says which command or wait
//! failed and why (stderr included), not just "exit status 1".

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{command}` could not start: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: ExitStatus,
        /// stderr, or stdout when stderr is empty (ping reports there).
        output: String,
    },
    #[error("timed out after {:.1}s waiting for {what}", after.as_secs_f64())]
    Timeout { what: String, after: Duration },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "{name} not found at {} (set {env}, or build it with `cargo build --release -p carp-user`; `cargo xtask test` does both)",
        path.display()
    )]
    MissingBinary {
        name: &'static str,
        path: PathBuf,
        env: &'static str,
    },
    #[error(
        "namespace tests need root (they create network namespaces and run carpd): run them with `cargo xtask test` as root"
    )]
    NotRoot,
    #[error("topology: {0}")]
    Topology(String),
    #[error("{process} exited early ({status})")]
    Exited { process: String, status: ExitStatus },
    #[error("carpd on {node} exited ({status}); last lines of {}:\n{tail}", log.display())]
    DaemonExited {
        node: String,
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error("{what}: cannot parse carpctl output: {source}")]
    Status {
        what: String,
        source: serde_json::Error,
    },
}
