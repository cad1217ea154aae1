//! The boot interlock (OpenBSD's /etc/rc demotes `carp` by 128 around
//! netstart and the daemons): a starting node holds its `carp` group
//! demoted by 128 until every tracker has a first verdict, at most
//! `boot_timeout`. So a node that preempts does not grab the VIPs before it
//! knows whether it can serve them. gw2 runs alone and is MASTER; then gw1
//! (lower advskew, preempt) starts with trackers that are not ready yet.

use std::thread;
use std::time::{Duration, Instant};

use carp_tests::{
    CarpState, CarpdOptions, Cluster, GATEWAYS, POLL_INTERVAL, Status, TrackerState, VHIDS,
    require_root, toml_string,
};

const PREFIX: &str = "ctboot";
/// Slack on every "within" bound: carpctl is polled every few tens of
/// milliseconds through `ip netns exec`, and two carpd, the test and its
/// neighbours share two busy CI cores.
const MARGIN: Duration = Duration::from_secs(1);
/// gw2 alone becomes MASTER when its master-down timer runs out (4.2 s).
const ALONE_TIMEOUT: Duration = Duration::from_secs(15);
/// Bounds the takeover waits, whose durations the test asserts separately.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// What the interlock adds to `carp` while it holds.
const BOOT_DEMOTE: u32 = 128;
/// The exec trackers check this often (and time out after as long).
const CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// A `fall` that the tests never reach: 100 failed checks take 20 s. Such a
/// tracker fails without a verdict, which is what holds the interlock (a
/// tracker that is down has a verdict: see the last test).
const NEVER_FALLS: u32 = 100;
const TRACKER: &str = "ready";
/// The stuck tracker's test: how long the interlock may wait at most.
const BOOT_TIMEOUT: Duration = Duration::from_secs(3);
/// The down tracker's weight: 1 > gw2's 0 is enough to keep gw1 BACKUP.
const TRACKER_DEMOTE: u32 = 1;

#[test]
fn an_undecided_tracker_holds_gw1_back_until_it_is_up() -> anyhow::Result<()> {
    require_root()?;
    let gw2 = &GATEWAYS[1];
    let defaults = CarpdOptions::default();
    let mut cluster = start_gw2_alone(&defaults)?;
    let ready_file = cluster.run_dir().join("gw1-ready");
    let check = format!("test -e '{}'", ready_file.display());
    cluster.add("gw1", &gw1_options(30, &check, NEVER_FALLS, 1))?;

    // Nothing to await: the point is that gw1 does NOT take over. Were it not
    // held back, it would preempt at the first advert of gw2's it hears,
    // within one gw2 interval; three of them leave no doubt.
    let heard_before = adverts_received(&cluster.status("gw1")?);
    hold_for(&cluster, defaults.interval(gw2) * 3, |gw1| {
        assert_held(gw1);
        let waiting = &gw1.boot.waiting_for;
        assert_eq!(waiting, &[format!("tracker {TRACKER}")], "{:?}", gw1.boot);
        assert_eq!(tracker_state(gw1), TrackerState::Unknown);
    })?;
    // gw1 heard gw2 all along: staying BACKUP was the interlock, not deafness.
    let heard_after = adverts_received(&cluster.status("gw1")?);
    for (before, after) in heard_before.iter().zip(&heard_after) {
        assert!(
            after >= &(before + 2),
            "gw1 heard too few adverts: {heard_before:?} -> {heard_after:?}"
        );
    }

    // Ready: the next check passes (rise 1), the interlock releases, and gw1
    // preempts at gw2's next advert on each vhid.
    std::fs::write(&ready_file, "")?;
    let created = Instant::now();
    let status = cluster.wait_status(
        "gw1",
        CHECK_INTERVAL * 2 + MARGIN,
        "the boot interlock released",
        |status| status.boot.ready,
    )?;
    assert_eq!(tracker_state(&status), TrackerState::Up);
    let carp = status.group("carp").expect("group carp is listed");
    assert_eq!(carp.demote, 0, "{}", carp.describe());
    assert!(carp.contributions.is_empty(), "{}", carp.describe());
    assert!(status.boot.waiting_for.is_empty(), "{:?}", status.boot);
    let takeovers = cluster.takeover_times("gw1", created, TAKEOVER_TIMEOUT)?;
    eprintln!("gw1 seen MASTER after its tracker got ready: {takeovers:?}");
    let latest = CHECK_INTERVAL * 2 + defaults.interval(gw2) + MARGIN;
    for (vhid, after) in &takeovers {
        assert!(
            *after <= latest,
            "vhid {vhid}: gw1 MASTER {after:?} after it got ready, more than {latest:?}{}",
            cluster.report()
        );
    }
    cluster.wait_roles(
        &[("gw1", CarpState::Master), ("gw2", CarpState::Backup)],
        MARGIN,
    )?;
    let log = cluster.log_text("gw1")?;
    assert!(log.contains("boot interlock: ready"), "{log}");
    Ok(())
}

