//! Field story 3: the switch port towards the master's inside interface
//! dies without a link-state change (nftables in the switch drops every
//! frame to and from it; gw1's eth-in keeps its carrier). carp alone would
//! leave carp0 (outside) on gw1, which can no longer reach the inside: a
//! blackhole for the client. A ping tracker towards the server on each
//! gateway demotes gw1's whole group when its pings fail, so the healthy
//! gw2 owns every segment; when the port comes back, gw1 gets its vhids
//! back.

use std::time::{Duration, Instant};

use carp_tests::{
    Capture, CarpState, CarpdOptions, Cluster, GATEWAYS, SERVER, TrackerState, VHIDS, address_of,
    require_root, virtual_mac, wait_until, wall_clock,
};

const PREFIX: &str = "ctblack";
/// Slack on every "within" bound: carpctl is polled every few tens of
/// milliseconds through `ip netns exec`, and two carpd, the test and its
/// neighbours share two busy CI cores.
const MARGIN: Duration = Duration::from_secs(1);
/// First election plus the winner's two announcements (see `wait_steady`).
const STEADY_TIMEOUT: Duration = Duration::from_secs(20);
/// Bounds the waits whose durations the test asserts separately.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// The tracker: one ping every `CHECK_INTERVAL` (its timeout too), down
/// after `FALL` failed ones in a row, up after `RISE` good ones.
const CHECK_INTERVAL: Duration = Duration::from_millis(200);
const FALL: u32 = 3;
const RISE: u32 = 2;
/// What a failing tracker demotes its group by: more than any automatic
/// contribution, as an operator would choose.
const TRACKER_DEMOTE: u32 = 50;
const TRACKER: &str = "server";
/// How long gw1's tracker takes to go down: `FALL` failed checks in a row,
/// started every `CHECK_INTERVAL`, the last failing at its timeout (one more
/// interval).
const DETECTION: Duration = CHECK_INTERVAL.saturating_mul(FALL + 1);
/// The bridge port table the test installs in the switch namespace.
const NFT_TABLE: &str = "blackhole";

#[test]
fn a_dead_switch_port_behind_the_master_demotes_its_whole_group() -> anyhow::Result<()> {
    require_root()?;
    let server = address_of(SERVER.address);
    let gw2 = &GATEWAYS[1];
    let (carp0, carp1) = (&VHIDS[0], &VHIDS[1]);
    let (cluster, options) = start_tracking_cluster()?;
    let client = cluster.lab().client()?;
    let broken = kill_port(&cluster)?;
    gw1_notices_and_demotes(&cluster, broken)?;

    let takeovers = cluster.takeover_times("gw2", broken, TAKEOVER_TIMEOUT)?;
    eprintln!("gw2 seen MASTER after the port died: {takeovers:?}");
    // carp0: gw1 advertises demote 50 on the outside as soon as its tracker
    // is down, and gw2 takes over on receipt.
    let carp0_bound = DETECTION + MARGIN;
    assert!(
        takeovers[&carp0.vhid] <= carp0_bound,
        "gw2 took carp0 {:?} after the port died, more than {carp0_bound:?}{}",
        takeovers[&carp0.vhid],
        cluster.report()
    );
    // carp1: gw1's adverts on the inside no longer reach gw2 (demoted or
    // not), so gw2 takes over when its master-down timer runs out.
    let carp1_bound = options.master_down(gw2) + MARGIN;
    assert!(
        takeovers[&carp1.vhid] <= carp1_bound,
        "gw2 took carp1 {:?} after the port died, more than {carp1_bound:?}{}",
        takeovers[&carp1.vhid],
        cluster.report()
    );
    // gw1 hears gw2's undemoted adverts on the outside and steps down there.
    // On the inside it hears nothing and still thinks itself MASTER, but
    // nobody can reach it there: the switch port is dead.
    cluster.wait_status("gw1", MARGIN, "carp0 BACKUP", |status| {
        status.interface(carp0.name).map(|i| &i.state) == Some(&CarpState::Backup)
    })?;
    let gw2_status = cluster.status("gw2")?;
    assert_eq!(
        gw2_status.tracker(TRACKER).map(|t| &t.state),
        Some(&TrackerState::Up),
        "gw2's own path to the server is fine"
    );
    assert_eq!(gw2_status.demote_of("carp"), 0);

    // The client reaches the server through gw2 once gw2 owns both
    // segments. That takes gw2's master-down time, not the tracker's
    // detection plus one advertisement: gw1's demoted adverts on the inside
    // die at the dead port, so only gw2's timer can move carp1 (the tracker
    // is what moves carp0). One more second: a ping waits that long for its
    // reply.
    let reach_bound = options.master_down(gw2) + MARGIN * 2;
    wait_until(
        reach_bound.saturating_sub(broken.elapsed()),
        &format!("the client to reach the server {server} through gw2"),
        || client.ping(server).is_ok(),
    )
    .map_err(|error| anyhow::anyhow!("{error}{}", cluster.report()))?;
    eprintln!(
        "the client reached the server {:?} after the port died",
        broken.elapsed()
    );

    // The port comes back: gw1's tracker rises, its group is undemoted, and
    // it takes both vhids back (preempt) at gw2's next adverts. Whether the
    // client then reaches the server through gw1 depends on a race, which
    // the next test settles on purpose.
    let repaired = Instant::now();
    repair_port(&cluster)?;
    // The tracker rises (RISE checks), gw1 preempts at gw2's next advert,
    // and gw2 steps down at gw1's first one.
    let recovery = CHECK_INTERVAL * (RISE + 1) + options.interval(gw2) + MARGIN;
    cluster.wait_roles(
        &[("gw1", CarpState::Master), ("gw2", CarpState::Backup)],
        recovery,
    )?;
    eprintln!("gw1 MASTER again {:?} after the repair", repaired.elapsed());
    let status = cluster.status("gw1")?;
    assert_eq!(
        status.tracker(TRACKER).map(|t| &t.state),
        Some(&TrackerState::Up)
    );
    assert_eq!(status.demote_of("carp"), 0);
    Ok(())
}

