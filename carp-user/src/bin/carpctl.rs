//! carpctl: look at and steer a running carpd.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use carp::api::{self, GroupStatus, InterfaceStatus, Request, Response, Status};
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
    /// Show groups and their demote counters (with who contributes), or
    /// change one: `group carp demote 50`, `group carp promote 50`.
    Group {
        /// The group to show or change; all groups when left out.
        name: Option<String>,
        #[command(subcommand)]
        action: Option<GroupAction>,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Change a running carp interface: `set carp0 advskew 100`,
    /// `set carp0 state master`.
    Set {
        interface: String,
        #[command(subcommand)]
        what: SetWhat,
    },
    /// Bow out (the backup takes over at once) and stay out of elections.
    Down { interface: String },
    /// Take part in elections again after `down`.
    Up { interface: String },
    /// Stop carpd without a failover, for a hitless restart: the XDP
    /// program and its maps stay pinned and keep forwarding, and a carpd
    /// started within the master-down time resumes in the same roles
    /// (under systemd with `Restart=always` that happens at once). Not
    /// restarted in time, the dataplane fails closed and the peer takes
    /// over.
    Detach,
}

#[derive(Subcommand, Debug)]
enum GroupAction {
    /// Raise the group's admin demotion by N (0..128, default 1), like
    /// `ifconfig -g NAME carpdemote N`.
    Demote {
        #[arg(default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=128))]
        n: u32,
    },
    /// Lower the group's admin demotion by N (0..128, default 1), never
    /// below zero, like `ifconfig -g NAME -carpdemote N`.
    Promote {
        #[arg(default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=128))]
        n: u32,
    },
}

