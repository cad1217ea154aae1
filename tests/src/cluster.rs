//! The lab with carpd running on both gateways, and what the election
//! scenarios ask of it: await roles, time a takeover, restart a node, look
//! at its carp interfaces and scrape its metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::carpd::Carpd;
use crate::carpd_log::{LoggedTransition, transitions};
use crate::error::{Error, Result};
use crate::lab::{CarpdOptions, GATEWAYS, Gateway, Lab, VHIDS, metrics_address};
use crate::netns::Netns;
use crate::process::Signal;
use crate::status::{CarpState, Status};
use crate::wait::wait_for;

/// carpd loads its XDP program, creates the carp interfaces and binds its
/// sockets in well under a second; this covers a loaded two-core CI box.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of each carpd log quoted when a wait fails.
const LOG_LINES: usize = 15;
/// A new MASTER advertises at once, announces its VIPs (gratuitous ARP,
/// unsolicited NA) and announces them again with its second advertisement
/// after that (OpenBSD's `sc_delayed_arp`): after this many, it is quiet.
const ADVERTS_UNTIL_ANNOUNCED: u64 = 3;
/// A scrape is answered at once; this only keeps a hung one from hanging the test.
const SCRAPE_TIMEOUT_SECS: &str = "10";

/// carpd on both lab gateways. Field order matters: the daemons drop
/// (are killed) before the run directory and the namespaces go.
pub struct Cluster {
    daemons: Vec<(&'static Gateway, Carpd)>,
    run_dir: RunDir,
    lab: Lab,
}

impl Cluster {
    /// Builds a lab in namespaces `<prefix>-...`, then starts carpd on gw1
    /// and, once gw1 answers, on gw2. Starting in that order makes the first
    /// election deterministic: gw1's master-down timer runs first and is
    /// the shorter one, so gw2 never becomes MASTER on the way.
    pub fn start(prefix: &str, options: &CarpdOptions) -> Result<Self> {
        Self::start_each(prefix, &[("gw1", options), ("gw2", options)])
    }

    /// Builds a lab and starts carpd on the named gateways, in this order,
    /// each with its own options and once the one before answers. A gateway
    /// left out runs no carpd until [`Cluster::add`].
    pub fn start_each(prefix: &str, daemons: &[(&str, &CarpdOptions)]) -> Result<Self> {
        let lab = Lab::build(prefix)?;
        let run_dir = RunDir::create(lab.topology().stem())?;
        let mut cluster = Self {
            daemons: Vec::new(),
            run_dir,
            lab,
        };
        for (name, options) in daemons {
            cluster.add(name, options)?;
        }
        Ok(cluster)
    }

    /// Starts carpd on gateway `name`, which runs none yet, and waits until
    /// it answers.
    pub fn add(&mut self, name: &str, options: &CarpdOptions) -> Result<()> {
        let gateway = gateway(name)?;
        if self.daemons.iter().any(|(running, _)| running.name == name) {
            return Err(Error::Topology(format!(
                "{name} already has a carpd: restart it instead"
            )));
        }
        let mut carpd = self
            .lab
            .start_carpd_with(gateway, self.run_dir.path(), options)?;
        carpd.wait_ready(READY_TIMEOUT)?;
        self.daemons.push((gateway, carpd));
        Ok(())
    }

