//! Field story 4: an operator steers the election with carpctl. A group's
//! demote counter outranks advskew: `group carp demote 50` on the master
//! fails every vhid of the group over, `promote 50` brings them back. Per
//! interface, `set advskew`, `set state` and `down`/`up` move one vhid.
//! Commands carpd or carpctl refuses say why and change nothing.

use std::time::{Duration, Instant};

use carp_tests::{
    CarpState, CarpdOptions, Cluster, GATEWAYS, GroupStatus, Status, VHIDS, require_root,
};

const PREFIX: &str = "ctdemote";
/// Slack on every "within" bound: carpctl is polled every few tens of
/// milliseconds through `ip netns exec`, and two carpd, the test and its
/// neighbours share two busy CI cores.
const MARGIN: Duration = Duration::from_secs(1);
/// First election plus the winner's two announcements (see `wait_steady`).
const STEADY_TIMEOUT: Duration = Duration::from_secs(20);
/// Bounds the waits whose duration the test asserts separately, so that a
/// slow takeover fails the assertion (with its time) rather than the wait.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// What the operator demotes the master's `carp` group by: well above the
/// peer's (0), as `carpdemote 50` in OpenBSD's failover recipes.
const DEMOTE: u32 = 50;

#[test]
fn group_demotion_outranks_advskew_and_promotion_brings_every_vhid_back() -> anyhow::Result<()> {
    require_root()?;
    let options = CarpdOptions::default();
    let (gw1, gw2) = (&GATEWAYS[0], &GATEWAYS[1]);
    let cluster = Cluster::start(PREFIX, &options)?;
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;

    let said = cluster.carpctl("gw1", &["group", "carp", "demote", &DEMOTE.to_string()])?;
    let demoted = Instant::now();
    assert!(
        said.contains(&format!("group carp: demote {DEMOTE} (admin {DEMOTE})")),
        "{said}"
    );
    // The counter change makes gw1 advertise demote 50 on every vhid at
    // once, and gw2 takes each over on receipt although its advskew is
    // higher: no timer is involved, only the round trip and the polling.
    let takeovers = cluster.takeover_times("gw2", demoted, TAKEOVER_TIMEOUT)?;
    eprintln!("gw2 seen MASTER after `demote {DEMOTE}` on gw1: {takeovers:?}");
    for (vhid, after) in &takeovers {
        assert!(
            *after <= MARGIN,
            "vhid {vhid}: gw2 MASTER {after:?} after the demotion, more than {MARGIN:?}{}",
            cluster.report()
        );
    }
    // gw1 steps down at gw2's first advertisement, sent as it took over.
    cluster.wait_roles(
        &[("gw1", CarpState::Backup), ("gw2", CarpState::Master)],
        MARGIN,
    )?;
    let gw2_took = cluster.transitions("gw2")?;
    for vhid in &VHIDS {
        assert!(
            gw2_took.iter().any(|t| t.interface == vhid.name
                && t.to == CarpState::Master
                && t.reason == "master is demoted"),
            "gw2 {} did not take over for gw1's demotion: {gw2_took:#?}",
            vhid.name
        );
    }

    assert_carpctl_shows_the_admin_demotion(&cluster)?;

    let said = cluster.carpctl("gw1", &["group", "carp", "promote", &DEMOTE.to_string()])?;
    let promoted = Instant::now();
    assert!(said.contains("group carp: demote 0 (admin 0)"), "{said}");
    // Undemoted, gw1 (preempt, shorter interval) takes each vhid back at the
    // first advertisement it hears from gw2 after the promotion.
    let takeovers = cluster.takeover_times("gw1", promoted, TAKEOVER_TIMEOUT)?;
    eprintln!("gw1 seen MASTER after `promote {DEMOTE}`: {takeovers:?}");
    let latest = options.interval(gw2) + MARGIN;
    for (vhid, after) in &takeovers {
        assert!(
            *after <= latest,
            "vhid {vhid}: gw1 MASTER {after:?} after the promotion, more than {latest:?}{}",
            cluster.report()
        );
    }
    cluster.wait_roles(
        &[("gw1", CarpState::Master), ("gw2", CarpState::Backup)],
        options.interval(gw1) + MARGIN,
    )?;
    let status = cluster.status("gw1")?;
    let carp = group(&status, "carp");
    assert_eq!(carp.demote, 0, "{carp:#?}");
    assert!(carp.contributions.is_empty(), "{carp:#?}");

    // Promoting below zero stops at zero: a later demotion by someone else
    // (a tracker, a pulled cable) must not be cancelled in advance.
    let said = cluster.carpctl("gw1", &["group", "carp", "promote", "1"])?;
    assert!(said.contains("group carp: demote 0 (admin 0)"), "{said}");
    let status = cluster.status("gw1")?;
    let carp = group(&status, "carp");
    assert_eq!(carp.demote, 0, "{carp:#?}");
    assert_eq!(carp.contribution("admin"), 0, "{carp:#?}");
    assert!(
        status.interfaces.iter().all(|i| i.demote == 0),
        "{status:#?}"
    );
    cluster.wait_roles(
        &[("gw1", CarpState::Master), ("gw2", CarpState::Backup)],
        Duration::ZERO,
    )?;
    Ok(())
}

