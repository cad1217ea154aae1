//! carpd: the CARP agent.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// CARP failover for Linux gateways (OpenBSD carp(4) compatible).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Validate the configuration and exit: 0 if it is valid, 1 with the reason if not.
    #[arg(long)]
    check: bool,
    /// Discard the pinned dataplane an earlier carpd left when it cannot be
    /// resumed (its heartbeat is older than its bound, or it does not match
    /// this configuration) and start over. Without it carpd refuses to
    /// start on such a pin and says why.
    #[arg(long)]
    fresh: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CARPD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        // Colours only for a person at a terminal, not in files or journald.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();

    let config = match carp::config::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("carpd: {error}");
            return ExitCode::FAILURE;
        }
    };
    if args.check {
        println!(
            "{}: configuration OK ({} carp interface(s))",
            args.config.display(),
            config.carp.len()
        );
        return ExitCode::SUCCESS;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("carpd: must run as root (it attaches XDP programs and creates interfaces)");
        return ExitCode::FAILURE;
    }

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("carpd: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(carp::daemon::run(config, args.fresh)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("carpd: {error:#}");
            ExitCode::FAILURE
        }
    }
}
