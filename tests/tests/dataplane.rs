//! The XDP dataplane as a client sees it: exactly one gateway answers for
//! a VIP at any time, a crashed agent's node stops answering within the
//! heartbeat bound (fail closed) while the peer takes over, and the
//! master's agent restarts ten times under traffic without a transition
//! or a lost packet (the pinned dataplane carries on meanwhile).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use carp_tests::{
    CLIENT, Capture, CarpState, CarpdOptions, Cluster, Pinger, SERVER, Signal, VHIDS, gateway,
    require_root, wait_for, wall_clock,
};

/// First election plus the winner's two announcements.
const STEADY_TIMEOUT: Duration = Duration::from_secs(20);
/// Bounds a takeover wait; the tests assert their durations separately.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// Detaching takes milliseconds.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pings per second of the steady client traffic.
const PING_INTERVAL: Duration = Duration::from_millis(20);
/// Slack for two busy CI cores on a bound the test asserts.
const MARGIN: Duration = Duration::from_millis(700);
/// How long replies must stay away before the node counts as closed.
const QUIET: Duration = Duration::from_secs(2);
const RESTARTS: usize = 10;

fn vip() -> &'static str {
    VHIDS[0].addresses[0].split('/').next().unwrap_or_default()
}

fn server_address() -> &'static str {
    SERVER.address.split('/').next().unwrap_or_default()
}

/// Echo replies from the VIP as they enter the switch from gateway `name`:
/// what that gateway answered.
fn replies_from(cluster: &Cluster, name: &str) -> anyhow::Result<Capture> {
    let topology = cluster.lab().topology();
    let port = topology.switch_port(name, VHIDS[0].carpdev);
    Ok(Capture::start(
        topology.switch(),
        &port,
        &format!("icmp[icmptype] = icmp-echoreply and src host {}", vip()),
    )?)
}

/// ARP replies entering the switch from gateway `name`.
fn arp_replies_from(cluster: &Cluster, name: &str) -> anyhow::Result<Capture> {
    let topology = cluster.lab().topology();
    let port = topology.switch_port(name, VHIDS[0].carpdev);
    Ok(Capture::start(
        topology.switch(),
        &port,
        "arp and arp[6:2] = 2",
    )?)
}

