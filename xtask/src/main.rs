//! `cargo xtask <task>`: the project's developer tasks.

mod bench;
mod ci;
mod interrupt;
mod lab;
mod release;
mod run;
mod setup;
mod test_summary;
mod tools;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(about = "Developer tasks for carp", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand, Debug)]
enum Task {
    /// Install what the build and the tests need (nightly rust-src, bpf-linker,
    /// Debian packages); quick and offline when all is present.
    Setup,
    /// Setup, then build carpd and carpctl (release).
    Build,
    /// Build, then run carpd as root with the given arguments.
    Run {
        /// Arguments for carpd, after `--` (e.g. `-- --config carp.toml`).
        #[arg(last = true)]
        carpd_args: Vec<String>,
    },
    /// Everything CI checks: fmt, clippy, release build, all tests (as root).
    Test {
        /// Passed on to `cargo test` after `--` (a test filter, `-- --nocapture`).
        #[arg(last = true)]
        cargo_test_args: Vec<String>,
    },
    /// A gateway pair in network namespaces with a live view of who is master.
    #[command(
        after_help = "Builds carpd and carpctl first, unless CARPD_BIN and CARPCTL_BIN both name the binaries to use."
    )]
    Lab {
        /// Start, wait until every vhid has exactly one MASTER and the VIPs
        /// forward, print the table, tear down; exit 0 or 1.
        #[arg(long)]
        check: bool,
    },
    /// Benchmarks, as root: `bench failover` times carpd against ucarp and
    /// keepalived in network namespaces.
    Bench {
        #[command(subcommand)]
        bench: bench::Bench,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Build => release::build().map(drop),
        Task::Run { carpd_args } => run::carpd(&carpd_args),
        Task::Test { cargo_test_args } => ci::run(&cargo_test_args),
        Task::Lab { check } => lab::run(check),
        Task::Bench { bench } => bench::run(bench),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}
