//! Bad advertisements from a third host on the segment: with the lab elected
//! (gw1 MASTER, gw2 BACKUP of vhid 1), the client injects adverts that would
//! make gw1 step down if they were accepted (advbase 0 beats gw1's advbase 1),
//! each with one defect. Neither gateway may change state, and each drop must
//! be counted under its own reason, exactly once per packet, on both gateways.
//!
//! The positive control (the same advert, correctly signed, does make gw1
//! step down) runs in its own lab so it cannot disturb the others.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use carp_tests::{
    CLIENT, CarpState, Carpd, GATEWAYS, Lab, Netns, VHIDS, carpctl_bin, output, require_root,
    wait_for,
};
use serde_json::Value;

/// Namespaces of these tests start with this (unique per test file).
const PREFIX: &str = "ctbadadv";
const INJECT: &str = env!("CARGO_BIN_EXE_carp-inject");
/// Packets per defect.
const PACKETS: u32 = 3;
/// carpd answers its control socket well within this after starting.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Election: gw1's master-down timer is 3 x advbase (3 s) after start; the
/// rest is margin for two shared CI cores.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// From sending to the counter showing it: a few milliseconds normally.
const COUNTED_TIMEOUT: Duration = Duration::from_secs(5);
/// A step down on an accepted advert happens as it is processed.
const STEP_DOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// gw1 takes the vhid back after its 3 s master-down timer.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// The lab's vhid 1 on the client's segment.
const VHID: u8 = VHIDS[0].vhid;
const CARP_IF: &str = VHIDS[0].name;
const CARPDEV: &str = VHIDS[0].carpdev;

/// The lab, elected, with what an injected advert needs to be correct.
/// Fields drop in order: carpd first, then the namespaces, then the files.
struct Elected {
    gw1: Carpd,
    gw2: Carpd,
    lab: Lab,
    /// vhid 1's pass and addresses, read from gw1's config.
    pass: String,
    addresses: Vec<String>,
    /// Holds configs, sockets and logs; removed on drop, after carpd.
    _dir: tempfile::TempDir,
}

impl Elected {
    fn start() -> anyhow::Result<Self> {
        require_root()?;
        let lab = Lab::build(PREFIX)?;
        let dir = tempfile::tempdir()?;
        let mut carpds = lab.start_all_carpd(dir.path())?.into_iter();
        let (Some(mut gw1), Some(mut gw2)) = (carpds.next(), carpds.next()) else {
            bail!("the lab has two gateways");
        };
        ensure!(gw1.node() == GATEWAYS[0].name && gw2.node() == GATEWAYS[1].name);
        gw1.wait_ready(READY_TIMEOUT)?;
        gw2.wait_ready(READY_TIMEOUT)?;
        let (pass, addresses) = vhid_secret(gw1.config())?;
        let elected = Self {
            gw1,
            gw2,
            lab,
            pass,
            addresses,
            _dir: dir,
        };
        elected.wait_states(
            ELECTION_TIMEOUT,
            &CarpState::Master,
            &CarpState::Backup,
            "the first election",
        )?;
        Ok(elected)
    }

    /// Sends [`PACKETS`] adverts from the client that beat gw1 if they are
    /// accepted: correctly signed for vhid 1, advbase 0 (1/256 s against
    /// gw1's 1 s), demote 0, TTL 255, to 224.0.0.18. `defect` is appended
    /// and overrides any of these (carp-inject lets a later option win).
    fn inject(&self, defect: &[&str]) -> anyhow::Result<()> {
        let client = self.lab.client()?;
        let mut command = client.command(INJECT);
        command
            .args(["--dev", CLIENT.ifname, "--src", client_address()])
            .args(["--vhid", &VHID.to_string(), "--pass", &self.pass])
            .args(["--addresses", &self.addresses.join(",")])
            .args(["--advbase", "0", "--advskew", "0", "--demote", "0"])
            .args(["--count", &PACKETS.to_string()])
            .args(defect);
        output(&mut command)?;
        Ok(())
    }

    /// Waits until gw1 and gw2 are in the given states for vhid 1.
    fn wait_states(
        &self,
        timeout: Duration,
        gw1: &CarpState,
        gw2: &CarpState,
        what: &str,
    ) -> anyhow::Result<()> {
        let awaited = format!("gw1 {gw1} and gw2 {gw2} of vhid {VHID} ({what})");
        let mut last = String::new();
        let reached = wait_for(timeout, &awaited, || {
            let states = (state(&self.gw1), state(&self.gw2));
            last = format!("{states:?}");
            match states {
                (Ok(one), Ok(two)) if one == *gw1 && two == *gw2 => Some(()),
                _ => None,
            }
        });
        reached.with_context(|| format!("last seen {last}\n{}", self.logs()))
    }

