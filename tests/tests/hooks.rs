//! Hooks: the operator's commands run on carp events with the event in the
//! environment, like the scripts ifstated or devd run on OpenBSD and
//! FreeBSD. A transition hook on the backup records its INIT -> BACKUP at
//! start and BACKUP -> MASTER of every vhid at a failover; a demote hook
//! records each change of a group's counter.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use carp_tests::{
    CarpState, CarpdOptions, Cluster, Signal, VHIDS, require_root, toml_string, wait_for,
};

const PREFIX: &str = "cthook";
/// Slack on every "within" bound: hooks run in their own processes, and two
/// carpd, the hooks and the test share two busy CI cores.
const MARGIN: Duration = Duration::from_secs(1);
/// First election plus the winner's two announcements (see `wait_steady`).
const STEADY_TIMEOUT: Duration = Duration::from_secs(20);
/// Bounds the takeover wait, whose duration the test asserts separately.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// A hook is a `sh -c` that appends one line: done in milliseconds.
const HOOK_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn hooks_on_the_backup_record_its_transitions_and_demote_changes() -> anyhow::Result<()> {
    require_root()?;
    let options = CarpdOptions::default();
    // gw1 first, as `Cluster::start` does; gw2's config then names files in
    // the cluster's scratch directory.
    let mut cluster = Cluster::start_each(PREFIX, &[("gw1", &options)])?;
    let transitions_file = cluster.run_dir().join("gw2-transitions");
    let demotes_file = cluster.run_dir().join("gw2-demotes");
    let hooks = format!(
        "[hooks]\ntransition = {}\ndemote = {}\ntimeout_ms = 5000\n",
        toml_string(&format!(
            r#"echo "$CARP_EVENT $CARP_INTERFACE $CARP_VHID $CARP_OLD_STATE $CARP_NEW_STATE" >> '{}'"#,
            transitions_file.display()
        )),
        toml_string(&format!(
            r#"echo "$CARP_EVENT $CARP_GROUP $CARP_OLD_DEMOTE $CARP_NEW_DEMOTE" >> '{}'"#,
            demotes_file.display()
        )),
    );
    cluster.add("gw2", &options.clone().with_toml(&hooks))?;
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;

    let started: Vec<String> = VHIDS
        .iter()
        .map(|v| format!("transition {} {} INIT BACKUP", v.name, v.vhid))
        .collect();
    let lines = wait_for_lines(&transitions_file, &started)?;
    assert_eq!(
        sorted(lines),
        sorted(started.clone()),
        "gw2 only started so far"
    );
    // The boot interlock demotes `carp` by 128 from the start and releases
    // it at once without trackers: one change of the counter, hooked.
    let boot = vec!["demote carp 128 0".to_owned()];
    assert_eq!(wait_for_lines(&demotes_file, &boot)?, boot);

    // gw1 bows out; gw2 takes every vhid over and says so through its hook.
    let stopped = cluster.signal("gw1", Signal::SIGTERM)?;
    let takeovers = cluster.takeover_times("gw2", stopped, TAKEOVER_TIMEOUT)?;
    eprintln!("gw2 seen MASTER after SIGTERM on gw1: {takeovers:?}");
    let taken: Vec<String> = VHIDS
        .iter()
        .map(|v| format!("transition {} {} BACKUP MASTER", v.name, v.vhid))
        .collect();
    let since_takeover = Instant::now();
    let lines = wait_for_lines(&transitions_file, &taken)?;
    assert!(
        since_takeover.elapsed() <= MARGIN,
        "the hook ran {:?} after gw2 was seen MASTER",
        since_takeover.elapsed()
    );
    assert_eq!(
        sorted(lines),
        sorted(started.into_iter().chain(taken).collect()),
        "gw2's transitions: two starts, two takeovers, nothing else"
    );
    cluster.wait_roles(&[("gw2", CarpState::Master)], Duration::ZERO)?;

    // An operator's demotion and promotion each run the demote hook. Each
    // hook is awaited before the next change: hooks run concurrently, so
    // two started a few milliseconds apart may append in either order.
    let mut demotes = boot;
    for (command, line) in [
        ("demote", "demote carp 0 10"),
        ("promote", "demote carp 10 0"),
    ] {
        cluster.carpctl("gw2", &["group", "carp", command, "10"])?;
        demotes.push(line.to_owned());
        assert_eq!(wait_for_lines(&demotes_file, &demotes)?, demotes);
    }

    let status = cluster.status("gw2")?;
    assert_eq!(
        (status.hooks.runs, status.hooks.failures),
        (7, 0),
        "4 transitions and 3 demote changes, all run fine: {:?}{}",
        status.hooks,
        cluster.report()
    );
    Ok(())
}

/// The lines of `path` once every one of `wanted` is among them.
fn wait_for_lines(path: &Path, wanted: &[String]) -> anyhow::Result<Vec<String>> {
    let what = format!("{} to hold {wanted:?}", path.display());
    let lines = wait_for(HOOK_TIMEOUT, &what, || {
        let text = fs::read_to_string(path).ok()?;
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        wanted.iter().all(|w| lines.contains(w)).then_some(lines)
    })
    .map_err(|error| {
        let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
        anyhow::anyhow!("{error}; it holds:\n{text}")
    })?;
    Ok(lines)
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}