    /// Where the configs, control sockets and logs are: a scratch directory
    /// for the scenario's own files too (removed with the cluster).
    pub fn run_dir(&self) -> &Path {
        self.run_dir.path()
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The namespace of gateway `name`.
    pub fn netns(&self, name: &str) -> Result<&Netns> {
        self.lab.gateway(name)
    }

    pub fn carpd(&mut self, name: &str) -> Result<&mut Carpd> {
        self.daemons
            .iter_mut()
            .find(|(gateway, _)| gateway.name == name)
            .map(|(_, carpd)| carpd)
            .ok_or_else(|| Error::Topology(format!("no carpd on {name}")))
    }

    fn daemon(&self, name: &str) -> Result<&Carpd> {
        self.daemons
            .iter()
            .find(|(gateway, _)| gateway.name == name)
            .map(|(_, carpd)| carpd)
            .ok_or_else(|| Error::Topology(format!("no carpd on {name}")))
    }

    /// `carpctl status` of gateway `name`'s carpd.
    pub fn status(&self, name: &str) -> Result<Status> {
        self.daemon(name)?.status()
    }

    /// `carpctl <args>` against gateway `name`'s carpd: its stdout, or an
    /// error quoting what carpctl printed when it failed.
    pub fn carpctl(&self, name: &str, args: &[&str]) -> Result<String> {
        self.daemon(name)?.carpctl(args)
    }

    /// Every state transition gateway `name`'s carpd has logged (all of its
    /// runs on this cluster), with the time it logged it.
    pub fn transitions(&self, name: &str) -> Result<Vec<LoggedTransition>> {
        Ok(transitions(&self.daemon(name)?.log_text()))
    }

    /// Gateway `name`'s whole carpd log.
    pub fn log_text(&self, name: &str) -> Result<String> {
        Ok(self.daemon(name)?.log_text())
    }

    /// Sends `sig` to gateway `name`'s carpd; returns when it was sent, the
    /// start of any takeover the test times.
    pub fn signal(&mut self, name: &str, sig: Signal) -> Result<Instant> {
        self.carpd(name)?.kill(sig)?;
        Ok(Instant::now())
    }

    /// Waits for gateway `name`'s carpd to exit and reaps it.
    pub fn wait_exit(&mut self, name: &str, timeout: Duration) -> Result<ExitStatus> {
        self.carpd(name)?.process().wait_exit(timeout)
    }

    /// Starts carpd on gateway `name` again (its earlier one must have
    /// exited), with `options`, and waits until it answers. Its log goes on
    /// in the same file.
    pub fn restart(&mut self, name: &str, options: &CarpdOptions) -> Result<()> {
        let position = self
            .daemons
            .iter()
            .position(|(gateway, _)| gateway.name == name)
            .ok_or_else(|| Error::Topology(format!("no carpd on {name}")))?;
        let gateway = self.daemons[position].0;
        if self.daemons[position].1.process().is_running() {
            return Err(Error::Topology(format!(
                "carpd on {name} still runs: stop it before a restart"
            )));
        }
        let mut carpd = self
            .lab
            .start_carpd_with(gateway, self.run_dir.path(), options)?;
        carpd.wait_ready(READY_TIMEOUT)?;
        self.daemons[position].1 = carpd;
        Ok(())
    }

    /// Waits until `done` holds for gateway `name`'s status; on timeout the
    /// error says `what` and shows every node's states and log tail.
    pub fn wait_status(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&Status) -> bool,
    ) -> Result<Status> {
        let reached = wait_for(timeout, &format!("{name}: {what}"), || {
            self.status(name).ok().filter(|status| done(status))
        });
        self.with_report(reached)
    }

    /// Waits until every vhid of each named gateway is in the state given
    /// for it; on timeout the error shows the states last seen and the logs.
    pub fn wait_roles(&self, roles: &[(&str, CarpState)], timeout: Duration) -> Result<()> {
        let wanted = roles
            .iter()
            .map(|(name, state)| format!("{name} {state}"))
            .collect::<Vec<_>>()
            .join(", ");
        let reached = wait_for(timeout, &format!("every vhid: {wanted}"), || {
            roles
                .iter()
                .all(|(name, state)| self.all_vhids_in(name, state))
                .then_some(())
        });
        self.with_report(reached)
    }

