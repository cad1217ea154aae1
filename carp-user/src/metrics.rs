//! Prometheus metrics. `render` turns a status snapshot into the text
//! exposition (pure, so it is tested without a daemon); `serve` answers
//! `GET /metrics` with a fresh snapshot from the agent on every scrape.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::api::{InterfaceStatus, Status};
use crate::daemon::Handle;
use crate::sync::service::SyncStatus;

/// Scrapes served at once; more wait for a slot instead of piling up.
const MAX_SCRAPES: usize = 4;
/// Largest request head read from a scraper.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;

fn vhid_labels(iface: &InterfaceStatus) -> Labels {
    vec![
        ("name".into(), iface.name.clone()),
        ("vhid".into(), iface.vhid.to_string()),
        ("carpdev".into(), iface.carpdev.clone()),
    ]
}

fn state_value(state: &str) -> i64 {
    match state {
        "BACKUP" => 1,
        "MASTER" => 2,
        _ => 0,
    }
}

fn counter_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

fn gauge_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

/// The text exposition of one snapshot.
pub fn render(status: &Status) -> String {
    let mut registry = Registry::default();
    let state = gauge_family(
        &mut registry,
        "carp_state",
        "CARP state per vhid: 0 INIT, 1 BACKUP, 2 MASTER",
    );
    let demote = gauge_family(
        &mut registry,
        "carp_demote",
        "Demote value the vhid advertises (sum over its groups)",
    );
    let transitions = counter_family(
        &mut registry,
        "carp_transitions",
        "State transitions per vhid",
    );
    let sent = counter_family(&mut registry, "carp_adverts_sent", "Advertisements sent");
    let received = counter_family(
        &mut registry,
        "carp_adverts_received",
        "Advertisements received for the vhid",
    );
    let send_errors = counter_family(
        &mut registry,
        "carp_send_errors",
        "Advertisements that could not be sent",
    );
    let drops = counter_family(
        &mut registry,
        "carp_drops",
        "Advertisements dropped, by reason (OpenBSD carpstats names)",
    );
    let frames = counter_family(
        &mut registry,
        "carp_frames",
        "Frames for the VIPs or virtual MAC by XDP verdict: owned (passed), notowned and agentstale (dropped), claim",
    );
    let conflicts = counter_family(
        &mut registry,
        "carp_vip_conflicts",
        "Claims of a VIP by another MAC than the virtual one while we owned it",
    );

    for iface in &status.interfaces {
        let labels = vhid_labels(iface);
        state.get_or_create(&labels).set(state_value(&iface.state));
        demote.get_or_create(&labels).set(i64::from(iface.demote));
        transitions
            .get_or_create(&labels)
            .inc_by(iface.counters.transitions);
        sent.get_or_create(&labels)
            .inc_by(iface.counters.adverts_sent);
        received
            .get_or_create(&labels)
            .inc_by(iface.counters.adverts_received);
        send_errors
            .get_or_create(&labels)
            .inc_by(iface.counters.send_errors);
        for (verdict, count) in &iface.counters.frames {
            let mut with_verdict = labels.clone();
            with_verdict.push(("verdict".into(), verdict.clone()));
            frames.get_or_create(&with_verdict).inc_by(*count);
        }
        conflicts
            .get_or_create(&labels)
            .inc_by(iface.counters.vip_conflicts);
        for (reason, count) in &iface.counters.drops {
            let mut with_reason = labels.clone();
            with_reason.push(("reason".into(), reason.clone()));
            drops.get_or_create(&with_reason).inc_by(*count);
        }
    }
    for carpdev in &status.carpdevs {
        for (reason, count) in &carpdev.drops {
            let labels = vec![
                ("carpdev".into(), carpdev.name.clone()),
                ("reason".into(), reason.clone()),
            ];
            drops.get_or_create(&labels).inc_by(*count);
        }
    }

    demotion_metrics(&mut registry, status);
    if let Some(sync) = &status.sync {
        sync_metrics(&mut registry, sync);
    }

    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

/// Groups, their contributions, trackers, hooks and the boot interlock.
fn demotion_metrics(registry: &mut Registry, status: &Status) {
    let group_demote = gauge_family(registry, "carp_group_demote", "Demote counter per group");
    let contribution = gauge_family(
        registry,
        "carp_demote_contribution",
        "What each source adds to a group's demote counter",
    );
    for group in &status.groups {
        let labels = vec![("group".to_owned(), group.name.clone())];
        group_demote
            .get_or_create(&labels)
            .set(i64::from(group.demote));
        for c in &group.contributions {
            let mut with_source = labels.clone();
            with_source.push(("source".into(), c.source.clone()));
            contribution
                .get_or_create(&with_source)
                .set(i64::from(c.value));
        }
    }
    let tracker_up = gauge_family(
        registry,
        "carp_tracker_up",
        "Tracker verdict: 1 up, 0 down, -1 no verdict yet",
    );
    let latency = gauge_family(
        registry,
        "carp_tracker_check_latency_microseconds",
        "Duration of the tracker's last check",
    );
    let checks = counter_family(registry, "carp_tracker_checks", "Checks run per tracker");
    let failed = counter_family(
        registry,
        "carp_tracker_failed_checks",
        "Checks that failed per tracker",
    );
    for tracker in &status.trackers {
        let labels = vec![
            ("tracker".to_owned(), tracker.name.clone()),
            ("kind".to_owned(), tracker.kind.clone()),
            ("group".to_owned(), tracker.group.clone()),
        ];
        let up = match tracker.state.as_str() {
            "up" => 1,
            "down" => 0,
            _ => -1,
        };
        tracker_up.get_or_create(&labels).set(up);
        latency
            .get_or_create(&labels)
            .set(i64::try_from(tracker.last_latency_us).unwrap_or(i64::MAX));
        checks.get_or_create(&labels).inc_by(tracker.checks);
        failed.get_or_create(&labels).inc_by(tracker.failed_checks);
    }
    let runs = counter_family(registry, "carp_hook_runs", "Hook commands started");
    let hook_failures = counter_family(
        registry,
        "carp_hook_failures",
        "Hook commands that failed, timed out or were skipped",
    );
    runs.get_or_create(&Vec::new()).inc_by(status.hooks.runs);
    hook_failures
        .get_or_create(&Vec::new())
        .inc_by(status.hooks.failures);
    let ready = gauge_family(
        registry,
        "carp_boot_ready",
        "1 once the boot interlock released its demotion",
    );
    ready
        .get_or_create(&Vec::new())
        .set(i64::from(status.boot.ready));
}

/// The sync service: peer, bulk state, messages, updates, drops.
fn sync_metrics(registry: &mut Registry, sync: &SyncStatus) {
    let none = Vec::new();
    let peer_up = gauge_family(
        registry,
        "carp_sync_peer_up",
        "1 while the sync peer is heard",
    );
    peer_up.get_or_create(&none).set(i64::from(sync.peer_up));
    let bulk = gauge_family(
        registry,
        "carp_sync_bulk_state",
        "1 for the bulk update's current state",
    );
    for state in ["none", "requested", "receiving", "done", "failed"] {
        bulk.get_or_create(&vec![("state".to_owned(), state.to_owned())])
            .set(i64::from(sync.bulk == state));
    }
    for (name, help, value) in [
        (
            "carp_sync_demotion",
            "What sync adds to group carp's demote counter",
            sync.demotion.into(),
        ),
        (
            "carp_sync_pending",
            "Local changes not sent yet",
            sync.pending,
        ),
        (
            "carp_sync_lag_messages",
            "State messages the peer had sent that had not reached us at its last heartbeat",
            sync.lag,
        ),
        (
            "carp_sync_entries",
            "Entries in this node's conntrack table",
            sync.entries,
        ),
    ] {
        gauge_family(registry, name, help)
            .get_or_create(&none)
            .set(i64::try_from(value).unwrap_or(i64::MAX));
    }
    let messages = counter_family(registry, "carp_sync_messages", "Sync messages by direction");
    for (direction, value) in [
        ("sent", sync.messages_sent),
        ("received", sync.messages_received),
    ] {
        messages
            .get_or_create(&vec![("direction".to_owned(), direction.to_owned())])
            .inc_by(value);
    }
    let updates = counter_family(
        registry,
        "carp_sync_updates",
        "Flow changes sent, received, applied and refused by the kernel",
    );
    for (direction, value) in [
        ("sent", sync.updates_sent),
        ("received", sync.updates_received),
        ("applied", sync.updates_applied),
        ("failed", sync.updates_failed),
    ] {
        updates
            .get_or_create(&vec![("direction".to_owned(), direction.to_owned())])
            .inc_by(value);
    }
    let drops = counter_family(
        registry,
        "carp_sync_drops",
        "Sync datagrams dropped, by reason",
    );
    for (reason, value) in &sync.drops {
        drops
            .get_or_create(&vec![("reason".to_owned(), reason.clone())])
            .inc_by(*value);
    }
    counter_family(
        registry,
        "carp_sync_overruns",
        "Times local conntrack events were lost",
    )
    .get_or_create(&none)
    .inc_by(sync.overruns);
    counter_family(
        registry,
        "carp_sync_bulks_answered",
        "Bulk updates sent to the peer",
    )
    .get_or_create(&none)
    .inc_by(sync.bulks_answered);
}

/// Serves `GET /metrics` until the listener fails.
pub async fn serve(listener: TcpListener, handle: Handle) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPES));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                crate::daemon::accept_failed("metrics", &error).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            if let Err(error) = tokio::time::timeout(IO_TIMEOUT, answer(stream, &handle)).await {
                tracing::debug!(%peer, %error, "metrics scrape timed out");
            }
            drop(permit);
        });
    }
}

