//! The master's carpd dies (`kill -9`): the backup takes every vhid over when
//! its master-down timer runs out and announces the VIPs from the virtual
//! MAC. When the dead node's carpd comes back it adopts the carp interfaces
//! the crash left behind, and takes the vhids back only with `preempt`.

use std::os::unix::process::ExitStatusExt as _;
use std::thread;
use std::time::{Duration, Instant};

use carp_tests::{
    Capture, CarpState, CarpdOptions, Cluster, GATEWAYS, LinkState, POLL_INTERVAL, Signal, VHIDS,
    VhidSpec, address_of, host_behind, require_root, virtual_mac,
};

const PREFIX: &str = "ctfail";
/// Slack on every "within" bound: carpctl is polled every few tens of
/// milliseconds through `ip netns exec`, and carpd, tcpdump and the test
/// share two busy CI cores, so an event is seen late by up to this much.
const MARGIN: Duration = Duration::from_secs(1);
/// How late a master's advertisement may go out on a busy machine: the last
/// one the backup heard before the kill may be this much more than one
/// interval old, which moves the takeover earlier by as much.
const ADVERT_JITTER: Duration = Duration::from_millis(500);
/// Bounds the waits whose duration the test asserts separately, so that a
/// slow takeover fails the assertion (with its time) rather than the wait.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// First election plus the winner's two announcements (see `wait_steady`).
const STEADY_TIMEOUT: Duration = Duration::from_secs(20);
/// A process killed by SIGKILL is gone as soon as the kernel reaps it.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn sigkill_of_the_master_hands_every_vhid_to_the_backup_after_master_down() -> anyhow::Result<()> {
    require_root()?;
    let options = CarpdOptions::default();
    let (gw1, gw2) = (&GATEWAYS[0], &GATEWAYS[1]);
    let mut cluster = Cluster::start(PREFIX, &options)?;
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;
    // ARP on the hosts' segments. gw1's carpd is dead and gw1 was done
    // announcing (wait_steady), so a gratuitous ARP from a virtual MAC seen
    // after the kill is gw2's; the switch's MAC table confirms the port.
    let mut announcements: Vec<(Capture, &VhidSpec)> = Vec::new();
    for vhid in &VHIDS {
        let host = host_behind(vhid).expect("every lab vhid serves a host");
        let netns = cluster.lab().topology().node(host.name)?;
        announcements.push((Capture::start(netns, host.ifname, "arp")?, vhid));
    }

    let killed = cluster.signal("gw1", Signal::SIGKILL)?;
    let exit = cluster.wait_exit("gw1", EXIT_TIMEOUT)?;
    assert_eq!(exit.signal(), Some(Signal::SIGKILL as i32), "{exit}");
    let takeovers = cluster.takeover_times("gw2", killed, TAKEOVER_TIMEOUT)?;
    eprintln!("gw2 seen MASTER after the kill, per vhid: {takeovers:?}");

    // gw2 restarts its master-down timer (3 x its own interval) on every
    // advertisement; the last one came at most one gw1 interval before the
    // kill. So it takes over between those two bounds after the kill.
    let latest = options.master_down(gw2) + MARGIN;
    let earliest = options
        .master_down(gw2)
        .saturating_sub(options.interval(gw1) + ADVERT_JITTER);
    for (vhid, after) in &takeovers {
        assert!(
            *after <= latest,
            "vhid {vhid}: gw2 MASTER {after:?} after the kill, more than {latest:?}{}",
            cluster.report()
        );
        assert!(
            *after >= earliest,
            "vhid {vhid}: gw2 MASTER {after:?} after the kill, before its master-down \
             timer could expire ({earliest:?}){}",
            cluster.report()
        );
    }

    // A gratuitous ARP from the virtual MAC for each IPv4 VIP (request,
    // sender = target = VIP), and the second one two intervals later.
    let second_within = options.interval(gw2) * 2 + MARGIN;
    for (capture, vhid) in &mut announcements {
        let vip = ipv4_vip(vhid);
        let mac = virtual_mac(vhid.vhid);
        let is_garp = |line: &str| {
            line.contains(&format!("{mac} > ff:ff:ff:ff:ff:ff"))
                && line.contains(&format!("Request who-has {vip} tell {vip},"))
        };
        capture
            .wait_for(MARGIN, is_garp)
            .map_err(|error| anyhow::anyhow!("gw2's first gratuitous ARP for {vip}: {error}"))?;
        capture
            .wait_for(second_within, is_garp)
            .map_err(|error| anyhow::anyhow!("gw2's second gratuitous ARP for {vip}: {error}"))?;
        // The switch now delivers the virtual MAC to gw2.
        let topology = cluster.lab().topology();
        let fdb = topology
            .switch()
            .run(["bridge", "fdb", "show", "dynamic"])?;
        let port = topology.switch_port("gw2", vhid.carpdev);
        assert!(
            fdb.lines()
                .any(|l| l.starts_with(&format!("{mac} dev {port} "))),
            "the switch did not learn {mac} on {port}:\n{fdb}"
        );
    }
    Ok(())
}

