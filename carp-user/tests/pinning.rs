//! The pinned dataplane on a real bpffs: what a pin directory an earlier
//! carpd left is judged to be (nothing, live, stale, foreign), that a
//! second load adopts the pinned maps with their contents, and that
//! clearing removes carpd's pins only. Needs root (BPF, mount).

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use carp::clock;
use carp::dataplane::{Dataplane, PinDir, Previous};
use carp_common::VhidKey;

const IFINDEX: u32 = 1;
const VHID: u8 = 9;
const BOUND: Duration = Duration::from_secs(3);

/// A bpffs mounted on a fresh temporary directory, unmounted on drop.
struct Bpffs {
    dir: tempfile::TempDir,
}

impl Bpffs {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // PinDir mounts a bpffs where there is none: the code under test.
        let pins = PinDir::open(dir.path()).unwrap_or_else(|error| {
            panic!("mounting a bpffs failed: {error} (these tests need root: `cargo xtask test`)")
        });
        assert_eq!(pins.path(), dir.path());
        Self { dir }
    }

    fn pins(&self) -> PinDir {
        PinDir::open(self.dir.path()).expect("the pin directory opens")
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let path = std::ffi::CString::new(self.dir.path().as_os_str().as_encoded_bytes())
            .expect("a path without NUL");
        // SAFETY: a valid NUL-terminated path; umount2 touches nothing else.
        unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    }
}

fn load(pins: &PinDir) -> Dataplane {
    Dataplane::load(Some(pins)).expect("the program loads with pinned maps")
}

/// A dataplane on `pins`, MASTER of `VHID` on `IFINDEX`, beating with `BOUND`.
fn load_master(pins: &PinDir) -> Dataplane {
    let mut dataplane = load(pins);
    dataplane.add_vhid(IFINDEX, VHID, false).expect("vhid");
    dataplane.beat(clock::now(), BOUND).expect("beat");
    dataplane.set_role(IFINDEX, VHID, true).expect("role");
    dataplane
}

#[test]
fn an_empty_directory_holds_nothing_to_resume() {
    let bpffs = Bpffs::new();
    let previous = bpffs.pins().inspect(clock::now()).expect("inspect");
    assert!(matches!(previous, Previous::Nothing), "{previous:?}");
}

#[test]
fn a_live_pin_is_adopted_with_its_roles_and_a_stale_one_is_not() {
    let bpffs = Bpffs::new();
    let pins = bpffs.pins();
    // The first carpd goes: its maps stay pinned.
    drop(load_master(&pins));
    let Previous::Live(state) = pins.inspect(clock::now()).expect("inspect") else {
        panic!("a fresh beat is live");
    };
    assert_eq!(state.roles.get(&VhidKey::new(IFINDEX, VHID)), Some(&true));

    // A second carpd sees the same maps: its beat lands where the first's was.
    let mut second = load(&pins);
    second
        .beat(clock::now().saturating_sub(BOUND * 2), BOUND)
        .expect("an old beat");
    let previous = pins.inspect(clock::now()).expect("inspect");
    let Previous::Stale { age, bound } = previous else {
        panic!("an old beat is stale: {previous:?}");
    };
    assert!(
        age >= BOUND * 2 && bound == BOUND,
        "age {age:?} bound {bound:?}"
    );
}

#[test]
fn maps_of_another_shape_are_foreign_and_clearing_keeps_what_is_not_ours() {
    let bpffs = Bpffs::new();
    let pins = bpffs.pins();
    drop(load(&pins));
    // Some other program's map where carpd's vhid map should be.
    std::fs::remove_file(bpffs.path().join("CARP_VHIDS")).expect("unpin");
    std::fs::rename(
        bpffs.path().join("CARP_COUNTERS"),
        bpffs.path().join("CARP_VHIDS"),
    )
    .expect("rename a pin");
    let previous = pins.inspect(clock::now()).expect("inspect");
    let Previous::Foreign { reason } = previous else {
        panic!("a map of another shape is foreign: {previous:?}");
    };
    assert!(reason.contains("CARP_VHIDS"), "{reason}");

    pins.clear().expect("clear");
    let left: Vec<String> = std::fs::read_dir(bpffs.path())
        .expect("list")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("CARP_") || name.starts_with("link-"))
        .collect();
    assert!(left.is_empty(), "pins left: {left:?}");
    assert!(
        matches!(pins.inspect(clock::now()), Ok(Previous::Nothing)),
        "cleared means nothing to resume"
    );
}

/// A successor carpd takes the pinned watchdog over with its first beat,
/// then dies before it has replaced any link. The predecessor's program,
/// still attached, must fail closed when the successor's bound runs out:
/// both programs share the timer and the roles it demotes.
#[test]
fn a_successor_that_dies_after_its_first_beat_leaves_no_owner() {
    const SHORT: Duration = Duration::from_millis(100);
    /// Well under `BOUND`: the successor's timer, not ours, must end it.
    const TIMEOUT: Duration = Duration::from_secs(2);
    let bpffs = Bpffs::new();
    let pins = bpffs.pins();
    let mut first = load_master(&pins);
    let frame = common::ipv4_frame(
        carp::net::virtual_mac(VHID),
        Ipv4Addr::new(192, 0, 2, 100),
        Ipv4Addr::new(192, 0, 2, 1),
    );
    let owned = first.run_on_frame(&frame, 1).expect("run").action;
    assert_eq!(owned, common::XDP_PASS, "MASTER with a live agent");
    {
        let mut second = load(&pins);
        second
            .beat(clock::now(), SHORT)
            .expect("the successor's first beat");
    }
    let died = clock::now();
    let dropped = common::poll_until(
        &mut first,
        "the predecessor's program after its successor died",
        &frame,
        common::XDP_DROP,
        None,
    );
    assert!(
        dropped < died + TIMEOUT,
        "the predecessor's program still owned the vhid {:?} after its successor died",
        dropped.saturating_sub(died)
    );
}
