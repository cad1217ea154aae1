//! The state-sync daemons under test, configured alike: unicast UDP on a
//! dedicated sync link, socket buffers of the same size, everything
//! replicated but the sync link's own traffic. What is timed is always the
//! same: until the entries are in B's kernel table, where a takeover needs
//! them.
//!
//! - carpd: its `[sync]` table; received state is installed at once. Node
//!   B asks for a bulk at its start, as it always does. Node A's
//!   `bulk_timeout` is 1 s: its own start-up request (to a B that is not
//!   there yet) is given up before B starts, as on a gateway that has been
//!   up for a while.
//! - conntrackd in FTFW mode (the reliable one: sequence numbers,
//!   ACK/NACK, retransmission), resync asked for the way an operator does,
//!   `conntrackd -n` once B's daemon answers on its socket, in both of the
//!   ways it can keep the peer's state:
//!   - `conntrackd-inject`: `DisableExternalCache On`, every entry injected
//!     into B's kernel table as it arrives, as carpd does. The only mode in
//!     which an update reaches B's kernel by itself: the latency figures
//!     are this mode's.
//!   - `conntrackd-commit`: the default external cache, which conntrackd's
//!     documentation recommends: B keeps the entries in user space and an
//!     operator's (or a failover script's) `conntrackd -c` writes them into
//!     the kernel. Timed until the commit is done: B's cache is polled
//!     (`conntrackd -s`) and committed as soon as it holds every entry.
//!
//! conntrackd has no authentication (only a checksum); carpd signs every
//! datagram with HMAC-SHA256.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use carp_tests::{Carpd, Netns, Process, Status, wait_for};

/// The sync protocol's UDP port, for both daemons (neither default).
pub const SYNC_PORT: u16 = 8025;
/// carpd's sync socket buffers (`sync::service::transport`): conntrackd's
/// are set to the same.
pub const SOCKET_BUFFER: u64 = 4 << 20;
/// carpd's conntrack event queue (`DEFAULT_EVENT_BUFFER`): conntrackd's
/// netlink buffer starts there.
pub const EVENT_BUFFER: u64 = 32 << 20;
/// How often `conntrackd -n` is tried while B's daemon starts.
const RESYNC_RETRY: Duration = Duration::from_millis(2);
/// carpd answers on its control socket, conntrackd on its own, within this.
pub const READY_TIMEOUT: Duration = Duration::from_mins(1);
const VHID: u8 = 1;
const VIP: &str = "10.0.9.1/24";
const PASS: &str = "bench-sync";
/// At least 16 bytes (HMAC-SHA256 key).
const SYNC_KEY: &[u8] = b"cargo xtask bench sync: 32 bytes";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Implementation {
    Carpd,
    /// conntrackd, `DisableExternalCache On`.
    ConntrackdInject,
    /// conntrackd with its external cache, committed with `-c`.
    ConntrackdCommit,
}

impl Implementation {
    pub const ALL: [Self; 3] = [Self::Carpd, Self::ConntrackdInject, Self::ConntrackdCommit];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Carpd => "carpd",
            Self::ConntrackdInject => "conntrackd-inject",
            Self::ConntrackdCommit => "conntrackd-commit",
        }
    }

    pub const fn is_conntrackd(self) -> bool {
        matches!(self, Self::ConntrackdInject | Self::ConntrackdCommit)
    }

    /// Whether an update reaches B's kernel table by itself, so that its
    /// latency can be measured.
    pub const fn installs_updates(self) -> bool {
        matches!(self, Self::Carpd | Self::ConntrackdInject)
    }

    /// One line on how it is set up, for the table's header.
    pub const fn setup(self) -> &'static str {
        match self {
            Self::Carpd => {
                "[sync] over unicast UDP, HMAC-SHA256, entries installed as they arrive; B asks for a bulk at its start"
            }
            Self::ConntrackdInject => {
                "FTFW over unicast UDP, DisableExternalCache On (entries injected into B's kernel as they arrive); `conntrackd -n` on B as soon as it answers"
            }
            Self::ConntrackdCommit => {
                "FTFW over unicast UDP, external cache (the default); `conntrackd -n` on B as soon as it answers, `conntrackd -c` as soon as B's cache holds every entry; timed until the commit is in B's kernel"
            }
        }
    }
}