/// After the repair gw1's carp1 may never leave MASTER: it was MASTER all
/// along behind the dead port (it heard nobody), its group is undemoted
/// before gw2's next advert reaches it, and then gw2 is the one that steps
/// down, at gw1's first undemoted advert. gw1 has no transition, so it
/// sends no gratuitous ARP, while the switch learned carp1's virtual MAC on
/// gw2's port during the outage. The test makes that order certain: it
/// repairs the port right after one of gw2's adverts (gw2 sends the next
/// one 1 + 100/256 s later; gw1's tracker rises within (`RISE` + 1) x
/// `CHECK_INTERVAL` = 0.6 s). Then the switch must deliver the virtual MAC
/// to gw1 again within about one of gw1's intervals, as with OpenBSD, whose
/// adverts leave from the carp interface with the virtual MAC as source and
/// so re-teach the switch every second. Otherwise the server's traffic to
/// its gateway goes to gw2, whose carp1 is down, until the server re-ARPs
/// or the entry ages out (300 s).
#[test]
fn the_switch_learns_the_master_again_when_the_port_comes_back() -> anyhow::Result<()> {
    require_root()?;
    let (gw1, gw2) = (&GATEWAYS[0], &GATEWAYS[1]);
    let carp1 = &VHIDS[1];
    let (cluster, options) = start_tracking_cluster()?;
    let topology = cluster.lab().topology();
    let mac = virtual_mac(carp1.vhid);
    let switch_port_of = |node: &str| topology.switch_port(node, carp1.carpdev);
    kill_port(&cluster)?;
    cluster.wait_roles(&[("gw2", CarpState::Master)], TAKEOVER_TIMEOUT)?;
    // gw2's gratuitous ARP taught the switch where carp1 is now.
    wait_until(
        MARGIN,
        &format!("the switch to learn {mac} on gw2's port"),
        || learned_on(&cluster, &mac).as_deref() == Some(switch_port_of("gw2").as_str()),
    )?;

    // gw2's adverts as the switch receives them (gw1's die at its port).
    let mut adverts = Capture::start(topology.switch(), &switch_port_of("gw2"), "ip proto 112")?;
    adverts.wait_for(options.interval(gw2) + MARGIN, |_| true)?;
    let repaired_at = wall_clock();
    repair_port(&cluster)?;
    cluster.wait_roles(
        &[("gw1", CarpState::Master), ("gw2", CarpState::Backup)],
        CHECK_INTERVAL * (RISE + 1) + options.interval(gw2) + MARGIN,
    )?;
    let stayed_master = !cluster
        .transitions("gw1")?
        .iter()
        .any(|t| t.at >= repaired_at && t.interface == carp1.name);
    eprintln!("gw1's carp1 stayed MASTER through the repair: {stayed_master}");

    let relearned = wait_until(
        options.interval(gw1) + MARGIN,
        &format!("the switch to learn {mac} (carp1) on gw1's port again"),
        || learned_on(&cluster, &mac).as_deref() == Some(switch_port_of("gw1").as_str()),
    );
    if let Err(error) = relearned {
        panic!(
            "{error}: it still sends {mac} to {:?}; gw1 is MASTER of carp1 (without a \
             transition since the repair: {stayed_master}), gw2 BACKUP{}",
            learned_on(&cluster, &mac),
            cluster.report()
        );
    }
    Ok(())
}