#[test]
fn a_stuck_tracker_holds_gw1_back_only_until_boot_timeout() -> anyhow::Result<()> {
    require_root()?;
    let gw2 = &GATEWAYS[1];
    let defaults = CarpdOptions::default();
    let mut cluster = start_gw2_alone(&defaults)?;
    let started = Instant::now();
    cluster.add(
        "gw1",
        &gw1_options(BOOT_TIMEOUT.as_secs(), "false", NEVER_FALLS, 1),
    )?;

    // Held, and BACKUP, for as long as the interlock holds.
    let released = cluster.with_report(carp_tests::wait_for(
        BOOT_TIMEOUT + MARGIN * 2,
        "gw1's boot interlock to give up",
        || {
            let gw1 = cluster.status("gw1").ok()?;
            if gw1.boot.ready {
                return Some((started.elapsed(), gw1));
            }
            assert_held(&gw1);
            None
        },
    ))?;
    let (after, status) = released;
    eprintln!("gw1's interlock released {after:?} after its carpd started");
    // The deadline runs from carpd's start, after `started`: never earlier.
    assert!(
        after >= BOOT_TIMEOUT,
        "released after {after:?}, before boot_timeout {BOOT_TIMEOUT:?}{}",
        cluster.report()
    );
    // What remains is what the tracker contributes: nothing, it still has no
    // verdict. The interlock is bounded in time, not by the tracker.
    assert_eq!(tracker_state(&status), TrackerState::Unknown);
    let carp = status.group("carp").expect("group carp is listed");
    assert_eq!(carp.contribution("boot"), 0, "{}", carp.describe());
    assert_eq!(
        carp.demote,
        carp.contribution(&format!("track:{TRACKER}")),
        "{}",
        carp.describe()
    );
    assert_eq!(carp.demote, 0, "{}", carp.describe());
    let log = cluster.log_text("gw1")?;
    assert!(
        log.contains(&format!(
            "boot interlock: released after {} s although still waiting for tracker {TRACKER}",
            BOOT_TIMEOUT.as_secs()
        )),
        "{log}"
    );
    // Undemoted, gw1 preempts at gw2's next adverts.
    cluster.wait_roles(
        &[("gw1", CarpState::Master), ("gw2", CarpState::Backup)],
        defaults.interval(gw2) + MARGIN,
    )?;
    Ok(())
}