#[test]
fn restarted_master_adopts_its_leftover_interfaces_and_preempts() -> anyhow::Result<()> {
    require_root()?;
    let options = CarpdOptions::default();
    assert!(options.preempt);
    let (gw1, gw2) = (&GATEWAYS[0], &GATEWAYS[1]);
    let mut cluster = Cluster::start(PREFIX, &options)?;
    let leftovers = crash_gw1(&mut cluster)?;

    cluster.restart("gw1", &options)?;
    let restarted = Instant::now();
    // Preempt: gw1 takes over at the first advertisement it hears from the
    // slower gw2, which comes within one of gw2's intervals.
    let takeovers = cluster.takeover_times("gw1", restarted, TAKEOVER_TIMEOUT)?;
    eprintln!("gw1 seen MASTER after its restart, per vhid: {takeovers:?}");
    let latest = options.interval(gw2) + MARGIN;
    for (vhid, after) in &takeovers {
        assert!(
            *after <= latest,
            "vhid {vhid}: gw1 took over {after:?} after its restart, more than {latest:?}{}",
            cluster.report()
        );
    }
    // gw2 steps down at gw1's first advertisement, sent on its takeover.
    cluster.wait_roles(
        &[("gw1", CarpState::Master), ("gw2", CarpState::Backup)],
        options.interval(gw1) + MARGIN,
    )?;
    for (vhid, before) in VHIDS.iter().zip(&leftovers) {
        let now = cluster
            .link("gw1", vhid.name)?
            .unwrap_or_else(|| panic!("gw1 lost {}", vhid.name));
        assert_eq!(
            now.ifindex, before.ifindex,
            "{} was recreated, not adopted",
            vhid.name
        );
        assert!(now.up, "gw1 is MASTER but {} is down: {now:?}", vhid.name);
        assert_eq!(now.mac, virtual_mac(vhid.vhid));
        let on_gw2 = cluster
            .link("gw2", vhid.name)?
            .expect("gw2 keeps its carp interfaces");
        assert!(!on_gw2.up, "gw2 is BACKUP but {} is up", vhid.name);
    }
    cluster.carpd("gw1")?.ensure_running()?;
    Ok(())
}