#[test]
fn advskew_state_and_admin_down_move_one_vhid() -> anyhow::Result<()> {
    require_root()?;
    let options = CarpdOptions::default();
    let cluster = Cluster::start(PREFIX, &options)?;
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;
    advskew_hands_carp0_over_and_back(&cluster, &options)?;
    admin_down_hands_carp0_over_and_up_takes_it_back(&cluster, &options)?;
    forced_backup_hands_carp1_over(&cluster, &options)?;
    Ok(())
}

/// `set carp0 advskew 200` on the master, then `advskew 0`.
fn advskew_hands_carp0_over_and_back(
    cluster: &Cluster,
    options: &CarpdOptions,
) -> anyhow::Result<()> {
    let (gw1, gw2) = (&GATEWAYS[0], &GATEWAYS[1]);
    let (carp0, carp1) = (&VHIDS[0], &VHIDS[1]);
    // gw1's carp0 interval (1 + 200/256 s) is now longer than gw2's, so gw2
    // preempts at gw1's next advertisement, sent at the new interval.
    let said = cluster.carpctl("gw1", &["set", "carp0", "advskew", "200"])?;
    let set = Instant::now();
    assert!(said.contains("carp0: advskew 200"), "{said}");
    let slow = CarpdOptions {
        advskew: Some(200),
        ..options.clone()
    };
    let latest = slow.interval(gw1) + MARGIN;
    let after = time_until_state(cluster, "gw2", carp0.vhid, &CarpState::Master, set)?;
    assert!(
        after <= latest,
        "gw2 took carp0 {after:?} after `advskew 200` on gw1, more than {latest:?}{}",
        cluster.report()
    );
    // gw1 steps down at that advertisement from gw2; carp1 stays with gw1.
    wait_vhid_states(
        cluster,
        &[
            ("gw1", carp0.vhid, CarpState::Backup),
            ("gw2", carp1.vhid, CarpState::Backup),
            ("gw1", carp1.vhid, CarpState::Master),
        ],
        MARGIN,
    )?;
    assert_eq!(interface(&cluster.status("gw1")?, "carp0").advskew, 200);

    // advskew 0 again: gw1 preempts at gw2's next advertisement.
    let said = cluster.carpctl("gw1", &["set", "carp0", "advskew", "0"])?;
    let set = Instant::now();
    assert!(said.contains("carp0: advskew 0"), "{said}");
    let latest = options.interval(gw2) + MARGIN;
    let after = time_until_state(cluster, "gw1", carp0.vhid, &CarpState::Master, set)?;
    assert!(
        after <= latest,
        "gw1 took carp0 back {after:?} after `advskew 0`, more than {latest:?}{}",
        cluster.report()
    );
    cluster.wait_roles(
        &[("gw1", CarpState::Master), ("gw2", CarpState::Backup)],
        options.interval(gw1) + MARGIN,
    )?;
    Ok(())
}