#[test]
fn a_tracker_that_is_down_releases_the_interlock_and_keeps_its_own_weight() -> anyhow::Result<()> {
    require_root()?;
    let gw2 = &GATEWAYS[1];
    let defaults = CarpdOptions::default();
    let mut cluster = start_gw2_alone(&defaults)?;
    let started = Instant::now();
    // fall 1: the first failed check is a verdict (down).
    cluster.add("gw1", &gw1_options(30, "false", 1, TRACKER_DEMOTE))?;

    let status = cluster.wait_status(
        "gw1",
        CHECK_INTERVAL * 2 + MARGIN,
        "the boot interlock released at the tracker's first verdict",
        |status| status.boot.ready,
    )?;
    eprintln!(
        "gw1's interlock released {:?} after its carpd started",
        started.elapsed()
    );
    assert_eq!(tracker_state(&status), TrackerState::Down);
    let carp = status.group("carp").expect("group carp is listed");
    assert_eq!(carp.contribution("boot"), 0, "{}", carp.describe());
    assert_eq!(
        carp.contribution(&format!("track:{TRACKER}")),
        TRACKER_DEMOTE,
        "{}",
        carp.describe()
    );
    assert_eq!(carp.demote, TRACKER_DEMOTE, "{}", carp.describe());

    // The down tracker's demote 1 is more than gw2's 0, so gw1 stays BACKUP
    // although it preempts and has the shorter interval. Nothing to await:
    // were it not demoted, it would preempt within one gw2 interval.
    hold_for(&cluster, defaults.interval(gw2) * 3, |gw1| {
        assert!(gw1.boot.ready, "{:?}", gw1.boot);
        assert_eq!(gw1.demote_of("carp"), TRACKER_DEMOTE);
        for iface in &gw1.interfaces {
            assert_eq!(iface.state, CarpState::Backup, "{iface:?}");
            assert_eq!(u32::from(iface.demote), TRACKER_DEMOTE, "{iface:?}");
        }
    })?;
    Ok(())
}

/// The lab with carpd on gw2 only, once gw2 is MASTER of every vhid.
fn start_gw2_alone(options: &CarpdOptions) -> anyhow::Result<Cluster> {
    let cluster = Cluster::start_each(PREFIX, &[("gw2", options)])?;
    cluster.wait_roles(&[("gw2", CarpState::Master)], ALONE_TIMEOUT)?;
    Ok(cluster)
}

/// gw1's config: an exec tracker running `command`, and the interlock's bound.
fn gw1_options(boot_timeout_secs: u64, command: &str, fall: u32, demote: u32) -> CarpdOptions {
    CarpdOptions::default().with_toml(&format!(
        "boot_timeout = {boot_timeout_secs}\n[[track]]\nname = \"{TRACKER}\"\nkind = \"exec\"\n\
         command = {}\ninterval_ms = {}\nrise = 1\nfall = {fall}\ndemote = {demote}\n",
        toml_string(command),
        CHECK_INTERVAL.as_millis(),
    ))
}

/// gw1 held back by the interlock: BACKUP everywhere, `carp` demoted by 128
/// from the boot contribution, and every vhid advertising that.
fn assert_held(gw1: &Status) {
    assert!(!gw1.boot.ready, "{:?}", gw1.boot);
    let carp = gw1.group("carp").expect("group carp is listed");
    assert_eq!(
        carp.contribution("boot"),
        BOOT_DEMOTE,
        "{}",
        carp.describe()
    );
    assert_eq!(carp.demote, BOOT_DEMOTE, "{}", carp.describe());
    for vhid in &VHIDS {
        let iface = gw1
            .by_vhid(vhid.vhid)
            .unwrap_or_else(|| panic!("gw1 has no vhid {}", vhid.vhid));
        assert_eq!(
            iface.state,
            CarpState::Backup,
            "gw1 took {} while held",
            iface.name
        );
        assert_eq!(u32::from(iface.demote), BOOT_DEMOTE, "{iface:?}");
    }
}

/// Polls gw1 for `window`, running `check` on each status, and checks that
/// gw2 stays MASTER throughout.
fn hold_for(
    cluster: &Cluster,
    window: Duration,
    mut check: impl FnMut(&Status),
) -> anyhow::Result<()> {
    let end = Instant::now() + window;
    while Instant::now() < end {
        check(&cluster.status("gw1")?);
        assert!(
            cluster.all_vhids_in("gw2", &CarpState::Master),
            "gw2 lost a vhid{}",
            cluster.report()
        );
        thread::sleep(POLL_INTERVAL);
    }
    Ok(())
}

fn tracker_state(status: &Status) -> TrackerState {
    status
        .tracker(TRACKER)
        .unwrap_or_else(|| panic!("no tracker {TRACKER} in {status:#?}"))
        .state
        .clone()
}

fn adverts_received(status: &Status) -> Vec<u64> {
    VHIDS
        .iter()
        .map(|vhid| {
            status
                .by_vhid(vhid.vhid)
                .map_or(0, |iface| iface.counters.adverts_received)
        })
        .collect()
}
