//! The three failover daemons under test and their equivalent settings:
//! CARP advbase/advskew for carpd and ucarp, VRRP `advert_int`/priority for
//! keepalived. Pure: config texts, command lines and protocol timers.

use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Shared by every node of a run.
pub const VHID: u8 = 1;
pub const PASS: &str = "bench-secret";
pub const IFNAME: &str = "eth0";
pub const PREFIX_LEN: u8 = 24;
/// Nanoseconds in 1/256 s (CARP's advskew unit).
const SKEW_NANOS: u64 = 3_906_250;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Implementation {
    Carpd,
    Ucarp,
    Keepalived,
}

impl Implementation {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Carpd => "carpd",
            Self::Ucarp => "ucarp",
            Self::Keepalived => "keepalived",
        }
    }

    /// tcpdump decodes IP protocol 112 as VRRP unless told it is CARP.
    pub const fn speaks_carp(self) -> bool {
        matches!(self, Self::Carpd | Self::Ucarp)
    }
}

impl fmt::Display for Implementation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// `Normal`: advbase 1 / `advert_int` 1 for all three. `Fast`: carpd at
/// advbase 0 against keepalived `VRRPv3` at its smallest `advert_int`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Fast,
}

impl Mode {
    pub const fn implementations(self) -> &'static [Implementation] {
        match self {
            Self::Normal => &[
                Implementation::Carpd,
                Implementation::Ucarp,
                Implementation::Keepalived,
            ],
            // ucarp's advbase is whole seconds (it polls with advbase-sized
            // timeouts), so it has no sub-second mode to compare.
            Self::Fast => &[Implementation::Carpd, Implementation::Keepalived],
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Fast => "fast",
        }
    }
}

/// Which side of the pair a node is on: the master wins the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rank {
    Master,
    Backup,
}

/// CARP timers of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carp {
    pub advbase: u8,
    pub advskew: u8,
}

impl Carp {
    pub const fn of(mode: Mode, rank: Rank) -> Self {
        match (mode, rank) {
            (Mode::Normal, Rank::Master) => Self {
                advbase: 1,
                advskew: 0,
            },
            (Mode::Normal, Rank::Backup) => Self {
                advbase: 1,
                advskew: 100,
            },
            // advbase 0: the interval is advskew/256 s alone (0/0 would be
            // 1/256 s too, but then both nodes would tie).
            (Mode::Fast, Rank::Master) => Self {
                advbase: 0,
                advskew: 1,
            },
            (Mode::Fast, Rank::Backup) => Self {
                advbase: 0,
                advskew: 2,
            },
        }
    }

    /// advbase + advskew/256 s, exact (1/256 s for 0/0, as carp(4)).
    pub fn interval(self) -> Duration {
        if self.advbase == 0 && self.advskew == 0 {
            return Duration::from_nanos(SKEW_NANOS);
        }
        Duration::from_secs(u64::from(self.advbase))
            + Duration::from_nanos(u64::from(self.advskew) * SKEW_NANOS)
    }

    /// carpd's (and the project's) master-down time: three intervals.
    pub fn master_down(self) -> Duration {
        self.interval() * 3
    }

    /// ucarp's master-down time: 3 x advbase + advskew/256 (its `carp_setrun`,
    /// as OpenBSD's).
    pub fn ucarp_master_down(self) -> Duration {
        Duration::from_secs(3 * u64::from(self.advbase))
            + Duration::from_nanos(u64::from(self.advskew) * SKEW_NANOS)
    }
}

/// VRRP timers of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vrrp {
    pub version: u8,
    /// Centiseconds: what `VRRPv3` carries on the wire (RFC 5798).
    pub advert_int_cs: u16,
    pub priority: u8,
}

impl Vrrp {
    pub const fn of(mode: Mode, rank: Rank) -> Self {
        let priority = match rank {
            Rank::Master => 200,
            Rank::Backup => 100,
        };
        match mode {
            Mode::Normal => Self {
                version: 2,
                advert_int_cs: 100,
                priority,
            },
            // One centisecond is the smallest interval VRRPv3 can carry, and
            // keepalived 2.2.7 accepts it (`advert_int 0.01`, "intvl 1cs" on
            // the wire).
            Mode::Fast => Self {
                version: 3,
                advert_int_cs: 1,
                priority,
            },
        }
    }

    pub fn interval(self) -> Duration {
        Duration::from_millis(u64::from(self.advert_int_cs) * 10)
    }

    /// RFC 3768/5798: 3 x `advert_int` + skew, skew = (256 - priority)/256 x `advert_int`.
    pub fn master_down(self) -> Duration {
        let interval = self.interval();
        interval * 3 + interval * (256 - u32::from(self.priority)) / 256
    }