impl fmt::Display for Implementation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// One gateway: A holds the table, B receives it.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub name: &'static str,
    /// Its address on the sync link, with the prefix length.
    pub sync: &'static str,
    /// Its address on carpd's carpdev (the election is not measured).
    pub lan: &'static str,
    pub advskew: u8,
    /// carpd's `bulk_timeout`, seconds.
    pub bulk_timeout: u64,
}

/// Where a daemon runs and keeps its files.
pub struct Place<'a> {
    pub netns: &'a Netns,
    pub node: Node,
    pub peer: Node,
    pub dir: &'a Path,
    /// File name prefix for this run (`carpd-100000-1`).
    pub tag: &'a str,
    /// The most entries a table holds in the run (conntrackd's cache size).
    pub entries: u64,
}

impl Place<'_> {
    fn file(&self, suffix: &str) -> PathBuf {
        self.dir
            .join(format!("{}-{}.{suffix}", self.tag, self.node.name))
    }
}

enum Running {
    Carpd(Box<Carpd>),
    Conntrackd {
        process: Process,
        config: PathBuf,
        netns: String,
    },
}

/// A daemon under test; killed when dropped.
pub struct Daemon {
    running: Running,
    log: PathBuf,
    label: String,
}

impl Daemon {
    pub fn start(implementation: Implementation, place: &Place) -> Result<Self> {
        let log = place.file("log");
        let label = format!("{implementation} on {}", place.node.name);
        let running = match implementation {
            Implementation::Carpd => {
                let key = place.dir.join("sync.key");
                if !key.is_file() {
                    write(&key, SYNC_KEY)?;
                    fs::set_permissions(&key, fs::Permissions::from_mode(0o600))
                        .with_context(|| format!("cannot chmod 600 {}", key.display()))?;
                }
                let config = place.file("toml");
                let socket = place.file("sock");
                write(
                    &config,
                    carpd_config(place.node, place.peer, &socket, &key).as_bytes(),
                )?;
                Running::Carpd(Box::new(Carpd::start(
                    place.netns,
                    place.node.name,
                    &config,
                    &socket,
                    &log,
                    false,
                )?))
            }
            Implementation::ConntrackdInject | Implementation::ConntrackdCommit => {
                let config = place.file("conf");
                let files = ConntrackdFiles {
                    log: log.clone(),
                    lock: place.file("lock"),
                    socket: place.file("ctl"),
                };
                write(
                    &config,
                    conntrackd_config(
                        place.node,
                        place.peer,
                        &files,
                        place.entries,
                        implementation == Implementation::ConntrackdInject,
                    )
                    .as_bytes(),
                )?;
                let program = find_program("conntrackd")?;
                let args = [
                    program.into_os_string(),
                    "-C".into(),
                    config.clone().into_os_string(),
                ];
                // Its own log file is the config's; stderr goes next to it.
                let process = place.netns.spawn(args, Some(&place.file("stderr")))?;
                Running::Conntrackd {
                    process,
                    config,
                    netns: place.netns.name().to_owned(),
                }
            }
        };
        Ok(Self {
            running,
            log,
            label,
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Waits until the daemon answers on its control socket.
    pub fn ready(&mut self) -> Result<()> {
        match &mut self.running {
            Running::Carpd(carpd) => carpd.wait_ready(READY_TIMEOUT).map(drop)?,
            Running::Conntrackd { .. } => {
                wait_for(
                    READY_TIMEOUT,
                    &format!("{} to answer", self.label),
                    || match self.ensure_running() {
                        Err(error) => Some(Err(error)),
                        Ok(()) => self.conntrackd(&["-s"]).ok().map(|_| Ok(())),
                    },
                )??;
            }
        }
        Ok(())
    }

    /// conntrackd: `conntrackd -n` (ask the peer for its table) as soon as
    /// the daemon takes it, tried every few milliseconds from its start so
    /// that conntrackd loses no more time than carpd, which asks by itself.
    pub fn request_resync(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.ensure_running()?;
            match self.conntrackd(&["-n"]) {
                Ok(_) => return Ok(()),
                Err(error) if Instant::now() >= deadline => {
                    return Err(error.context(format!(
                        "{} did not take `conntrackd -n` within {}s",
                        self.label,
                        READY_TIMEOUT.as_secs()
                    )));
                }
                Err(_) => thread::sleep(RESYNC_RETRY),
            }
        }
    }

    /// carpd's status (`carpctl status --json`); `None` for conntrackd.
    pub fn carpd_status(&self) -> Result<Option<Status>> {
        match &self.running {
            Running::Carpd(carpd) => Ok(Some(carpd.status()?)),
            Running::Conntrackd { .. } => Ok(None),
        }
    }

    /// What the daemon says about itself: `carpctl status --json`,
    /// `conntrackd -s`.
    pub fn stats(&self) -> Result<String> {
        match &self.running {
            Running::Carpd(carpd) => Ok(carpd.carpctl(["status", "--json"])?),
            Running::Conntrackd { .. } => self.conntrackd(&["-s"]),
        }
    }

    /// Starts `conntrackd -c` (commit the external cache into the kernel)
    /// against this daemon; its output goes next to the daemon's log.
    pub fn start_commit(&self) -> Result<Process> {
        let Running::Conntrackd { config, netns, .. } = &self.running else {
            bail!("{} is not conntrackd", self.label);
        };
        let output = self.log.with_extension("commit");
        let file = fs::File::create(&output)
            .with_context(|| format!("cannot create {}", output.display()))?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", netns])
            .arg(find_program("conntrackd")?)
            .arg("-C")
            .arg(config)
            .arg("-c")
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        Ok(Process::spawn(
            format!("conntrackd -c on {}", self.label),
            &mut command,
        )?)
    }

    /// conntrackd's client mode against this daemon (`-n`, `-s`, ...).
    pub fn conntrackd(&self, args: &[&str]) -> Result<String> {
        let Running::Conntrackd { config, netns, .. } = &self.running else {
            bail!("{} is not conntrackd", self.label);
        };
        let program = find_program("conntrackd")?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", netns])
            .arg(program)
            .arg("-C")
            .arg(config)
            .args(args);
        Ok(carp_tests::output(&mut command)?)
    }

    pub fn ensure_running(&mut self) -> Result<()> {
        let exited = match &mut self.running {
            Running::Carpd(carpd) => carpd.ensure_running().err(),
            Running::Conntrackd { process, .. } => process.ensure_running().err(),
        };
        match exited {
            None => Ok(()),
            Some(error) => Err(anyhow::Error::from(error).context(format!(
                "last lines of {}:\n{}",
                self.log.display(),
                self.log_tail(15)
            ))),
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// carpd's config: one vhid (carpd needs one; the election is not measured)
/// and the `[sync]` table.
pub fn carpd_config(node: Node, peer: Node, socket: &Path, key: &Path) -> String {
    let quoted = |text: &str| serde_json::Value::from(text).to_string();
    format!(
        "preempt = false\ncontrol_socket = {}\n\n[sync]\nsyncdev = \"eth-sync\"\nsyncpeer = {}\nport = {SYNC_PORT}\nkey_file = {}\nbulk_timeout = {}\n\n[[carp]]\nname = \"carp0\"\ncarpdev = \"eth0\"\nvhid = {VHID}\npass = {}\nadvbase = 1\nadvskew = {}\naddresses = [{}]\n",
        quoted(&socket.to_string_lossy()),
        quoted(address(peer.sync)),
        quoted(&key.to_string_lossy()),
        node.bulk_timeout,
        quoted(PASS),
        node.advskew,
        quoted(VIP),
    )
}

/// The files a conntrackd instance keeps: two run on one host.
pub struct ConntrackdFiles {
    pub log: PathBuf,
    pub lock: PathBuf,
    pub socket: PathBuf,
}

/// conntrackd.conf for `node`: FTFW, the external cache disabled when
/// `inject`, unicast UDP to the peer, caches sized for `entries`.
pub fn conntrackd_config(
    node: Node,
    peer: Node,
    files: &ConntrackdFiles,
    entries: u64,
    inject: bool,
) -> String {
    // "HashLimit: it should be double of nf_conntrack_max" (the example
    // config): dead entries wait in the cache for retransmission.
    let hash_limit = (entries + entries / 2 + 10_000).saturating_mul(2);
    let hash_size = entries.max(8192).next_power_of_two();
    format!(
        "Sync {{
\tMode FTFW {{
\t\tDisableExternalCache {external}
\t}}
\tUDP {{
\t\tIPv4_address {local}
\t\tIPv4_Destination_Address {peer}
\t\tPort {SYNC_PORT}
\t\tInterface eth-sync
\t\tSndSocketBuffer {SOCKET_BUFFER}
\t\tRcvSocketBuffer {SOCKET_BUFFER}
\t\tChecksum on
\t}}
}}
General {{
\tSystemd off
\tHashSize {hash_size}
\tHashLimit {hash_limit}
\tLogFile {log}
\tSyslog off
\tLockFile {lock}
\tUNIX {{
\t\tPath {socket}
\t}}
\tNetlinkBufferSize {EVENT_BUFFER}
\tNetlinkBufferSizeMaxGrowth {max_growth}
\tFilter From Userspace {{
\t\tAddress Ignore {{
\t\t\tIPv4_address 127.0.0.1
\t\t\tIPv4_address {local}
\t\t\tIPv4_address {peer}
\t\t}}
\t}}
}}
",
        local = address(node.sync),
        peer = address(peer.sync),
        log = files.log.display(),
        lock = files.lock.display(),
        socket = files.socket.display(),
        max_growth = EVENT_BUFFER * 2,
        external = if inject { "On" } else { "Off" },
    )
}

/// "current active connections" of cache `name` (`internal`, `external`)
/// in `conntrackd -s` output.
pub fn cache_entries(stats: &str, name: &str) -> Option<u64> {
    let (_, rest) = stats.split_once(&format!("cache {name}:"))?;
    let (_, rest) = rest.split_once("current active connections:")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// `10.0.3.2` of `10.0.3.2/24`.
pub fn address(with_prefix: &str) -> &str {
    with_prefix.split('/').next().unwrap_or(with_prefix)
}

/// `program` from PATH or the sbin directories a non-login root shell may lack.
pub fn find_program(program: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!("{program} is not installed: run `cargo xtask setup` as root to install it")
        })
}

fn write(path: &Path, contents: &[u8]) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Node = Node {
        name: "gwa",
        sync: "10.0.3.2/24",
        lan: "10.0.9.2/24",
        advskew: 0,
        bulk_timeout: 1,
    };
    const B: Node = Node {
        name: "gwb",
        sync: "10.0.3.3/24",
        lan: "10.0.9.3/24",
        advskew: 100,
        bulk_timeout: 600,
    };

    #[test]
    fn carpd_syncs_with_its_peer_on_the_sync_link() {
        let text = carpd_config(
            B,
            A,
            Path::new("/tmp/b/gwb.sock"),
            Path::new("/tmp/b/sync.key"),
        );
        for expected in [
            "control_socket = \"/tmp/b/gwb.sock\"\n",
            "[sync]\nsyncdev = \"eth-sync\"\nsyncpeer = \"10.0.3.2\"\n",
            "key_file = \"/tmp/b/sync.key\"\nbulk_timeout = 600\n",
            "[[carp]]\nname = \"carp0\"\ncarpdev = \"eth0\"\n",
            "advskew = 100\n",
        ] {
            assert!(text.contains(expected), "{expected:?} in {text}");
        }
        // Top-level keys come before the first table.
        assert!(text.find("control_socket") < text.find("[sync]"));
    }

    #[test]
    fn conntrackd_injects_directly_and_talks_to_its_peer() {
        let files = ConntrackdFiles {
            log: "/tmp/b/a.log".into(),
            lock: "/tmp/b/a.lock".into(),
            socket: "/tmp/b/a.ctl".into(),
        };
        let text = conntrackd_config(A, B, &files, 1_000_000, true);
        for expected in [
            "Mode FTFW {\n\t\tDisableExternalCache On\n",
            "IPv4_address 10.0.3.2\n",
            "IPv4_Destination_Address 10.0.3.3\n",
            "Interface eth-sync\n",
            "SndSocketBuffer 4194304\n",
            "HashSize 1048576\n",
            "HashLimit 3020000\n",
            "LockFile /tmp/b/a.lock\n",
            "Path /tmp/b/a.ctl\n",
            "NetlinkBufferSize 33554432\n",
        ] {
            assert!(text.contains(expected), "{expected:?} in {text}");
        }
        assert_eq!(text.matches('{').count(), text.matches('}').count());
        let cached = conntrackd_config(A, B, &files, 1_000_000, false);
        assert!(cached.contains("DisableExternalCache Off\n"), "{cached}");
    }

    #[test]
    fn reads_the_cache_sizes_of_conntrackd_s() {
        let text = "cache internal:\ncurrent active connections:\t       26316\n\
                    connections created:\t\t       26316\tfailed:\t           0\n\n\
                    cache external:\ncurrent active connections:\t     1000000\n\
                    connections created:\t\t     1000000\tfailed:\t           0\n";
        assert_eq!(cache_entries(text, "external"), Some(1_000_000));
        assert_eq!(cache_entries(text, "internal"), Some(26_316));
        assert_eq!(cache_entries(text, "other"), None);
    }
}
