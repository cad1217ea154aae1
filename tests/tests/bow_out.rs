//! SIGTERM on the master: carpd bows out (one last advertisement with
//! advbase 255 / advskew 255 per vhid and address family), the backup takes
//! over at once instead of after its master-down time, and the stopped
//! carpd leaves nothing behind.

use std::time::Duration;

use carp_tests::{
    Capture, CarpState, CarpdOptions, Cluster, GATEWAYS, Signal, VHIDS, VhidSpec, host_behind,
    require_root, wait_until,
};

const PREFIX: &str = "ctbow";
/// Slack on the takeover bound: carpctl is polled every few tens of
/// milliseconds through `ip netns exec`, and carpd, tcpdump and the test
/// share two busy CI cores.
const MARGIN: Duration = Duration::from_secs(1);
/// Bounds the takeover wait, whose duration the test asserts separately.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// First election plus the winner's two announcements.
const STEADY_TIMEOUT: Duration = Duration::from_secs(20);
/// Bowing out and removing two interfaces takes milliseconds.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn sigterm_on_the_master_bows_out_and_the_backup_takes_over_at_once() -> anyhow::Result<()> {
    require_root()?;
    let options = CarpdOptions::default();
    let gw2 = &GATEWAYS[1];
    let mut cluster = Cluster::start(PREFIX, &options)?;
    cluster.wait_steady("gw1", "gw2", STEADY_TIMEOUT)?;
    let arp_ignore_default = sysctl(cluster.netns("gw1")?, "net/ipv4/conf/default/arp_ignore")?;

    // Advertisements as the switch sees them. Both masters send from the
    // virtual MAC, so they are told apart by IP source address.
    let mut adverts = Vec::new();
    for vhid in &VHIDS {
        let topology = cluster.lab().topology();
        let port = topology.switch_port("gw1", vhid.carpdev);
        let capture = Capture::start(topology.switch(), &port, "ip proto 112 or ip6 proto 112")?;
        let gw1_sources = sources_of(&cluster, "gw1", vhid.carpdev)?;
        let gw2_sources = sources_of(&cluster, "gw2", vhid.carpdev)?;
        adverts.push((capture, vhid, gw1_sources, gw2_sources));
    }

    let stopped = cluster.signal("gw1", Signal::SIGTERM)?;
    let takeovers = cluster.takeover_times("gw2", stopped, TAKEOVER_TIMEOUT)?;
    eprintln!("gw2 seen MASTER after SIGTERM, per vhid: {takeovers:?}");
    // The bow-out advert's interval is longer than 3 x gw2's advbase, so gw2
    // takes over on receipt (OpenBSD's "guaranteed to time out" rule), not
    // after its master-down time (at least ~3 s after the last normal advert).
    let latest = options.interval(gw2) + MARGIN;
    for (vhid, after) in &takeovers {
        assert!(
            *after <= latest,
            "vhid {vhid}: gw2 MASTER {after:?} after SIGTERM, more than {latest:?}: \
             did gw1 bow out?{}",
            cluster.report()
        );
    }
    let exit = cluster.wait_exit("gw1", EXIT_TIMEOUT)?;
    assert!(
        exit.success(),
        "carpd on gw1 exited with {exit}{}",
        cluster.report()
    );

    for (capture, vhid, gw1_sources, gw2_sources) in &mut adverts {
        // gw2's first advertisement as MASTER follows gw1's last frame on
        // the wire, so by then every advert gw1 sent has been captured.
        capture.wait_for(options.interval(gw2) + MARGIN, |line| {
            sent_by(line, gw2_sources)
        })?;
        let from_gw1: Vec<String> = capture
            .lines()
            .iter()
            .filter(|line| sent_by(line, gw1_sources))
            .cloned()
            .collect();
        // Like OpenBSD's, they leave from the virtual MAC, so every one
        // re-teaches the switch where the MASTER is.
        let virtual_mac = format!("{} > ", carp_tests::virtual_mac(vhid.vhid));
        assert!(
            !from_gw1.is_empty() && from_gw1.iter().all(|line| line.contains(&virtual_mac)),
            "vhid {}: gw1's adverts must come from {virtual_mac}: {from_gw1:#?}",
            vhid.vhid
        );
        for family in families(vhid) {
            let sent: Vec<&String> = from_gw1
                .iter()
                .filter(|line| line.contains(&format!("ethertype {family} ")))
                .collect();
            let bow_out = format!("vrid {}, prio 255, ", vhid.vhid);
            let bow_outs = sent
                .iter()
                .filter(|line| line.contains(&bow_out) && line.contains("intvl 255s"))
                .count();
            assert_eq!(
                bow_outs, 1,
                "vhid {} over {family}: one advert with advskew 255 and advbase 255: {sent:#?}",
                vhid.vhid
            );
            let last = sent.last().expect("at least the bow-out");
            assert!(
                last.contains(&bow_out),
                "vhid {} over {family}: the bow-out must be gw1's last advert: {sent:#?}",
                vhid.vhid
            );
        }
    }

    // carpd removed what it created and restored what it changed.
    let gw1_netns = cluster.netns("gw1")?;
    for vhid in &VHIDS {
        let shown = gw1_netns.ip(["link", "show", vhid.name]);
        assert!(
            shown.is_err(),
            "gw1 still has {} after carpd stopped: {shown:?}",
            vhid.name
        );
        let key = format!("net/ipv4/conf/{}/arp_ignore", vhid.carpdev);
        assert_eq!(
            sysctl(gw1_netns, &key)?,
            arp_ignore_default,
            "gw1 {key} not restored"
        );
    }
    cluster.wait_roles(&[("gw2", CarpState::Master)], Duration::ZERO)?;
    for vhid in &VHIDS {
        let host = host_behind(vhid).expect("every lab vhid serves a host");
        let netns = cluster.lab().topology().node(host.name)?;
        wait_until(
            MARGIN,
            &format!("{} to reach its gateway {} on gw2", host.name, host.gateway),
            || netns.ping(host.gateway).is_ok(),
        )?;
    }
    Ok(())
}

/// The addresses `node` sends advertisements from on `ifname` (its IPv4
/// address and its IPv6 link-local one), as tcpdump prints them.
fn sources_of(cluster: &Cluster, node: &str, ifname: &str) -> anyhow::Result<Vec<String>> {
    let link = cluster
        .link(node, ifname)?
        .ok_or_else(|| anyhow::anyhow!("{node} has no {ifname}"))?;
    Ok(link
        .addresses
        .iter()
        .filter_map(|address| address.split('/').next())
        .filter(|address| !address.contains(':') || address.starts_with("fe80:"))
        .map(str::to_owned)
        .collect())
}

/// tcpdump's ethertype names of the families the vhid advertises over.
fn families(vhid: &VhidSpec) -> Vec<&'static str> {
    let mut families = Vec::new();
    if vhid.addresses.iter().any(|a| !a.contains(':')) {
        families.push("IPv4");
    }
    if vhid.addresses.iter().any(|a| a.contains(':')) {
        families.push("IPv6");
    }
    families
}

fn sysctl(netns: &carp_tests::Netns, path: &str) -> anyhow::Result<String> {
    Ok(netns
        .run(["cat", &format!("/proc/sys/{path}")])?
        .trim()
        .to_owned())
}

/// Whether a `tcpdump -n -e` line is a packet from one of `sources`.
fn sent_by(line: &str, sources: &[String]) -> bool {
    sources
        .iter()
        .any(|source| line.contains(&format!(": {source} > ")))
}
