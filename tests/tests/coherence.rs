//! The coherence tracker: a node that is MASTER of some carp interfaces of
//! a group and BACKUP of others demotes the group, so the whole group moves
//! to one node (OpenBSD needed ifstated rules for this).

use std::time::{Duration, Instant};

use carp_tests::{CarpState, CarpdOptions, Cluster, GATEWAYS, TrackerState, VHIDS, require_root};

const PREFIX: &str = "ctcoher";
/// Slack on every "within" bound: polling through `ip netns exec`, two carpd
/// and the test on two busy CI cores.
const MARGIN: Duration = Duration::from_secs(1);
const STEADY_TIMEOUT: Duration = Duration::from_secs(20);
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(15);
const CHECK_INTERVAL: Duration = Duration::from_millis(200);
const FALL: u32 = 2;
const DEMOTE: u32 = 50;

#[test]
fn a_split_group_moves_whole_to_one_node() -> anyhow::Result<()> {
    require_root()?;
    // gw1 without preempt: once the group has moved to gw2 it stays there,
    // so the end state can be checked without gw1 taking it back.
    let gw1_options = CarpdOptions::default().preempt(false).with_toml(&format!(
        "[[track]]\nname = \"together\"\nkind = \"coherence\"\ninterval_ms = {}\nrise = 2\nfall = {FALL}\ndemote = {DEMOTE}\n",
        CHECK_INTERVAL.as_millis()
    ));
    let gw2_options = CarpdOptions::default();
    let gw2 = &GATEWAYS[1];
    let cluster = Cluster::start_each(PREFIX, &[("gw1", &gw1_options), ("gw2", &gw2_options)])?;
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;

    // Split the group: gw2 (preempt) takes carp1 once gw1 advertises a
    // worse advskew on it, while gw1 stays MASTER of carp0.
    let (carp0, carp1) = (&VHIDS[0], &VHIDS[1]);
    cluster.carpctl("gw1", &["set", carp1.name, "advskew", "200"])?;
    cluster.wait_status(
        "gw2",
        TAKEOVER_TIMEOUT,
        &format!("gw2 to take {} from gw1", carp1.name),
        |status| {
            status
                .interface(carp1.name)
                .is_some_and(|i| i.state == CarpState::Master)
        },
    )?;
    let split = Instant::now();

    // gw1 sees itself MASTER of carp0 and BACKUP of carp1: after `fall`
    // checks the tracker demotes `carp`, gw1 advertises it on carp0 at once,
    // and gw2 takes carp0 on receipt.
    cluster.wait_status(
        "gw2",
        TAKEOVER_TIMEOUT,
        &format!("gw2 to take {} too", carp0.name),
        |status| {
            status
                .interface(carp0.name)
                .is_some_and(|i| i.state == CarpState::Master)
        },
    )?;
    let moved = split.elapsed();
    let bound = CHECK_INTERVAL * (FALL + 1) + MARGIN;
    assert!(
        moved <= bound,
        "the group moved {moved:?} after the split, more than {bound:?}{}",
        cluster.report()
    );
    let gw2_took = cluster.transitions("gw2")?;
    assert!(
        gw2_took.iter().any(|t| t.interface == carp0.name
            && t.to == CarpState::Master
            && t.reason == "master is demoted"),
        "gw2 took {} for another reason: {gw2_took:#?}",
        carp0.name
    );
    let log = cluster.log_text("gw1")?;
    assert!(
        log.contains("tracker together: down"),
        "gw1 never logged the split:\n{log}"
    );

    // All BACKUP now, gw1 is coherent again: the tracker comes up, the
    // demotion goes, and without preempt gw1 leaves the group on gw2.
    cluster.wait_status(
        "gw1",
        TAKEOVER_TIMEOUT,
        "gw1's tracker to come back up and its demotion to go",
        |status| {
            status
                .tracker("together")
                .is_some_and(|t| t.state == TrackerState::Up)
                && status.group("carp").is_some_and(|g| g.demote == 0)
        },
    )?;
    cluster.wait_roles(
        &[("gw1", CarpState::Backup), ("gw2", CarpState::Master)],
        gw2_options.interval(gw2) + MARGIN,
    )?;
    Ok(())
}