/// The switch port the lab's switch has learned `mac` on, if any.
fn learned_on(cluster: &Cluster, mac: &str) -> Option<String> {
    let fdb = cluster
        .lab()
        .topology()
        .switch()
        .run(["bridge", "fdb", "show", "dynamic"])
        .ok()?;
    // `<mac> dev <port> master <bridge>`
    fdb.lines().find_map(|line| {
        let rest = line.strip_prefix(mac)?.strip_prefix(" dev ")?;
        rest.split_whitespace().next().map(str::to_owned)
    })
}

/// The lab with a ping tracker on each gateway; once gw1 is the steady
/// MASTER, both trackers are up and the client reaches the server.
fn start_tracking_cluster() -> anyhow::Result<(Cluster, CarpdOptions)> {
    let server = address_of(SERVER.address);
    let options = CarpdOptions::default().with_toml(&tracker_toml(server));
    let cluster = Cluster::start(PREFIX, &options)?;
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;
    for node in ["gw1", "gw2"] {
        cluster.wait_status(node, MARGIN, "its tracker up", |status| {
            status.tracker(TRACKER).map(|t| &t.state) == Some(&TrackerState::Up)
        })?;
    }
    cluster.lab().client()?.ping(server)?;
    Ok((cluster, options))
}

/// Removes the rules of [`kill_port`].
fn repair_port(cluster: &Cluster) -> anyhow::Result<()> {
    cluster
        .lab()
        .topology()
        .switch()
        .run(["nft", "delete", "table", "bridge", NFT_TABLE])?;
    Ok(())
}

/// gw1's and gw2's tracker: pings to the server from their inside interface.
fn tracker_toml(server: &str) -> String {
    format!(
        "[[track]]\nname = \"{TRACKER}\"\nkind = \"ping\"\ntarget = \"{server}\"\n\
         interface = \"eth-in\"\ninterval_ms = {interval}\ntimeout_ms = {interval}\n\
         rise = {RISE}\nfall = {FALL}\ndemote = {TRACKER_DEMOTE}\ngroup = \"carp\"\n",
        interval = CHECK_INTERVAL.as_millis(),
    )
}

/// Kills the switch port towards gw1's inside interface, without a carrier
/// change; returns when it was killed.
fn kill_port(cluster: &Cluster) -> anyhow::Result<Instant> {
    // Every frame into or out of the switch port of gw1's eth-in is dropped:
    // in prerouting before the bridge learns a source MAC from it, and in
    // postrouting for everything the bridge forwards or floods to it.
    let topology = cluster.lab().topology();
    let carp1 = &VHIDS[1];
    let port = topology.switch_port("gw1", carp1.carpdev);
    let rules = format!(
        "table bridge {NFT_TABLE} {{\n\
         chain in {{ type filter hook prerouting priority -200; policy accept; iifname \"{port}\" drop; }}\n\
         chain out {{ type filter hook postrouting priority -200; policy accept; oifname \"{port}\" drop; }}\n\
         }}\n"
    );
    let rules_file = cluster.run_dir().join("blackhole.nft");
    std::fs::write(&rules_file, rules)?;
    let broken = Instant::now();
    topology
        .switch()
        .run(["nft", "-f", &rules_file.to_string_lossy()])?;
    Ok(broken)
}

/// gw1's tracker fails and demotes `carp`, within the tracker's bound.
fn gw1_notices_and_demotes(cluster: &Cluster, broken: Instant) -> anyhow::Result<()> {
    let status = cluster.wait_status(
        "gw1",
        TAKEOVER_TIMEOUT,
        "its tracker down and group carp demoted",
        |status| {
            status.tracker(TRACKER).map(|t| &t.state) == Some(&TrackerState::Down)
                && status.demote_of("carp") == TRACKER_DEMOTE
        },
    )?;
    let detected = broken.elapsed();
    eprintln!("gw1's tracker down and carp demoted {detected:?} after the port died");
    assert!(
        detected <= DETECTION + MARGIN,
        "gw1 noticed {detected:?} after the port died, more than {:?}{}",
        DETECTION + MARGIN,
        cluster.report()
    );
    let group = status.group("carp").expect("group carp is listed");
    assert_eq!(
        group.contribution(&format!("track:{TRACKER}")),
        TRACKER_DEMOTE,
        "{}",
        group.describe()
    );
    let gw1_tracker = status.tracker(TRACKER).expect("tracker is listed");
    assert!(
        gw1_tracker.failed_checks >= u64::from(FALL),
        "{gw1_tracker:?}"
    );
    Ok(())
}