    /// `advert_int` as keepalived.conf writes it, in seconds.
    pub fn advert_int_text(self) -> String {
        let cs = self.advert_int_cs;
        if cs.is_multiple_of(100) {
            (cs / 100).to_string()
        } else {
            format!("{}.{:02}", cs / 100, cs % 100)
        }
    }
}

/// How often `implementation` advertises as master in `rank`.
pub fn interval(implementation: Implementation, mode: Mode, rank: Rank) -> Duration {
    match implementation {
        Implementation::Carpd | Implementation::Ucarp => Carp::of(mode, rank).interval(),
        Implementation::Keepalived => Vrrp::of(mode, rank).interval(),
    }
}

/// The backup's master-down time: the protocol's own bound on a crash failover.
pub fn master_down(implementation: Implementation, mode: Mode) -> Duration {
    match implementation {
        Implementation::Carpd => Carp::of(mode, Rank::Backup).master_down(),
        Implementation::Ucarp => Carp::of(mode, Rank::Backup).ucarp_master_down(),
        Implementation::Keepalived => Vrrp::of(mode, Rank::Backup).master_down(),
    }
}

/// One line per implementation for the table's header.
pub fn describe(implementation: Implementation, mode: Mode) -> String {
    let bound = master_down(implementation, mode).as_secs_f64() * 1e3;
    match implementation {
        Implementation::Carpd | Implementation::Ucarp => {
            let (master, backup) = (Carp::of(mode, Rank::Master), Carp::of(mode, Rank::Backup));
            format!(
                "{implementation}: advbase {} advskew {} / {}, preempt; master-down {bound:.1} ms",
                master.advbase, master.advskew, backup.advskew
            )
        }
        Implementation::Keepalived => {
            let (master, backup) = (Vrrp::of(mode, Rank::Master), Vrrp::of(mode, Rank::Backup));
            format!(
                "{implementation}: VRRPv{} advert_int {} priority {} / {}, preempt; master-down {bound:.1} ms",
                master.version,
                master.advert_int_text(),
                master.priority,
                backup.priority
            )
        }
    }
}

/// carpd's config: one vhid with the VIP on the node's only interface, its
/// dataplane pinned in `pins` (a bpffs that outlives carpd, as on a host).
pub fn carpd_config(mode: Mode, rank: Rank, socket: &Path, pins: &Path, vip: &str) -> String {
    let carp = Carp::of(mode, rank);
    let quoted = |text: &str| serde_json::Value::from(text).to_string();
    format!(
        "preempt = true\ncontrol_socket = {}\npin_dir = {}\n\n[[carp]]\nname = \"carp0\"\ncarpdev = {}\nvhid = {VHID}\npass = {}\nadvbase = {}\nadvskew = {}\naddresses = [{}]\n",
        quoted(&socket.to_string_lossy()),
        quoted(&pins.to_string_lossy()),
        quoted(IFNAME),
        quoted(PASS),
        carp.advbase,
        carp.advskew,
        quoted(&format!("{vip}/{PREFIX_LEN}")),
    )
}

/// keepalived.conf for one node. Both start as BACKUP and preempt (the
/// default): the higher priority wins, as the lower advskew does for CARP.
pub fn keepalived_config(mode: Mode, rank: Rank, node: &str, vip: &str) -> String {
    let vrrp = Vrrp::of(mode, rank);
    format!(
        "global_defs {{\n    router_id bench-{node}\n    vrrp_version {}\n}}\n\nvrrp_instance bench {{\n    state BACKUP\n    interface {IFNAME}\n    virtual_router_id {VHID}\n    priority {}\n    advert_int {}\n    virtual_ipaddress {{\n        {vip}/{PREFIX_LEN} dev {IFNAME}\n    }}\n}}\n",
        vrrp.version,
        vrrp.priority,
        vrrp.advert_int_text(),
    )
}

/// ucarp's arguments after the program. `--shutdown` runs the down script
/// on SIGTERM (without it ucarp leaves the VIP behind); ucarp sends its own
/// gratuitous ARP on becoming master, so the scripts only move the address.
pub fn ucarp_args(
    mode: Mode,
    rank: Rank,
    source: &str,
    vip: &str,
    up: &Path,
    down: &Path,
) -> Vec<String> {
    let carp = Carp::of(mode, rank);
    vec![
        format!("--interface={IFNAME}"),
        format!("--srcip={source}"),
        format!("--vhid={VHID}"),
        format!("--pass={PASS}"),
        format!("--addr={vip}"),
        format!("--advbase={}", carp.advbase),
        format!("--advskew={}", carp.advskew),
        "--preempt".into(),
        "--shutdown".into(),
        format!("--upscript={}", up.display()),
        format!("--downscript={}", down.display()),
    ]
}