    fn gateway_netns(&self, carpd: &Carpd) -> anyhow::Result<&Netns> {
        Ok(self.lab.gateway(carpd.node())?)
    }

    /// Every drop counter of `carpd`, keyed `"<carp interface or carpdev> <reason>"`.
    fn drops(&self, carpd: &Carpd) -> anyhow::Result<Drops> {
        let netns = self.gateway_netns(carpd)?;
        let mut command = netns.command(carpctl_bin()?);
        command
            .arg("--socket")
            .arg(carpd.socket())
            .args(["status", "--json"]);
        let json: Value = serde_json::from_str(&output(&mut command)?)
            .with_context(|| format!("carpctl status --json on {}", carpd.node()))?;
        Ok(drop_counts(&json))
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for carpd in [&self.gw1, &self.gw2] {
            let _ = write!(
                text,
                "--- {} ({}):\n{}\n",
                carpd.node(),
                carpd.log().display(),
                carpd.log_tail(15)
            );
        }
        text
    }
}

type Drops = BTreeMap<String, u64>;

/// One defect and where carpd must count it.
struct Defect {
    what: &'static str,
    /// The counter key (see [`drop_counts`]) that must grow by [`PACKETS`].
    counter: String,
    /// Options that break the winning advert (see [`Elected::inject`]).
    args: Vec<String>,
}

fn client_address() -> &'static str {
    CLIENT.address.split('/').next().unwrap_or(CLIENT.address)
}

/// vhid 1's `pass` and `addresses` in a lab carpd config.
fn vhid_secret(config: &Path) -> anyhow::Result<(String, Vec<String>)> {
    let text = std::fs::read_to_string(config)?;
    let table: toml::Table = toml::from_str(&text)?;
    let carp = table["carp"]
        .as_array()
        .context("the lab config has [[carp]] tables")?;
    let vhid = carp
        .iter()
        .find(|t| t["vhid"].as_integer() == Some(i64::from(VHID)))
        .with_context(|| format!("vhid {VHID} in {}", config.display()))?;
    let pass = vhid["pass"].as_str().context("pass")?.to_owned();
    let addresses = vhid["addresses"]
        .as_array()
        .context("addresses")?
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    Ok((pass, addresses))
}

fn state(carpd: &Carpd) -> anyhow::Result<CarpState> {
    Ok(vhid_row(carpd)?.state)
}

fn transitions(carpd: &Carpd) -> anyhow::Result<u64> {
    Ok(vhid_row(carpd)?.counters.transitions)
}

fn vhid_row(carpd: &Carpd) -> anyhow::Result<carp_tests::InterfaceStatus> {
    carpd
        .status()?
        .by_vhid(VHID)
        .cloned()
        .with_context(|| format!("{}: no vhid {VHID} in carpctl status", carpd.node()))
}

/// Drops of every carp interface (`interfaces[].counters.drops`) and of
/// every carpdev (`carpdevs[].drops`, those tied to no configured vhid), zero
/// entries left out.
fn drop_counts(status: &Value) -> Drops {
    let mut all = Drops::new();
    let rows = [("interfaces", "/counters/drops"), ("carpdevs", "/drops")];
    for (list, pointer) in rows {
        for row in status[list].as_array().into_iter().flatten() {
            let name = row["name"].as_str().unwrap_or("?");
            let drops = row.pointer(pointer).and_then(Value::as_object);
            for (reason, count) in drops.into_iter().flatten() {
                let count = count.as_u64().unwrap_or(0);
                if count > 0 {
                    all.insert(format!("{name} {reason}"), count);
                }
            }
        }
    }
    all
}

