//! The dataplane pinned on bpffs, so it outlives the agent: the XDP links
//! keep the program attached after carpd dies (the stale heartbeat then
//! makes it fail closed), and the maps keep the roles and the VIPs for the
//! next carpd to adopt (a hitless restart).
//!
//! One directory per carpd instance holds one pin per map (by map name) and
//! one per XDP link (`link-<carpdev>`). Pins are files on a bpffs: they
//! survive the process, not a reboot.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::maps::{Array, HashMap, MapData, MapInfo};
use carp_common::{AgentHeartbeat, Carpdev, VhidKey, VhidState, VipKey, VipOwner};

use super::{
    AGENT_MAP, CARPDEVS_MAP, COLLIDED_MAP, PINNED_MAPS, PROGRAM_OBJECT, VHIDS_MAP, VIPS_MAP, layout,
};
use crate::clock::Mono;

/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const LINK_PREFIX: &str = "link-";
const STANDARD_BPFFS: &str = "/sys/fs/bpf";

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("mounting a bpffs on {path}: {source}")]
    Mount { path: PathBuf, source: io::Error },
    #[error("{path}: the pin directory must be an absolute path")]
    Relative { path: PathBuf },
    #[error("reading the XDP object's map definitions: {0}")]
    Object(String),
    #[error("{path}: {source}")]
    Map {
        path: PathBuf,
        source: aya::maps::MapError,
    },
}