    /// Waits until `master` is MASTER and `backup` BACKUP of every vhid, and
    /// `master` has sent both of its takeover announcements: from then on a
    /// gratuitous ARP or unsolicited NA on the wire belongs to a new takeover.
    pub fn wait_steady(&self, master: &str, backup: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        self.wait_roles(
            &[(master, CarpState::Master), (backup, CarpState::Backup)],
            timeout,
        )?;
        let announced = wait_for(
            deadline.saturating_duration_since(Instant::now()),
            &format!("{master} to send {ADVERTS_UNTIL_ANNOUNCED} adverts on every vhid"),
            || {
                let status = self.status(master).ok()?;
                VHIDS
                    .iter()
                    .all(|vhid| {
                        status.by_vhid(vhid.vhid).is_some_and(|iface| {
                            iface.counters.adverts_sent >= ADVERTS_UNTIL_ANNOUNCED
                        })
                    })
                    .then_some(())
            },
        );
        self.with_report(announced)
    }

    /// Polls gateway `name` until it is MASTER of every lab vhid and returns,
    /// per vhid, how long after `since` it was first seen MASTER. Seen, not
    /// happened: the polling adds up to a few tens of milliseconds.
    pub fn takeover_times(
        &self,
        name: &str,
        since: Instant,
        timeout: Duration,
    ) -> Result<BTreeMap<u8, Duration>> {
        let mut seen = BTreeMap::new();
        let done = wait_for(
            timeout,
            &format!("{name} to become MASTER of every vhid"),
            || {
                if let Ok(status) = self.status(name) {
                    let elapsed = since.elapsed();
                    for iface in &status.interfaces {
                        if iface.state == CarpState::Master {
                            seen.entry(iface.vhid).or_insert(elapsed);
                        }
                    }
                }
                VHIDS
                    .iter()
                    .all(|vhid| seen.contains_key(&vhid.vhid))
                    .then_some(())
            },
        );
        self.with_report(done)?;
        Ok(seen)
    }

    /// Whether gateway `name`'s carpd says every lab vhid is in `state`.
    pub fn all_vhids_in(&self, name: &str, state: &CarpState) -> bool {
        self.status(name).is_ok_and(|status| {
            VHIDS.iter().all(|vhid| {
                status
                    .by_vhid(vhid.vhid)
                    .is_some_and(|iface| iface.state == *state)
            })
        })
    }

    /// `GET /metrics` from carpd on gateway `name`, asked from inside its
    /// namespace (it listens on the sync address): the whole HTTP response.
    pub fn scrape_metrics(&self, name: &str) -> Result<String> {
        let gateway = gateway(name)?;
        let (address, port) = metrics_address(gateway);
        let port = port.to_string();
        self.netns(name)?.run([
            "timeout",
            SCRAPE_TIMEOUT_SECS,
            "bash",
            "-c",
            r#"exec 3<>"/dev/tcp/$1/$2" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3"#,
            "scrape",
            address,
            &port,
        ])
    }

    /// Interface `ifname` in gateway `name`'s namespace, or `None` if it
    /// does not exist.
    pub fn link(&self, name: &str, ifname: &str) -> Result<Option<LinkState>> {
        let netns = self.netns(name)?;
        match netns.ip(["-j", "addr", "show", "dev", ifname]) {
            Ok(json) => LinkState::parse(&json, ifname).map(Some),
            Err(Error::Command { output, .. }) if output.contains("does not exist") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Every carpd's vhid states and the end of every log, for failures.
    pub fn report(&self) -> String {
        let mut text = String::new();
        for (gateway, carpd) in &self.daemons {
            let states = match carpd.status() {
                Ok(status) => {
                    let mut line = status
                        .interfaces
                        .iter()
                        .map(|iface| format!("{} vhid {} {}", iface.name, iface.vhid, iface.state))
                        .collect::<Vec<_>>()
                        .join(", ");
                    // Who demotes what, when anything does.
                    for group in status.groups.iter().filter(|group| group.demote > 0) {
                        let _ = write!(line, "; group {}", group.describe());
                    }
                    line
                }
                Err(error) => format!("no status ({error})"),
            };
            let _ = write!(
                text,
                "\n{}: {states}\n--- last lines of {} ---\n{}",
                gateway.name,
                carpd.log().display(),
                carpd.log_tail(LOG_LINES)
            );
        }
        text
    }

    /// A timeout's message with [`Cluster::report`] appended.
    pub fn with_report<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|error| match error {
            Error::Timeout { what, after } => Error::Timeout {
                what: format!("{what}{}", self.report()),
                after,
            },
            other => other,
        })
    }
}

/// The lab gateway called `name`.
pub fn gateway(name: &str) -> Result<&'static Gateway> {
    GATEWAYS
        .iter()
        .find(|gateway| gateway.name == name)
        .ok_or_else(|| Error::Topology(format!("no gateway {name}")))
}