fn defects(elected: &Elected) -> Vec<Defect> {
    let on_vhid = |reason: &str| format!("{CARP_IF} {reason}");
    let mut wrong_pass = format!("not-{}", elected.pass);
    wrong_pass.truncate(19);
    // Source `::`: the kernel picks the client's link-local address.
    let v6 = ["--src", "::", "--dst", "ff02::12"];
    let cases: [(&'static str, String, Vec<&str>); 7] = [
        (
            "a wrong pass",
            on_vhid("badauth"),
            vec!["--pass", &wrong_pass],
        ),
        ("TTL 254", on_vhid("badttl"), vec!["--ttl", "254"]),
        ("a bad checksum", on_vhid("badsum"), vec!["--bad-checksum"]),
        ("CARP version 3", on_vhid("badver"), vec!["--version", "3"]),
        // Not tied to any configured vhid: counted on the carpdev.
        (
            "unknown vhid 99",
            format!("{CARPDEV} badvhid"),
            vec!["--vhid", "99"],
        ),
        (
            "IPv6 hop limit 64",
            on_vhid("badttl"),
            [&v6[..], &["--ttl", "64"]].concat(),
        ),
        (
            "a wrong pass over IPv6",
            on_vhid("badauth"),
            [&v6[..], &["--pass", &wrong_pass]].concat(),
        ),
    ];
    cases
        .into_iter()
        .map(|(what, counter, args)| Defect {
            what,
            counter,
            args: args.into_iter().map(str::to_owned).collect(),
        })
        .collect()
}

#[test]
fn bad_adverts_are_dropped_and_counted_by_reason_without_a_transition() -> anyhow::Result<()> {
    let elected = Elected::start()?;
    for defect in defects(&elected) {
        let before: Vec<(Drops, u64)> = [&elected.gw1, &elected.gw2]
            .into_iter()
            .map(|gw| Ok((elected.drops(gw)?, transitions(gw)?)))
            .collect::<anyhow::Result<_>>()?;

        let args: Vec<&str> = defect.args.iter().map(String::as_str).collect();
        elected.inject(&args)?;

        for (gw, (drops_before, transitions_before)) in
            [&elected.gw1, &elected.gw2].into_iter().zip(before)
        {
            let mut expected = drops_before.clone();
            *expected.entry(defect.counter.clone()).or_insert(0) += u64::from(PACKETS);
            let target = expected[&defect.counter];
            // Awaiting the counter is the bounded observation that nothing
            // happens: XDP counts one verdict per packet, so a counted packet
            // never reached the election; badauth is counted by the agent,
            // which answers carpctl only after it has handled the advert.
            // Either way, the states read after this are final.
            let awaited = format!(
                "{}: {} to reach {target} after {PACKETS} adverts with {}",
                gw.node(),
                defect.counter,
                defect.what
            );
            let mut last = Drops::new();
            let counted = wait_for(COUNTED_TIMEOUT, &awaited, || {
                last = elected.drops(gw).ok()?;
                (last.get(&defect.counter).copied().unwrap_or(0) >= target).then_some(())
            });
            counted.with_context(|| {
                format!(
                    "drops before {drops_before:?}, now {last:?}\n{}",
                    elected.logs()
                )
            })?;
            let after = elected.drops(gw)?;
            assert_eq!(
                after,
                expected,
                "{}: {} must count exactly {PACKETS} under {} and nothing else",
                gw.node(),
                defect.what,
                defect.counter
            );
            eprintln!(
                "{}: {PACKETS} adverts with {}: {} = {target}",
                gw.node(),
                defect.what,
                defect.counter
            );
            assert_eq!(
                transitions(gw)?,
                transitions_before,
                "{}: a transition after adverts with {}\n{}",
                gw.node(),
                defect.what,
                elected.logs()
            );
        }
        assert_eq!(
            state(&elected.gw1)?,
            CarpState::Master,
            "gw1 after {}",
            defect.what
        );
        assert_eq!(
            state(&elected.gw2)?,
            CarpState::Backup,
            "gw2 after {}",
            defect.what
        );
    }
    Ok(())
}

/// The control for the test above: the same advert, correctly signed, is
/// accepted and makes gw1 step down, so the injector's adverts do reach
/// carpd and would win if nothing dropped them.
#[test]
fn a_correctly_signed_better_advert_makes_the_master_step_down() -> anyhow::Result<()> {
    let elected = Elected::start()?;
    let drops_before = elected.drops(&elected.gw1)?;
    let transitions_before = transitions(&elected.gw1)?;

    elected.inject(&[])?;

    elected.wait_states(
        STEP_DOWN_TIMEOUT,
        &CarpState::Backup,
        &CarpState::Backup,
        "gw1 steps down for the injected advert",
    )?;
    assert_eq!(
        elected.drops(&elected.gw1)?,
        drops_before,
        "a correctly signed advert must not be dropped"
    );
    assert_eq!(
        transitions(&elected.gw1)?,
        transitions_before + 1,
        "MASTER -> BACKUP counts one transition"
    );
    // The injector is silent after its packets: gw1's master-down timer
    // (shorter than gw2's) expires and it takes the vhid back.
    elected.wait_states(
        RECOVERY_TIMEOUT,
        &CarpState::Master,
        &CarpState::Backup,
        "gw1 takes vhid 1 back once the injector is silent",
    )?;
    Ok(())
}