/// ucarp calls its scripts as `<script> <interface> <vip>`.
pub const UCARP_UP: &str = "#!/bin/sh\nexec ip addr add \"$2/24\" dev \"$1\"\n";
pub const UCARP_DOWN: &str = "#!/bin/sh\nip addr del \"$2/24\" dev \"$1\" 2>/dev/null || true\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carp_intervals_keep_the_advskew_fraction() {
        let backup = Carp::of(Mode::Normal, Rank::Backup);
        assert_eq!(backup.interval(), Duration::from_micros(1_390_625));
        assert_eq!(backup.master_down(), Duration::from_micros(4_171_875));
        assert_eq!(backup.ucarp_master_down(), Duration::from_micros(3_390_625));
        // advbase 0: master 1/256 s, backup 2/256 s, master-down 6/256 s.
        let fast_master = Carp::of(Mode::Fast, Rank::Master);
        let fast_backup = Carp::of(Mode::Fast, Rank::Backup);
        assert_eq!(fast_master.interval(), Duration::from_nanos(3_906_250));
        assert_eq!(fast_backup.master_down(), Duration::from_nanos(23_437_500));
        assert_eq!(
            Carp {
                advbase: 0,
                advskew: 0
            }
            .interval(),
            Duration::from_nanos(3_906_250)
        );
    }

    #[test]
    fn vrrp_master_down_adds_the_skew_of_the_backup() {
        // 3 s + 156/256 s.
        assert_eq!(
            Vrrp::of(Mode::Normal, Rank::Backup).master_down(),
            Duration::from_micros(3_609_375)
        );
        // 30 ms + 156/256 x 10 ms.
        assert_eq!(
            Vrrp::of(Mode::Fast, Rank::Backup).master_down(),
            Duration::from_nanos(36_093_750)
        );
        assert_eq!(Vrrp::of(Mode::Fast, Rank::Master).advert_int_text(), "0.01");
        assert_eq!(Vrrp::of(Mode::Normal, Rank::Master).advert_int_text(), "1");
    }

    #[test]
    fn carpd_config_is_one_vhid_on_eth0() {
        let text = carpd_config(
            Mode::Fast,
            Rank::Backup,
            Path::new("/tmp/b/gw2.sock"),
            Path::new("/tmp/b/gw2.pins"),
            "10.0.9.1",
        );
        assert!(text.starts_with(
            "preempt = true\ncontrol_socket = \"/tmp/b/gw2.sock\"\npin_dir = \"/tmp/b/gw2.pins\"\n"
        ));
        assert!(text.contains("carpdev = \"eth0\"\nvhid = 1\n"), "{text}");
        assert!(
            text.contains("advbase = 0\nadvskew = 2\naddresses = [\"10.0.9.1/24\"]\n"),
            "{text}"
        );
    }

    #[test]
    fn keepalived_config_sets_version_interval_and_priority() {
        let text = keepalived_config(Mode::Fast, Rank::Master, "gw1", "10.0.9.1");
        for expected in [
            "vrrp_version 3\n",
            "state BACKUP\n",
            "interface eth0\n",
            "virtual_router_id 1\n",
            "priority 200\n",
            "advert_int 0.01\n",
            "10.0.9.1/24 dev eth0\n",
        ] {
            assert!(text.contains(expected), "{expected:?} in {text}");
        }
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    #[test]
    fn ucarp_gets_advbase_advskew_and_shutdown() {
        let args = ucarp_args(
            Mode::Normal,
            Rank::Backup,
            "10.0.9.3",
            "10.0.9.1",
            Path::new("/b/up.sh"),
            Path::new("/b/down.sh"),
        );
        for expected in [
            "--srcip=10.0.9.3",
            "--addr=10.0.9.1",
            "--advbase=1",
            "--advskew=100",
            "--preempt",
            "--shutdown",
            "--upscript=/b/up.sh",
        ] {
            assert!(
                args.iter().any(|arg| arg == expected),
                "{expected} in {args:?}"
            );
        }
    }

    #[test]
    fn fast_mode_leaves_ucarp_out() {
        assert_eq!(
            Mode::Fast.implementations(),
            [Implementation::Carpd, Implementation::Keepalived]
        );
        assert_eq!(Mode::Normal.implementations().len(), 3);
    }
}