/// What `ip -j addr show dev <ifname>` says about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub ifindex: u32,
    /// Administratively up (the `UP` flag).
    pub up: bool,
    pub mac: String,
    /// `address/prefix` of every address on it.
    pub addresses: Vec<String>,
}

#[derive(Deserialize)]
struct IpAddrJson {
    ifindex: u32,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    address: String,
    #[serde(default)]
    addr_info: Vec<AddrInfoJson>,
}

#[derive(Deserialize)]
struct AddrInfoJson {
    local: String,
    prefixlen: u8,
}

impl LinkState {
    fn parse(json: &str, ifname: &str) -> Result<Self> {
        let links: Vec<IpAddrJson> = serde_json::from_str(json).map_err(|source| Error::Io {
            what: format!("parse `ip -j addr show dev {ifname}`"),
            source: source.into(),
        })?;
        let link = links
            .into_iter()
            .next()
            .ok_or_else(|| Error::Topology(format!("{ifname}: `ip -j addr` listed nothing")))?;
        Ok(Self {
            ifindex: link.ifindex,
            up: link.flags.iter().any(|flag| flag == "UP"),
            mac: link.address,
            addresses: link
                .addr_info
                .iter()
                .map(|addr| format!("{}/{}", addr.local, addr.prefixlen))
                .collect(),
        })
    }
}

/// Configs, control sockets and logs of one cluster: removed when it drops,
/// kept (and named on stderr) when it drops during a panic, so a failed
/// assertion leaves the carpd logs to read.
struct RunDir {
    path: PathBuf,
}

impl RunDir {
    fn create(stem: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("carp-tests-{stem}"));
        fs::create_dir_all(&path).map_err(|source| Error::Io {
            what: format!("create {}", path.display()),
            source,
        })?;
        Ok(Self { path })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "carp-tests: carpd configs and logs kept in {}",
                self.path.display()
            );
        } else if let Err(error) = fs::remove_dir_all(&self.path) {
            eprintln!("carp-tests: remove {}: {error}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_state_reads_ip_json() -> anyhow::Result<()> {
        let json = r#"[{"ifindex":7,"link":"eth-out","ifname":"carp0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"address":"00:00:5e:00:01:01","addr_info":[{"family":"inet","local":"10.0.1.1","prefixlen":24},{"family":"inet6","local":"fd00:1::1","prefixlen":64}]}]"#;
        let link = LinkState::parse(json, "carp0")?;
        assert_eq!(link.ifindex, 7);
        assert!(link.up);
        assert_eq!(link.mac, "00:00:5e:00:01:01");
        assert_eq!(link.addresses, ["10.0.1.1/24", "fd00:1::1/64"]);
        let down = LinkState::parse(
            r#"[{"ifindex":7,"flags":["BROADCAST","MULTICAST","M-DOWN"],"address":"00:00:5e:00:01:01","addr_info":[]}]"#,
            "carp0",
        )?;
        assert!(!down.up);
        Ok(())
    }

    #[test]
    fn gateways_are_found_by_name() {
        assert_eq!(gateway("gw2").map(|gw| gw.advskew).ok(), Some(100));
        assert!(gateway("gw3").is_err());
    }
}