async fn answer(mut stream: TcpStream, handle: &Handle) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_REQUEST_BYTES {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let request_line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let reply = if request_line.starts_with(b"GET /metrics ") || request_line == b"GET /metrics" {
        match handle.status().await {
            Some(status) => response("200 OK", CONTENT_TYPE, &render(&status)),
            None => response(
                "503 Service Unavailable",
                "text/plain",
                "carpd is stopping\n",
            ),
        }
    } else {
        response("404 Not Found", "text/plain", "try /metrics\n")
    };
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::{
        BootStatus, CarpdevStatus, ContributionStatus, Counters, GroupStatus, HookCounters,
        TrackerStatus,
    };

    fn sample() -> Status {
        let mut drops = BTreeMap::new();
        drops.insert("badttl".to_owned(), 3);
        drops.insert("badauth".to_owned(), 1);
        let mut dev_drops = BTreeMap::new();
        dev_drops.insert("badvhid".to_owned(), 7);
        Status {
            interfaces: vec![InterfaceStatus {
                name: "carp0".into(),
                vhid: 5,
                carpdev: "eth0".into(),
                state: "MASTER".into(),
                advbase: 1,
                advskew: 0,
                demote: 2,
                addresses: vec![],
                groups: vec!["carp".into()],
                admin_down: false,
                counters: Counters {
                    adverts_received: 11,
                    adverts_sent: 12,
                    transitions: 2,
                    send_errors: 0,
                    drops,
                    frames: [("owned".to_owned(), 40), ("notowned".to_owned(), 3)].into(),
                    vip_conflicts: 2,
                    last_conflict: Some("192.0.2.1 claimed by 02:00:00:00:00:66".into()),
                },
            }],
            carpdevs: vec![CarpdevStatus {
                name: "eth0".into(),
                drops: dev_drops,
            }],
            groups: vec![GroupStatus {
                name: "carp".into(),
                demote: 51,
                contributions: vec![
                    ContributionStatus {
                        source: "admin".into(),
                        value: 50,
                        for_seconds: 3,
                    },
                    ContributionStatus {
                        source: "track:uplink".into(),
                        value: 1,
                        for_seconds: 9,
                    },
                ],
                members: vec!["carp0".into()],
            }],
            trackers: vec![TrackerStatus {
                name: "uplink".into(),
                kind: "ping".into(),
                group: "carp".into(),
                demote: 1,
                state: "down".into(),
                checks: 10,
                failed_checks: 4,
                last_latency_us: 250,
                last_failure: Some("no reply".into()),
            }],
            hooks: HookCounters {
                runs: 6,
                failures: 1,
            },
            boot: BootStatus::default(),
            sync: Some(Box::new(SyncStatus {
                syncdev: "eth-sync".into(),
                peer_up: true,
                bulk: "receiving".into(),
                demotion: 32,
                messages_sent: 9,
                updates_received: 300,
                updates_applied: 299,
                updates_failed: 1,
                drops: [("bad_mac".to_owned(), 4)].into(),
                entries: 1000,
                ..SyncStatus::default()
            })),
        }
    }

    #[test]
    fn renders_every_family_with_labels() {
        let text = render(&sample());
        for line in [
            r#"carp_state{name="carp0",vhid="5",carpdev="eth0"} 2"#,
            r#"carp_demote{name="carp0",vhid="5",carpdev="eth0"} 2"#,
            r#"carp_transitions_total{name="carp0",vhid="5",carpdev="eth0"} 2"#,
            r#"carp_adverts_sent_total{name="carp0",vhid="5",carpdev="eth0"} 12"#,
            r#"carp_adverts_received_total{name="carp0",vhid="5",carpdev="eth0"} 11"#,
            r#"carp_drops_total{name="carp0",vhid="5",carpdev="eth0",reason="badttl"} 3"#,
            r#"carp_drops_total{name="carp0",vhid="5",carpdev="eth0",reason="badauth"} 1"#,
            r#"carp_drops_total{carpdev="eth0",reason="badvhid"} 7"#,
            r#"carp_frames_total{name="carp0",vhid="5",carpdev="eth0",verdict="owned"} 40"#,
            r#"carp_frames_total{name="carp0",vhid="5",carpdev="eth0",verdict="notowned"} 3"#,
            r#"carp_vip_conflicts_total{name="carp0",vhid="5",carpdev="eth0"} 2"#,
            r#"carp_group_demote{group="carp"} 51"#,
            r#"carp_demote_contribution{group="carp",source="admin"} 50"#,
            r#"carp_demote_contribution{group="carp",source="track:uplink"} 1"#,
            r#"carp_tracker_up{tracker="uplink",kind="ping",group="carp"} 0"#,
            r#"carp_tracker_check_latency_microseconds{tracker="uplink",kind="ping",group="carp"} 250"#,
            r#"carp_tracker_checks_total{tracker="uplink",kind="ping",group="carp"} 10"#,
            r#"carp_tracker_failed_checks_total{tracker="uplink",kind="ping",group="carp"} 4"#,
            "carp_hook_runs_total 6",
            "carp_hook_failures_total 1",
            "carp_boot_ready 0",
            "carp_sync_peer_up 1",
            r#"carp_sync_bulk_state{state="receiving"} 1"#,
            r#"carp_sync_bulk_state{state="done"} 0"#,
            "carp_sync_demotion 32",
            "carp_sync_entries 1000",
            r#"carp_sync_messages_total{direction="sent"} 9"#,
            r#"carp_sync_updates_total{direction="applied"} 299"#,
            r#"carp_sync_updates_total{direction="failed"} 1"#,
            r#"carp_sync_drops_total{reason="bad_mac"} 4"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn state_values_follow_the_documented_encoding() {
        assert_eq!(state_value("INIT"), 0);
        assert_eq!(state_value("BACKUP"), 1);
        assert_eq!(state_value("MASTER"), 2);
    }
}