/// The echo sequence numbers in tcpdump lines.
fn sequences(capture: &mut Capture) -> BTreeSet<u32> {
    capture
        .lines()
        .iter()
        .filter_map(|line| {
            let seq = line.split_once(", seq ")?.1;
            seq.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn one_gateway_answers_the_vip_at_any_time_across_failover_and_fail_back() -> anyhow::Result<()> {
    require_root()?;
    let options = CarpdOptions::default();
    let mut cluster = Cluster::start("ctone", &options)?;
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;
    let mut from_gw1 = replies_from(&cluster, "gw1")?;
    let mut from_gw2 = replies_from(&cluster, "gw2")?;
    let log = cluster.run_dir().join("ping.log");
    let pinger = Pinger::start(cluster.lab().client()?, vip(), PING_INTERVAL, &log)?;
    wait_for(STEADY_TIMEOUT, "replies through gw1", || {
        (pinger.replies().len() > 10).then_some(())
    })?;

    let killed = cluster.signal("gw1", Signal::SIGKILL)?;
    cluster.takeover_times("gw2", killed, TAKEOVER_TIMEOUT)?;
    let answered = pinger.replies().len();
    wait_for(STEADY_TIMEOUT, "replies through gw2", || {
        (pinger.replies().len() > answered + 10).then_some(())
    })?;

    // gw1 comes back and, with preempt on, takes its vhids back.
    cluster.restart("gw1", &options)?;
    cluster.wait_roles(
        &[("gw1", CarpState::Master), ("gw2", CarpState::Backup)],
        TAKEOVER_TIMEOUT,
    )?;
    let answered = pinger.replies().len();
    wait_for(STEADY_TIMEOUT, "replies through gw1 again", || {
        (pinger.replies().len() > answered + 10).then_some(())
    })?;
    let (summary, _) = pinger.stop()?;

    let gw1 = sequences(&mut from_gw1);
    let gw2 = sequences(&mut from_gw2);
    let both: Vec<_> = gw1.intersection(&gw2).collect();
    assert_eq!(summary.duplicates, 0, "duplicate replies: {summary:?}");
    assert!(both.is_empty(), "answered by both gateways: {both:?}");
    let (Some(first2), Some(last2)) = (gw2.first(), gw2.last()) else {
        panic!("gw2 never answered after the failover{}", cluster.report());
    };
    let during_gw2: Vec<_> = gw1.range(first2..=last2).collect();
    assert!(
        during_gw2.is_empty(),
        "gw1 answered while gw2 was master: {during_gw2:?}"
    );
    assert!(
        gw1.first() < Some(first2) && gw1.last() > Some(last2),
        "gw1 answered before the failover and after the fail-back: gw1 {gw1:?}, gw2 {first2}..={last2}"
    );
    Ok(())
}

#[test]
fn a_killed_agent_fails_closed_within_the_bound_and_the_peer_takes_over() -> anyhow::Result<()> {
    require_root()?;
    let options = CarpdOptions::default();
    let gw1 = gateway("gw1")?;
    // gw1 alone: nothing but its own dataplane can stop it answering.
    let mut cluster = Cluster::start_each("ctclosed", &[("gw1", &options)])?;
    cluster.wait_roles(&[("gw1", CarpState::Master)], STEADY_TIMEOUT)?;
    let log = cluster.run_dir().join("ping.log");
    let pinger = Pinger::start(cluster.lab().client()?, vip(), PING_INTERVAL, &log)?;
    wait_for(STEADY_TIMEOUT, "replies through gw1", || {
        (pinger.replies().len() > 10).then_some(())
    })?;

    // The carp interface stays up with its VIPs: only XDP stops the node.
    let killed_at = wall_clock();
    cluster.signal("gw1", Signal::SIGKILL)?;
    let bound = options.master_down(gw1);
    wait_for(bound + MARGIN + QUIET + MARGIN, "replies to stop", || {
        let last = pinger.last_reply()?;
        (last.at > killed_at && wall_clock() > last.at + QUIET).then_some(())
    })?;
    let last = pinger.last_reply().map(|r| r.at).unwrap_or_default();
    let answered_for = last.saturating_sub(killed_at);
    eprintln!("gw1 answered for {answered_for:?} after SIGKILL (bound {bound:?})");
    assert!(
        answered_for <= bound + MARGIN,
        "gw1 answered {answered_for:?} after its agent died, bound {bound:?}{}",
        cluster.report()
    );
    // The pinned program went on forwarding until the bound: the last
    // heartbeat was at most a quarter of it before the kill.
    assert!(
        answered_for >= bound / 2,
        "gw1 stopped answering {answered_for:?} after SIGKILL, long before its bound {bound:?}: \
         did the XDP program detach?"
    );

    // Nor does it answer ARP for the VIP any more.
    let mut arp_from_gw1 = arp_replies_from(&cluster, "gw1")?;
    let client = cluster.lab().client()?;
    client.ip(["neigh", "flush", "dev", CLIENT.ifname])?;
    assert!(
        client.ping(vip()).is_err(),
        "the VIP answered with its only agent dead"
    );

    // A restart now finds the pins stale and refuses without --fresh.
    let mut refused =
        cluster
            .lab()
            .start_carpd_with(gw1, cluster.run_dir(), &options.clone().fresh(false))?;
    let exit = refused.process().wait_exit(EXIT_TIMEOUT)?;
    let said = refused.log_text();
    assert!(!exit.success(), "carpd started on a stale pin: {said}");
    assert!(
        said.contains("stale") && said.contains("--fresh"),
        "carpd's refusal does not say why and what to do: {said}"
    );

    // The peer takes over; gw1 stays closed meanwhile.
    let mut from_gw1 = replies_from(&cluster, "gw1")?;
    cluster.add("gw2", &options)?;
    cluster.wait_roles(&[("gw2", CarpState::Master)], TAKEOVER_TIMEOUT)?;
    let answered = pinger.replies().len();
    wait_for(STEADY_TIMEOUT, "replies through gw2", || {
        (pinger.replies().len() > answered + 10).then_some(())
    })?;
    pinger.stop()?;
    assert_eq!(
        from_gw1.count(|_| true) + arp_from_gw1.count(|_| true),
        0,
        "gw1 answered with its agent dead: {:?} {:?}",
        from_gw1.lines(),
        arp_from_gw1.lines()
    );
    Ok(())
}

#[test]
fn ten_restarts_of_the_masters_agent_under_traffic_cost_no_transition_and_no_packet()
-> anyhow::Result<()> {
    require_root()?;
    // Restarts without --fresh: every one must find the pins live.
    let options = CarpdOptions::default().fresh(false);
    let mut cluster = Cluster::start("cthitless", &options)?;
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;
    let steady_at = wall_clock();
    // Through both vhids: to the server via the outside VIP's virtual MAC,
    // back via the inside one.
    let log = cluster.run_dir().join("ping.log");
    let pinger = Pinger::start(
        cluster.lab().client()?,
        server_address(),
        PING_INTERVAL,
        &log,
    )?;
    wait_for(STEADY_TIMEOUT, "replies from the server", || {
        (pinger.replies().len() > 10).then_some(())
    })?;

    let mut gaps = Vec::new();
    for restart in 1..=RESTARTS {
        cluster.carpctl("gw1", &["detach"])?;
        let detached = Instant::now();
        let exit = cluster.wait_exit("gw1", EXIT_TIMEOUT)?;
        assert!(exit.success(), "restart {restart}: detach exited {exit}");
        cluster.restart("gw1", &options)?;
        gaps.push(detached.elapsed());
        assert!(
            cluster.all_vhids_in("gw1", &CarpState::Master),
            "restart {restart}: gw1 is not MASTER of every vhid{}",
            cluster.report()
        );
    }
    let answered = pinger.replies().len();
    wait_for(STEADY_TIMEOUT, "replies after the last restart", || {
        (pinger.replies().len() > answered + 10).then_some(())
    })?;
    let (summary, replies) = pinger.stop()?;
    eprintln!("agent down for {gaps:?} per restart; ping {summary:?}");
    // Every request up to the last answered one was answered (the one in
    // flight when ping stopped may not be).
    let answered: BTreeSet<u32> = replies.iter().map(|r| r.seq).collect();
    let first = answered.first().copied().unwrap_or(1);
    let last = answered.last().copied().unwrap_or(0);
    let unanswered: Vec<u32> = (first..=last)
        .filter(|seq| !answered.contains(seq))
        .collect();

    for name in ["gw1", "gw2"] {
        let since: Vec<_> = cluster
            .transitions(name)?
            .into_iter()
            .filter(|t| t.at > steady_at)
            .collect();
        assert!(since.is_empty(), "{name} changed state: {since:?}");
    }
    let resumed = cluster
        .log_text("gw1")?
        .matches("resumed as MASTER")
        .count();
    assert_eq!(
        resumed,
        RESTARTS * VHIDS.len(),
        "every restart resumes every vhid"
    );
    assert_eq!(summary.duplicates, 0, "{summary:?}");
    assert!(
        unanswered.is_empty() && last > first,
        "echo requests lost across {RESTARTS} restarts: {unanswered:?} ({summary:?})"
    );
    Ok(())
}
