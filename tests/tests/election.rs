//! The election itself: two carpd nodes elect the one with the shorter
//! advertisement interval, it does the MASTER's job (advertises, owns the
//! VIPs), and carpctl and `/metrics` say so.

use std::collections::BTreeMap;
use std::time::Duration;

use carp_tests::{
    CLIENT, CarpState, CarpdOptions, Cluster, Counters, GATEWAYS, Status, VHIDS, masters_by_vhid,
    require_root, virtual_mac, wait_until,
};

/// Namespaces of these tests start with this, so a sweep by another test
/// binary (other prefixes) never touches them.
const PREFIX: &str = "ctelect";
/// The first election takes gw1's master-down time (3 s at advbase 1) after
/// it starts; the rest covers carpd start-up on two loaded CI cores.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// Adverts counted while the test watches the counters grow.
const ADVERTS_TO_SEE: u64 = 2;

#[test]
fn the_lower_interval_is_master_of_every_vhid_and_advertises() -> anyhow::Result<()> {
    require_root()?;
    let options = CarpdOptions::default();
    let cluster = Cluster::start(PREFIX, &options)?;
    cluster.wait_roles(
        &[("gw1", CarpState::Master), ("gw2", CarpState::Backup)],
        ELECTION_TIMEOUT,
    )?;
    let gw1 = cluster.status("gw1")?;
    let gw2 = cluster.status("gw2")?;
    let masters = masters_by_vhid(&[("gw1", &gw1), ("gw2", &gw2)]);
    assert_eq!(masters.len(), VHIDS.len(), "{masters:?}");
    for vhid in &VHIDS {
        assert_eq!(
            masters[&vhid.vhid],
            ["gw1"],
            "vhid {}: exactly one MASTER, gw1",
            vhid.vhid
        );
    }
    for (status, gateway) in [(&gw1, &GATEWAYS[0]), (&gw2, &GATEWAYS[1])] {
        for vhid in &VHIDS {
            let iface = status
                .by_vhid(vhid.vhid)
                .unwrap_or_else(|| panic!("{} reports no vhid {}", gateway.name, vhid.vhid));
            assert_eq!(iface.name, vhid.name);
            assert_eq!(iface.carpdev, vhid.carpdev);
            assert_eq!(iface.advskew, options.advskew_of(gateway));
        }
    }
    // gw1 started first and has the shorter master-down, so neither node
    // went through a second MASTER on the way: gw2 only went INIT -> BACKUP
    // and never advertised, gw1 went INIT -> BACKUP -> MASTER.
    for vhid in &VHIDS {
        let counters = &gw2.by_vhid(vhid.vhid).expect("checked above").counters;
        assert_eq!(
            counters.transitions, 1,
            "gw2 vhid {}: {counters:?}",
            vhid.vhid
        );
        assert_eq!(
            counters.adverts_sent, 0,
            "gw2 vhid {}: {counters:?}",
            vhid.vhid
        );
        let counters = &gw1.by_vhid(vhid.vhid).expect("checked above").counters;
        assert_eq!(
            counters.transitions, 2,
            "gw1 vhid {}: {counters:?}",
            vhid.vhid
        );
    }

    // The master keeps advertising and the backup keeps hearing it.
    let sent_before = per_vhid(&gw1, |c| c.adverts_sent);
    let received_before = per_vhid(&gw2, |c| c.adverts_received);
    let timeout = options.interval(&GATEWAYS[0]) * 4;
    wait_until(
        timeout,
        "gw1's adverts_sent and gw2's adverts_received to grow on every vhid",
        || {
            let (Ok(gw1), Ok(gw2)) = (cluster.status("gw1"), cluster.status("gw2")) else {
                return false;
            };
            grew(&sent_before, &per_vhid(&gw1, |c| c.adverts_sent))
                && grew(&received_before, &per_vhid(&gw2, |c| c.adverts_received))
        },
    )
    .map_err(|error| anyhow::anyhow!("{error}{}", cluster.report()))?;
    let gw2 = cluster.status("gw2")?;
    assert!(
        gw2.interfaces.iter().all(|i| i.counters.adverts_sent == 0),
        "a BACKUP advertised: {gw2:?}"
    );

    // Only the master's carp interface is up: a BACKUP must not answer ARP
    // or ND for the VIPs.
    for vhid in &VHIDS {
        let on_gw1 = cluster
            .link("gw1", vhid.name)?
            .expect("gw1 has its carp interface");
        let on_gw2 = cluster
            .link("gw2", vhid.name)?
            .expect("gw2 has its carp interface");
        assert!(on_gw1.up, "gw1 {}: {on_gw1:?}", vhid.name);
        assert!(!on_gw2.up, "gw2 {}: {on_gw2:?}", vhid.name);
        assert_eq!(on_gw1.mac, virtual_mac(vhid.vhid));
        for address in vhid.addresses {
            assert!(
                on_gw1.addresses.iter().any(|a| a == address),
                "gw1 {} lacks {address}: {on_gw1:?}",
                vhid.name
            );
        }
    }
    // The client resolves its gateway VIP to the virtual MAC, not to gw1's
    // own: only the carp interface answers ARP for it.
    let client = cluster.lab().client()?;
    client.ping(CLIENT.gateway)?;
    let neighbour = client.ip(["neigh", "show", CLIENT.gateway])?;
    assert!(
        neighbour.contains(&format!("lladdr {}", virtual_mac(VHIDS[0].vhid))),
        "client's ARP entry for {}: {neighbour}",
        CLIENT.gateway
    );
    Ok(())
}