#[test]
fn restarted_master_without_preempt_stays_backup() -> anyhow::Result<()> {
    require_root()?;
    let options = CarpdOptions::default().preempt(false);
    let gw1 = &GATEWAYS[0];
    let mut cluster = Cluster::start(PREFIX, &options)?;
    let leftovers = crash_gw1(&mut cluster)?;

    cluster.restart("gw1", &options)?;
    let gw1_before = cluster.status("gw1")?;
    let gw2_before = cluster.status("gw2")?;
    // Nothing to await: the point is that gw1 does NOT take over. A node
    // that preempts anyway does so at the first advertisement it hears
    // (within gw2's interval, 1.4 s); one that does not hear gw2 takes over
    // when its master-down timer expires (3 s). Watching for three of its
    // master-down times covers both, with room for a slow CI box.
    let window = options.master_down(gw1) * 3;
    let end = Instant::now() + window;
    while Instant::now() < end {
        assert!(
            cluster.all_vhids_in("gw1", &CarpState::Backup)
                && cluster.all_vhids_in("gw2", &CarpState::Master),
            "without preempt the roles changed{}",
            cluster.report()
        );
        // Adopted interfaces are set down: a BACKUP must not answer ARP/ND.
        for vhid in &VHIDS {
            let link = cluster.link("gw1", vhid.name)?;
            assert!(
                link.as_ref().is_some_and(|link| !link.up),
                "gw1 is BACKUP, its {} must exist and be down: {link:?}",
                vhid.name
            );
        }
        thread::sleep(POLL_INTERVAL);
    }

    let gw1_after = cluster.status("gw1")?;
    let gw2_after = cluster.status("gw2")?;
    for vhid in &VHIDS {
        let (b1, a1) = (counters(&gw1_before, vhid), counters(&gw1_after, vhid));
        let (b2, a2) = (counters(&gw2_before, vhid), counters(&gw2_after, vhid));
        // gw1 heard gw2 all along: staying BACKUP was the rule, not deafness.
        assert!(
            a1.adverts_received >= b1.adverts_received + 3,
            "vhid {}: gw1 heard too few adverts: {b1:?} -> {a1:?}",
            vhid.vhid
        );
        assert_eq!(a1.adverts_sent, 0, "vhid {}: gw1 advertised", vhid.vhid);
        assert_eq!(
            a2.transitions, b2.transitions,
            "vhid {}: gw2 flapped",
            vhid.vhid
        );
    }
    for (vhid, before) in VHIDS.iter().zip(&leftovers) {
        let now = cluster
            .link("gw1", vhid.name)?
            .expect("checked in the window");
        assert_eq!(
            now.ifindex, before.ifindex,
            "{} was recreated, not adopted",
            vhid.name
        );
    }
    Ok(())
}

/// Kills gw1's carpd once it is the steady master and waits until gw2 owns
/// every vhid. Returns gw1's carp interfaces as the crash left them: still
/// there, up, with the VIPs (nobody took them down).
fn crash_gw1(cluster: &mut Cluster) -> anyhow::Result<Vec<LinkState>> {
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;
    cluster.signal("gw1", Signal::SIGKILL)?;
    cluster.wait_exit("gw1", EXIT_TIMEOUT)?;
    cluster.wait_roles(&[("gw2", CarpState::Master)], TAKEOVER_TIMEOUT)?;
    let mut leftovers = Vec::new();
    for vhid in &VHIDS {
        let link = cluster
            .link("gw1", vhid.name)?
            .unwrap_or_else(|| panic!("SIGKILL cannot remove {}, yet it is gone", vhid.name));
        assert!(link.up, "{} was up when carpd died: {link:?}", vhid.name);
        for address in vhid.addresses {
            assert!(link.addresses.iter().any(|a| a == address), "{link:?}");
        }
        leftovers.push(link);
    }
    Ok(leftovers)
}

fn counters<'a>(status: &'a carp_tests::Status, vhid: &VhidSpec) -> &'a carp_tests::Counters {
    &status
        .by_vhid(vhid.vhid)
        .unwrap_or_else(|| panic!("no vhid {} in {status:?}", vhid.vhid))
        .counters
}

fn ipv4_vip(vhid: &VhidSpec) -> &'static str {
    let address = vhid
        .addresses
        .iter()
        .find(|a| !a.contains(':'))
        .unwrap_or_else(|| panic!("vhid {} has no IPv4 VIP", vhid.vhid));
    address_of(address)
}