/// The directory this carpd pins its dataplane in.
#[derive(Clone, Debug)]
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    /// Creates `path` if needed and makes sure it is on a bpffs, mounting
    /// one there if it is not (as bpftool does). A bpffs mounted by a
    /// process in a private mount namespace (`ip netns exec`) vanishes with
    /// it: mount it beforehand where pins must outlive carpd.
    pub fn open(path: &Path) -> Result<Self, PinError> {
        if !path.is_absolute() {
            return Err(PinError::Relative {
                path: path.to_owned(),
            });
        }
        // The usual place: sysfs refuses new directories, so the bpffs
        // goes on /sys/fs/bpf itself, as systemd would have mounted it.
        let standard = Path::new(STANDARD_BPFFS);
        if path.starts_with(standard) && !on_bpffs(standard).unwrap_or(true) {
            mount_bpffs(standard).map_err(|source| PinError::Mount {
                path: standard.to_owned(),
                source,
            })?;
            tracing::info!("{STANDARD_BPFFS}: mounted a bpffs");
        }
        std::fs::create_dir_all(path).map_err(|source| PinError::Io {
            path: path.to_owned(),
            source,
        })?;
        if !on_bpffs(path).map_err(|source| PinError::Io {
            path: path.to_owned(),
            source,
        })? {
            mount_bpffs(path).map_err(|source| PinError::Mount {
                path: path.to_owned(),
                source,
            })?;
            tracing::info!(
                "{}: mounted a bpffs for the pinned dataplane",
                path.display()
            );
            if in_private_mount_namespace() {
                tracing::warn!(
                    "{}: carpd runs in a mount namespace of its own (as under `ip netns exec`): \
                     the bpffs it mounted goes when carpd does, and the XDP program with it, so \
                     a crash leaves no fail-closed dataplane and a restart is not hitless; \
                     mount a bpffs on pin_dir where carpd is started from",
                    path.display()
                );
            }
        }
        Ok(Self {
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn link(&self, carpdev: &str) -> PathBuf {
        self.path.join(format!("{LINK_PREFIX}{carpdev}"))
    }

    /// carpd's pins in the directory. Anything else is left alone (a
    /// fresh bpffs holds `maps.debug` and `progs.debug`, say).
    fn entries(&self) -> Result<Vec<PathBuf>, PinError> {
        let io_error = |source| PinError::Io {
            path: self.path.clone(),
            source,
        };
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&self.path).map_err(io_error)? {
            let path = entry.map_err(io_error)?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if is_link_pin(&path) || PINNED_MAPS.contains(&name) {
                entries.push(path);
            }
        }
        entries.sort();
        Ok(entries)
    }

    /// Removes every pin: links first, so the program is detached before
    /// the maps it reads go.
    pub fn clear(&self) -> Result<(), PinError> {
        let (links, others): (Vec<_>, Vec<_>) = self
            .entries()?
            .into_iter()
            .partition(|path| is_link_pin(path));
        for path in links.into_iter().chain(others) {
            std::fs::remove_file(&path).map_err(|source| PinError::Io { path, source })?;
        }
        Ok(())
    }

    /// What an earlier carpd left here, judged at `now`.
    pub fn inspect(&self, now: Mono) -> Result<Previous, PinError> {
        let entries = self.entries()?;
        if entries.is_empty() {
            return Ok(Previous::Nothing);
        }
        if let Some(reason) = self.layout_mismatch()? {
            return Ok(Previous::Foreign { reason });
        }
        let heartbeat = self.read_heartbeat()?;
        let age = now.saturating_sub(Duration::from_nanos(heartbeat.beat_ns));
        let bound = Duration::from_nanos(heartbeat.bound_ns);
        if heartbeat.beat_ns == 0 || age > bound {
            return Ok(Previous::Stale { age, bound });
        }
        Ok(Previous::Live(PinnedState {
            roles: self.read_roles()?,
            vips: self.read_vips()?,
            links: entries
                .iter()
                .filter_map(|path| link_carpdev(path))
                .collect(),
        }))
    }

    /// Why the pins are not this build's dataplane, if they are not: a map
    /// missing or shaped differently (another program, another version).
    fn layout_mismatch(&self) -> Result<Option<String>, PinError> {
        let object = aya_obj::Object::parse(PROGRAM_OBJECT)
            .map_err(|error| PinError::Object(error.to_string()))?;
        for name in PINNED_MAPS {
            let Some(expected) = object.maps.get(name) else {
                return Err(PinError::Object(format!("no map {name}")));
            };
            let path = self.map(name);
            let Ok(pinned) = MapInfo::from_pin(&path) else {
                return Ok(Some(format!("map {name} is not pinned")));
            };
            let pinned_type = pinned
                .map_type()
                .map_or(u32::MAX, |t| u32::try_from(t as isize).unwrap_or(u32::MAX));
            let shape = |t, k, v, m| format!("type {t}, key {k} B, value {v} B, {m} entries");
            let found = shape(
                pinned_type,
                pinned.key_size(),
                pinned.value_size(),
                pinned.max_entries(),
            );
            let wanted = shape(
                expected.map_type(),
                expected.key_size(),
                expected.value_size(),
                expected.max_entries(),
            );
            if found != wanted {
                return Ok(Some(format!(
                    "map {name} is {found}, this carpd's is {wanted}"
                )));
            }
        }
        Ok(None)
    }

    fn open_map(&self, name: &str) -> Result<MapData, PinError> {
        let path = self.map(name);
        MapData::from_pin(&path).map_err(|source| PinError::Map { path, source })
    }

    fn map_error(&self, name: &str) -> impl Fn(aya::maps::MapError) -> PinError {
        let path = self.map(name);
        move |source| PinError::Map {
            path: path.clone(),
            source,
        }
    }

    fn read_heartbeat(&self) -> Result<AgentHeartbeat, PinError> {
        let error = self.map_error(AGENT_MAP);
        let map: Array<MapData, AgentHeartbeat> =
            Array::try_from(aya::maps::Map::Array(self.open_map(AGENT_MAP)?)).map_err(&error)?;
        map.get(&0, 0).map_err(error)
    }

    /// The roles, where the pinned `CARP_CARPDEVS`, `CARP_COLLIDED` and
    /// `CARP_VHIDS` say they are.
    fn read_roles(&self) -> Result<BTreeMap<VhidKey, bool>, PinError> {
        let carpdevs: Array<MapData, Carpdev> =
            Array::try_from(aya::maps::Map::Array(self.open_map(CARPDEVS_MAP)?))
                .map_err(self.map_error(CARPDEVS_MAP))?;
        let collided: HashMap<MapData, u32, Carpdev> =
            HashMap::try_from(aya::maps::Map::HashMap(self.open_map(COLLIDED_MAP)?))
                .map_err(self.map_error(COLLIDED_MAP))?;
        let vhids: Array<MapData, VhidState> =
            Array::try_from(aya::maps::Map::Array(self.open_map(VHIDS_MAP)?))
                .map_err(self.map_error(VHIDS_MAP))?;
        let layout =
            layout::read(&carpdevs, &collided, &vhids).map_err(self.map_error(VHIDS_MAP))?;
        Ok(layout.roles())
    }

    fn read_vips(&self) -> Result<BTreeMap<VipKey, u8>, PinError> {
        let error = self.map_error(VIPS_MAP);
        let map: HashMap<MapData, VipKey, VipOwner> =
            HashMap::try_from(aya::maps::Map::HashMap(self.open_map(VIPS_MAP)?)).map_err(&error)?;
        map.iter()
            .map(|entry| entry.map(|(key, owner)| (key, owner.vhid)))
            .collect::<Result<_, _>>()
            .map_err(error)
    }
}

/// What a pin directory held when carpd started.
#[derive(Debug)]
pub enum Previous {
    /// A first start, or the last carpd bowed out (and removed its pins).
    Nothing,
    /// A carpd exited (or died) less than its heartbeat bound ago: its
    /// dataplane can be adopted without a transition.
    Live(PinnedState),
    /// The last heartbeat is older than its bound: the program already
    /// treats nothing as owned and the peer has likely taken over.
    Stale { age: Duration, bound: Duration },
    /// Not this build's dataplane.
    Foreign { reason: String },
}

/// The state a live pin directory holds.
#[derive(Debug, Default)]
pub struct PinnedState {
    /// Our role per (carpdev, vhid): true for MASTER.
    pub roles: BTreeMap<VhidKey, bool>,
    /// The VIPs and their vhid.
    pub vips: BTreeMap<VipKey, u8>,
    /// carpdevs with a pinned XDP link.
    pub links: BTreeSet<String>,
}

impl PinnedState {
    /// Why this state is not the one `expected` describes, if it is not.
    pub fn mismatch(&self, expected: &PinnedState) -> Option<String> {
        let keys = |roles: &BTreeMap<VhidKey, bool>| -> BTreeSet<(u32, u8)> {
            roles.keys().map(|k| (k.ifindex, k.vhid)).collect()
        };
        let (pinned, wanted) = (keys(&self.roles), keys(&expected.roles));
        if let Some((ifindex, vhid)) = pinned.symmetric_difference(&wanted).next() {
            let side = if pinned.contains(&(*ifindex, *vhid)) {
                "pinned but not configured"
            } else {
                "configured but not pinned"
            };
            return Some(format!("vhid {vhid} on ifindex {ifindex} is {side}"));
        }
        if self.vips != expected.vips {
            return Some("the VIPs differ from the configured ones".into());
        }
        if let Some(carpdev) = self.links.symmetric_difference(&expected.links).next() {
            return Some(format!("the XDP link of {carpdev} differs"));
        }
        None
    }
}

fn is_link_pin(path: &Path) -> bool {
    link_carpdev(path).is_some()
}

fn link_carpdev(path: &Path) -> Option<String> {
    path.file_name()?
        .to_str()?
        .strip_prefix(LINK_PREFIX)
        .map(str::to_owned)
}

/// Whether this process's mount namespace differs from init's: mounts made
/// in it (and the pins on them) go with its last process. False where it
/// cannot be told.
fn in_private_mount_namespace() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let namespace = |path: &str| std::fs::metadata(path).map(|meta| (meta.dev(), meta.ino()));
    match (namespace("/proc/self/ns/mnt"), namespace("/proc/1/ns/mnt")) {
        (Ok(ours), Ok(init)) => ours != init,
        _ => false,
    }
}

