//! carpctl: look at and steer a running carpd.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use carp::api::{self, Request, Response, Status};
use clap::{Parser, Subcommand};

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Parser, Debug)]
#[command(version, about = "Admin tool for carpd")]
struct Args {
    /// carpd's control socket.
    #[arg(long, default_value = carp::config::DEFAULT_CONTROL_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show every carp interface: state, timers, demote, addresses, counters.
    Status {
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Command::Status { json } = args.command;
    match api::call(&args.socket, &Request::Status, CALL_TIMEOUT) {
        Ok(Response::Status(status)) => {
            if json {
                match serde_json::to_string_pretty(&status) {
                    Ok(text) => println!("{text}"),
                    Err(error) => {
                        eprintln!("carpctl: {error}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", render(&status));
            }
            ExitCode::SUCCESS
        }
        Ok(Response::Error { message }) => {
            eprintln!("carpctl: carpd says: {message}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("carpctl: {error}");
            ExitCode::FAILURE
        }
    }
}

/// ifconfig-like text, one block per carp interface.
fn render(status: &Status) -> String {
    let mut out = String::new();
    for iface in &status.interfaces {
        let _ = writeln!(
            out,
            "{}: carp: {} carpdev {} vhid {} advbase {} advskew {} demote {}",
            iface.name,
            iface.state,
            iface.carpdev,
            iface.vhid,
            iface.advbase,
            iface.advskew,
            iface.demote
        );
        for address in &iface.addresses {
            let family = if address.contains(':') {
                "inet6"
            } else {
                "inet"
            };
            let _ = writeln!(out, "\t{family} {address}");
        }
        let c = &iface.counters;
        let _ = writeln!(
            out,
            "\tadverts received {} sent {}, transitions {}, send errors {}",
            c.adverts_received, c.adverts_sent, c.transitions, c.send_errors
        );
        let drops: Vec<String> = c
            .drops
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        if !drops.is_empty() {
            let _ = writeln!(out, "\tdrops: {}", drops.join(", "));
        }
    }
    for carpdev in status.carpdevs.iter().filter(|c| !c.drops.is_empty()) {
        let drops: Vec<String> = carpdev
            .drops
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "{}: drops not matching a vhid: {}",
            carpdev.name,
            drops.join(", ")
        );
    }
    out
}