/// `down carp0` on the master, then `up carp0`.
fn admin_down_hands_carp0_over_and_up_takes_it_back(
    cluster: &Cluster,
    options: &CarpdOptions,
) -> anyhow::Result<()> {
    let (gw1, gw2) = (&GATEWAYS[0], &GATEWAYS[1]);
    let carp0 = &VHIDS[0];
    // gw1 bows out: gw2 takes over on receipt of the bow-out advertisement,
    // not after its master-down time.
    let said = cluster.carpctl("gw1", &["down", "carp0"])?;
    let downed = Instant::now();
    assert!(said.contains("carp0: down"), "{said}");
    let latest = options.interval(gw2) + MARGIN;
    let after = time_until_state(cluster, "gw2", carp0.vhid, &CarpState::Master, downed)?;
    assert!(
        after <= latest,
        "gw2 took carp0 {after:?} after `down carp0` on gw1, more than {latest:?}: \
         did gw1 bow out?{}",
        cluster.report()
    );
    let status = cluster.status("gw1")?;
    let down = interface(&status, "carp0");
    assert_eq!(down.state, CarpState::Init, "{down:?}");
    assert!(down.admin_down, "{down:?}");
    let link = cluster.link("gw1", "carp0")?.expect("carp0 stays on gw1");
    assert!(
        !link.up,
        "gw1 carp0 is down by admin but its link is up: {link:?}"
    );
    let other = interface(&status, "carp1");
    assert_eq!(other.state, CarpState::Master, "carp1 is not affected");
    assert!(!other.admin_down, "{other:?}");

    let said = cluster.carpctl("gw1", &["up", "carp0"])?;
    let upped = Instant::now();
    assert!(said.contains("carp0: up"), "{said}");
    // Back in the election as BACKUP; it preempts at gw2's next advert.
    let after = time_until_state(cluster, "gw1", carp0.vhid, &CarpState::Master, upped)?;
    assert!(
        after <= options.interval(gw2) + MARGIN,
        "gw1 took carp0 back {after:?} after `up carp0`{}",
        cluster.report()
    );
    assert!(!interface(&cluster.status("gw1")?, "carp0").admin_down);
    cluster.wait_roles(
        &[("gw1", CarpState::Master), ("gw2", CarpState::Backup)],
        options.interval(gw1) + MARGIN,
    )?;
    Ok(())
}

/// `set carp1 state backup` on the master.
fn forced_backup_hands_carp1_over(cluster: &Cluster, options: &CarpdOptions) -> anyhow::Result<()> {
    let (gw1, gw2) = (&GATEWAYS[0], &GATEWAYS[1]);
    // gw1 steps down with a bow-out advertisement, gw2 takes carp1 over on
    // receipt, and gw1 (preempt, shorter interval) takes it back at gw2's
    // first advertisement. gw2's MASTER spell is that short, so it is read
    // from gw2's transition counter and log, not from its state.
    let transitions_before = interface(&cluster.status("gw2")?, "carp1")
        .counters
        .transitions;
    let said = cluster.carpctl("gw1", &["set", "carp1", "state", "backup"])?;
    let forced = Instant::now();
    assert!(said.contains("carp1: BACKUP"), "{said}");
    let became_master = cluster.wait_status(
        "gw2",
        MARGIN,
        "carp1 to become MASTER at least once",
        |status| {
            status
                .interface("carp1")
                .is_some_and(|iface| iface.counters.transitions > transitions_before)
        },
    );
    eprintln!(
        "gw2's carp1 moved {:?} after `set carp1 state backup` on gw1",
        forced.elapsed()
    );
    became_master?;
    // The bow-out's interval (255 + 255/256 s) is longer than gw2's: with
    // preempt gw2 takes over as from any slower master; without, because it
    // would time out (more than 3 x gw2's advbase). Never by its own timer.
    let gw2_log = cluster.transitions("gw2")?;
    assert!(
        gw2_log.iter().any(|t| t.interface == "carp1"
            && t.to == CarpState::Master
            && ["preempting a slower master", "master will time out"].contains(&t.reason.as_str())),
        "gw2 did not take carp1 over at gw1's bow-out: {gw2_log:#?}"
    );
    cluster.wait_roles(
        &[("gw1", CarpState::Master), ("gw2", CarpState::Backup)],
        options.interval(gw2) + options.interval(gw1) + MARGIN,
    )?;
    Ok(())
}

#[test]
fn refused_commands_say_why_and_change_nothing() -> anyhow::Result<()> {
    require_root()?;
    let cluster = Cluster::start(PREFIX, &CarpdOptions::default())?;
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;
    let before = settings(&cluster.status("gw1")?);

    let cases: [(&[&str], &str); 11] = [
        (&["set", "carp9", "advskew", "5"], "no carp interface carp9"),
        (
            &["set", "carp9", "state", "master"],
            "no carp interface carp9",
        ),
        (&["down", "carp9"], "no carp interface carp9"),
        (&["up", "carp9"], "no carp interface carp9"),
        (&["group", "nosuch", "demote", "5"], "no group nosuch"),
        (&["group", "nosuch", "promote"], "no group nosuch"),
        (&["group", "nosuch"], "no group nosuch"),
        // carpdemote takes 0..128 (OpenBSD); carpctl checks before asking.
        (&["group", "carp", "demote", "200"], "200 is not in 0..=128"),
        (
            &["group", "carp", "promote", "129"],
            "129 is not in 0..=128",
        ),
        (&["set", "carp0", "advskew", "255"], "255 is not in 0..=254"),
        (&["set", "carp0", "state", "init"], "invalid value 'init'"),
    ];
    for (args, expected) in cases {
        match cluster.carpctl("gw1", args) {
            Ok(out) => panic!("`carpctl {}` succeeded: {out}", args.join(" ")),
            Err(error) => {
                let message = error.to_string();
                assert!(
                    message.contains(expected),
                    "`carpctl {}` should say {expected:?}: {message}",
                    args.join(" ")
                );
            }
        }
    }

    let after = settings(&cluster.status("gw1")?);
    assert_eq!(after, before, "a refused command changed gw1");
    cluster.wait_roles(
        &[("gw1", CarpState::Master), ("gw2", CarpState::Backup)],
        Duration::ZERO,
    )?;
    Ok(())
}