fn on_bpffs(path: &Path) -> io::Result<bool> {
    use std::os::unix::ffi::OsStrExt as _;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statfs only writes into the struct we own; the path is a
    // valid NUL-terminated string.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c_path.as_ptr(), &raw mut stats) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stats.f_type == BPF_FS_MAGIC)
}

fn mount_bpffs(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: every argument is a valid NUL-terminated string or null data.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c_path.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(roles: &[(u32, u8)], links: &[&str]) -> PinnedState {
        PinnedState {
            roles: roles
                .iter()
                .map(|&(ifindex, vhid)| (VhidKey::new(ifindex, vhid), false))
                .collect(),
            vips: BTreeMap::new(),
            links: links.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn matching_state_has_no_mismatch_whatever_the_roles() {
        let mut pinned = state(&[(2, 1), (2, 2)], &["eth0"]);
        pinned.roles.insert(VhidKey::new(2, 1), true);
        assert_eq!(pinned.mismatch(&state(&[(2, 1), (2, 2)], &["eth0"])), None);
    }

    #[test]
    fn mismatches_name_what_differs() {
        let pinned = state(&[(2, 1)], &["eth0"]);
        assert_eq!(
            pinned
                .mismatch(&state(&[(2, 1), (2, 5)], &["eth0"]))
                .as_deref(),
            Some("vhid 5 on ifindex 2 is configured but not pinned")
        );
        assert_eq!(
            pinned.mismatch(&state(&[], &["eth0"])).as_deref(),
            Some("vhid 1 on ifindex 2 is pinned but not configured")
        );
        assert_eq!(
            pinned.mismatch(&state(&[(2, 1)], &["eth1"])).as_deref(),
            Some("the XDP link of eth0 differs")
        );
        let mut other_vips = state(&[(2, 1)], &["eth0"]);
        other_vips.vips.insert(VipKey::v4(2, [10, 0, 0, 1]), 1);
        assert_eq!(
            pinned.mismatch(&other_vips).as_deref(),
            Some("the VIPs differ from the configured ones")
        );
    }

    #[test]
    fn link_pins_are_recognised_by_name() {
        assert_eq!(
            link_carpdev(Path::new("/x/link-eth0")).as_deref(),
            Some("eth0")
        );
        assert_eq!(link_carpdev(Path::new("/x/CARP_VHIDS")), None);
    }
}