#[derive(Subcommand, Debug)]
enum SetWhat {
    /// The advertisement skew, 0..254.
    Advskew {
        #[arg(value_parser = clap::value_parser!(u8).range(0..=254))]
        value: u8,
    },
    /// Force the state now; the election goes on from there.
    State {
        #[arg(value_enum)]
        state: ForcedState,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ForcedState {
    Master,
    Backup,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // `group NAME` asks for every group and shows the one.
    let mut only_group = None;
    let (request, json) = match args.command {
        Command::Status { json } => (Request::Status, json),
        Command::Group {
            name,
            action: None,
            json,
        } => {
            only_group = name;
            (Request::Groups, json)
        }
        Command::Group {
            name: None,
            action: Some(_),
            ..
        } => {
            eprintln!("carpctl: name the group to change, e.g. `carpctl group carp demote 50`");
            return ExitCode::FAILURE;
        }
        Command::Group {
            name: Some(group),
            action: Some(action),
            ..
        } => {
            let by = match action {
                GroupAction::Demote { n } => i64::from(n),
                GroupAction::Promote { n } => -i64::from(n),
            };
            (Request::Demote { group, by }, false)
        }
        Command::Set { interface, what } => match what {
            SetWhat::Advskew { value } => (
                Request::SetAdvskew {
                    interface,
                    advskew: value,
                },
                false,
            ),
            SetWhat::State { state } => (
                Request::SetState {
                    interface,
                    state: match state {
                        ForcedState::Master => "master",
                        ForcedState::Backup => "backup",
                    }
                    .to_owned(),
                },
                false,
            ),
        },
        Command::Down { interface } => (Request::Down { interface }, false),
        Command::Up { interface } => (Request::Up { interface }, false),
        Command::Detach => (Request::Detach, false),
    };
    match api::call(&args.socket, &request, CALL_TIMEOUT) {
        Ok(response) => show(response, json, only_group.as_deref()),
        Err(error) => {
            eprintln!("carpctl: {error}");
            ExitCode::FAILURE
        }
    }
}
/// Prints carpd's answer; the exit status says whether it did what was asked.
fn show(response: Response, json: bool, only_group: Option<&str>) -> ExitCode {
    let text = match response {
        Response::Status(status) if json => serde_json::to_string_pretty(&status),
        Response::Status(status) => Ok(render(&status)),
        Response::Groups { mut groups } => {
            if let Some(name) = only_group {
                groups.retain(|g| g.name == name);
                if groups.is_empty() {
                    eprintln!("carpctl: no group {name}");
                    return ExitCode::FAILURE;
                }
            }
            if json {
                serde_json::to_string_pretty(&groups)
            } else {
                Ok(render_groups(&groups))
            }
        }
        Response::Done { message } => Ok(format!("{message}\n")),
        Response::Error { message } => {
            eprintln!("carpctl: carpd says: {message}");
            return ExitCode::FAILURE;
        }
    };
    match text {
        Ok(text) if json => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("carpctl: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `ifconfig -g`-like text: a group, its counter, then who contributes.
fn render_groups(groups: &[GroupStatus]) -> String {
    let mut out = String::new();
    for group in groups {
        let _ = writeln!(
            out,
            "{}: carp demote count {} (members: {})",
            group.name,
            group.demote,
            if group.members.is_empty() {
                "none".to_owned()
            } else {
                group.members.join(" ")
            }
        );
        for contribution in &group.contributions {
            let _ = writeln!(
                out,
                "\t{:<24} +{} for {} s",
                contribution.source, contribution.value, contribution.for_seconds
            );
        }
    }
    out
}

/// ifconfig-like text, one block per carp interface, then trackers,
/// demoted groups and the boot interlock.
fn render(status: &Status) -> String {
    let mut out = String::new();
    for iface in &status.interfaces {
        render_interface(&mut out, iface);
    }
    for carpdev in status.carpdevs.iter().filter(|c| !c.drops.is_empty()) {
        let _ = writeln!(
            out,
            "{}: drops not matching a vhid: {}",
            carpdev.name,
            by_reason(&carpdev.drops)
        );
    }
    render_demotion(&mut out, status);
    out
}

fn render_interface(out: &mut String, iface: &InterfaceStatus) {
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
    if !c.frames.is_empty() {
        let _ = writeln!(out, "\tframes for the VIPs: {}", by_reason(&c.frames));
    }
    if let Some(conflict) = &c.last_conflict {
        let _ = writeln!(
            out,
            "\tVIP CONFLICT: {conflict} ({} times)",
            c.vip_conflicts
        );
    }
    if !c.drops.is_empty() {
        let _ = writeln!(out, "\tdrops: {}", by_reason(&c.drops));
    }
}

/// `reason n, reason n` for a drop map.
fn by_reason(drops: &BTreeMap<String, u64>) -> String {
    drops
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn render_demotion(out: &mut String, status: &Status) {
    for tracker in &status.trackers {
        let _ = write!(
            out,
            "track {}: {} {} (group {} +{} while down), {} checks, {} failed, last {} us",
            tracker.name,
            tracker.kind,
            tracker.state,
            tracker.group,
            tracker.demote,
            tracker.checks,
            tracker.failed_checks,
            tracker.last_latency_us
        );
        match &tracker.last_failure {
            Some(failure) => {
                let _ = writeln!(out, "; last failure: {failure}");
            }
            None => out.push('\n'),
        }
    }
    for group in status.groups.iter().filter(|g| g.demote > 0) {
        let sources: Vec<String> = group
            .contributions
            .iter()
            .map(|c| format!("{} +{}", c.source, c.value))
            .collect();
        let _ = writeln!(
            out,
            "group {}: demote {} ({})",
            group.name,
            group.demote,
            sources.join(", ")
        );
    }
    if !status.boot.ready {
        let _ = writeln!(
            out,
            "boot interlock: holding carp demoted, waiting for {}",
            status.boot.waiting_for.join(", ")
        );
    }
    if let Some(sync) = &status.sync {
        render_sync(out, sync);
    }
}

/// The sync service: peer, bulk, traffic and drops.
fn render_sync(out: &mut String, sync: &carp::sync::service::SyncStatus) {
    let peer = match (&sync.peer_session, sync.peer_up) {
        (Some(session), true) => format!(
            "peer {session} up{}",
            if sync.peer_in_sync { ", in sync" } else { "" }
        ),
        (Some(session), false) => format!(
            "peer {session} silent for {} ms",
            sync.peer_heard_ms_ago.unwrap_or(0)
        ),
        (None, _) => "no peer heard yet".into(),
    };
    let _ = writeln!(
        out,
        "sync on {}: {peer}; bulk update {}, demotion {}",
        sync.syncdev, sync.bulk, sync.demotion
    );
    let _ = writeln!(
        out,
        "\tupdates: {} sent, {} received, {} applied, {} refused, {} pending, lag {} message(s); {} entries; {} bulk(s) answered",
        sync.updates_sent,
        sync.updates_received,
        sync.updates_applied,
        sync.updates_failed,
        sync.pending,
        sync.lag,
        sync.entries,
        sync.bulks_answered
    );
    if !sync.drops.is_empty() || sync.overruns > 0 {
        let _ = writeln!(
            out,
            "\tdrops: {}; event overruns: {}",
            by_reason(&sync.drops),
            sync.overruns
        );
    }
}