#[test]
fn metrics_show_each_nodes_role_and_counters_per_vhid() -> anyhow::Result<()> {
    require_root()?;
    let cluster = Cluster::start(PREFIX, &CarpdOptions::default())?;
    cluster.wait_roles(
        &[("gw1", CarpState::Master), ("gw2", CarpState::Backup)],
        ELECTION_TIMEOUT,
    )?;
    // carp_state encoding: 0 INIT, 1 BACKUP, 2 MASTER.
    for (node, state) in [("gw1", 2.0), ("gw2", 1.0)] {
        let status = cluster.status(node)?;
        let response = cluster.scrape_metrics(node)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{node}: not an HTTP response: {response:?}"));
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{node}: {head}");
        let metrics = Metrics::parse(body);
        for family in [
            "# TYPE carp_state gauge",
            "# TYPE carp_adverts_sent counter",
            "# TYPE carp_adverts_received counter",
            "# TYPE carp_transitions counter",
        ] {
            assert!(
                body.lines().any(|l| l == family),
                "{node}: no {family:?} in\n{body}"
            );
        }
        for vhid in &VHIDS {
            let labels = [
                ("name", vhid.name.to_owned()),
                ("vhid", vhid.vhid.to_string()),
                ("carpdev", vhid.carpdev.to_owned()),
            ];
            let value = |name: &str| {
                metrics
                    .value(name, &labels)
                    .unwrap_or_else(|| panic!("{node}: no {name}{labels:?} in\n{body}"))
            };
            let counters = &status.by_vhid(vhid.vhid).expect("lab vhid").counters;
            assert!(
                (value("carp_state") - state).abs() < f64::EPSILON,
                "{node} vhid {}",
                vhid.vhid
            );
            // Scraped after the status: counters only grow in between.
            let sent = value("carp_adverts_sent_total");
            assert!(
                sent >= as_f64(counters.adverts_sent),
                "{node}: {sent} < {counters:?}"
            );
            if node == "gw1" {
                assert!(sent >= 1.0, "the master advertised: {sent}");
            } else {
                assert!(sent == 0.0, "the backup never advertised: {sent}");
                assert!(value("carp_adverts_received_total") >= 1.0);
            }
            let transitions = value("carp_transitions_total");
            assert!(
                (transitions - as_f64(counters.transitions)).abs() < f64::EPSILON,
                "{node}: carp_transitions_total {transitions}, carpctl {counters:?}"
            );
        }
        // The drops family is absent until something was dropped (the
        // exposition leaves out families without samples); what is there
        // must say where and why.
        for sample in metrics.samples("carp_drops_total") {
            assert!(sample.labels.contains_key("reason"), "{node}: {sample:?}");
            assert!(sample.labels.contains_key("carpdev"), "{node}: {sample:?}");
            if sample.labels.contains_key("vhid") {
                assert!(sample.labels.contains_key("name"), "{node}: {sample:?}");
            }
        }
    }
    Ok(())
}

fn per_vhid(status: &Status, counter: impl Fn(&Counters) -> u64) -> BTreeMap<u8, u64> {
    status
        .interfaces
        .iter()
        .map(|iface| (iface.vhid, counter(&iface.counters)))
        .collect()
}

/// Every lab vhid's counter grew by at least [`ADVERTS_TO_SEE`].
fn grew(before: &BTreeMap<u8, u64>, now: &BTreeMap<u8, u64>) -> bool {
    VHIDS.iter().all(|vhid| {
        let before = before.get(&vhid.vhid).copied().unwrap_or(0);
        now.get(&vhid.vhid)
            .is_some_and(|now| *now >= before + ADVERTS_TO_SEE)
    })
}

fn as_f64(count: u64) -> f64 {
    // Test counters stay far below 2^52, where f64 is exact.
    #[expect(
        clippy::cast_precision_loss,
        reason = "small counters are exact in f64"
    )]
    let value = count as f64;
    value
}

/// One line of the text exposition: `name{label="value",...} number`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

struct Metrics {
    samples: Vec<Sample>,
}

impl Metrics {
    /// Lenient: comments and lines it cannot read are skipped (the test
    /// then fails on the sample it expected, naming it).
    fn parse(body: &str) -> Self {
        let samples = body
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(Self::sample)
            .collect();
        Self { samples }
    }

    fn sample(line: &str) -> Option<Sample> {
        let (series, value) = line.rsplit_once(' ')?;
        let value = value.parse().ok()?;
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        // The lab's label values hold no commas or quotes.
        let labels = labels
            .split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=')?;
                Some((key.to_owned(), value.trim_matches('"').to_owned()))
            })
            .collect::<Option<_>>()?;
        Some(Sample {
            name: name.to_owned(),
            labels,
            value,
        })
    }

    fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The value of the series with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, String)]) -> Option<f64> {
        self.samples(name)
            .find(|sample| {
                sample.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(key, value)| sample.labels.get(*key) == Some(value))
            })
            .map(|sample| sample.value)
    }
}