/// What carpctl shows on gw1 after `group carp demote 50`: the counter,
/// who contributes, the members, and each vhid advertising the sum.
fn assert_carpctl_shows_the_admin_demotion(cluster: &Cluster) -> anyhow::Result<()> {
    let text = cluster.carpctl("gw1", &["group", "carp"])?;
    assert!(
        text.starts_with(&format!(
            "carp: carp demote count {DEMOTE} (members: carp0 carp1)\n"
        )),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|line| line.trim_start().starts_with("admin") && line.contains("+50 for")),
        "no admin contribution in:\n{text}"
    );
    let groups: Vec<GroupStatus> =
        serde_json::from_str(&cluster.carpctl("gw1", &["group", "carp", "--json"])?)?;
    let [carp] = groups.as_slice() else {
        panic!("`carpctl group carp --json` lists exactly carp: {groups:#?}");
    };
    assert_eq!(carp.demote, DEMOTE, "{carp:#?}");
    assert_eq!(carp.contributions.len(), 1, "only the admin's: {carp:#?}");
    assert_eq!(carp.contribution("admin"), DEMOTE, "{carp:#?}");
    assert_eq!(carp.members, ["carp0", "carp1"]);
    let status = cluster.status("gw1")?;
    for iface in &status.interfaces {
        assert_eq!(
            u32::from(iface.demote),
            DEMOTE,
            "{} advertises the sum of its groups' counters",
            iface.name
        );
        assert!(iface.groups.iter().any(|g| g == "carp"), "{iface:?}");
    }

    Ok(())
}

/// Everything a command could change, without the counters that move by
/// themselves.
fn settings(status: &Status) -> Vec<String> {
    let interfaces = status.interfaces.iter().map(|i| {
        format!(
            "{} vhid {} {} advskew {} demote {} admin_down {} groups {:?}",
            i.name, i.vhid, i.state, i.advskew, i.demote, i.admin_down, i.groups
        )
    });
    let groups = status.groups.iter().map(GroupStatus::describe);
    interfaces.chain(groups).collect()
}

fn group<'a>(status: &'a Status, name: &str) -> &'a GroupStatus {
    status
        .group(name)
        .unwrap_or_else(|| panic!("no group {name} in {status:#?}"))
}

fn interface<'a>(status: &'a Status, name: &str) -> &'a carp_tests::InterfaceStatus {
    status
        .interface(name)
        .unwrap_or_else(|| panic!("no {name} in {status:#?}"))
}

/// How long after `since` gateway `node` was first seen in `state` on `vhid`.
fn time_until_state(
    cluster: &Cluster,
    node: &str,
    vhid: u8,
    state: &CarpState,
    since: Instant,
) -> anyhow::Result<Duration> {
    cluster.wait_status(
        node,
        TAKEOVER_TIMEOUT,
        &format!("vhid {vhid} to be {state}"),
        |status| status.by_vhid(vhid).is_some_and(|i| i.state == *state),
    )?;
    Ok(since.elapsed())
}

/// Waits until each (node, vhid) is in its state.
fn wait_vhid_states(
    cluster: &Cluster,
    wanted: &[(&str, u8, CarpState)],
    timeout: Duration,
) -> anyhow::Result<()> {
    let what = wanted
        .iter()
        .map(|(node, vhid, state)| format!("{node} vhid {vhid} {state}"))
        .collect::<Vec<_>>()
        .join(", ");
    let reached = carp_tests::wait_until(timeout, &what, || {
        wanted.iter().all(|(node, vhid, state)| {
            cluster
                .status(node)
                .is_ok_and(|status| status.by_vhid(*vhid).is_some_and(|i| i.state == *state))
        })
    });
    Ok(cluster.with_report(reached)?)
}
