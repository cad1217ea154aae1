//! The fail-closed watchdog: a BPF timer the agent's heartbeats keep armed.
//! When it runs out (the agent has not beaten within its bound), its
//! callback turns every MASTER role in `CARP_VHIDS` into `ROLE_STALE`, and
//! from then on nothing is owned. The packet path reads only the role it
//! reads anyway: the exact check, at no cost per packet.
//!
//! The agent beats by running this program over a heartbeat frame
//! (ethertype `ETH_P_CARP_BEAT`) with `BPF_PROG_TEST_RUN`, which presents
//! it on the loopback device. The program is never attached there (carpdevs
//! are Ethernet devices), so no frame from the wire can pose as a beat. The
//! program answers with the number of times the watchdog ran out: when the
//! agent sees a new count, it writes its roles again.
//!
//! The timer and the roles live in pinned maps that a restarted carpd's
//! program shares, and each beat points the timer at the beating program's
//! callback: whichever program runs out last, the same roles are demoted.

use aya_ebpf::{
    bindings::{bpf_timer, xdp_action},
    btf_maps::Array,
    helpers::{
        bpf_ktime_get_ns, bpf_loop, bpf_timer_init, bpf_timer_set_callback, bpf_timer_start,
    },
    macros::btf_map,
    programs::XdpContext,
};
use carp_common::{BEAT_EXPIRIES_AT, BEAT_FRAME_LEN, VHID_ENTRIES};
use carp_ebpf::{alive_for, expired_role};

use super::{CARP_VHIDS, read, write};

/// `CLOCK_MONOTONIC`, the clock `bpf_ktime_get_ns` reads.
const CLOCK_MONOTONIC: u64 = 1;
/// The loopback device's index in every network namespace.
pub const LOOPBACK: u32 = 1;

#[repr(C)]
pub struct Watchdog {
    timer: bpf_timer,
    /// How many times the timer ran out. Written by its callback alone.
    expiries: u64,
}

/// Entry 0: the watchdog. Armed by the agent's beats, run out by its
/// timer. A BTF map: the kernel must see where the timer is.
#[btf_map]
static CARP_WATCHDOG: Array<Watchdog, 1> = Array::new();

/// A heartbeat frame from the agent: beat and bound (native byte order,
/// after the Ethernet header). Arms the timer for what is left of the
/// bound (a beat already past it runs out at once) and answers with the
/// expiry count.
#[inline(always)]
pub fn beat(ctx: &XdpContext) -> u32 {
    let Some(frame) = read::<[u8; BEAT_FRAME_LEN]>(ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    let word = |at: usize| {
        u64::from_ne_bytes([
            frame[at],
            frame[at + 1],
            frame[at + 2],
            frame[at + 3],
            frame[at + 4],
            frame[at + 5],
            frame[at + 6],
            frame[at + 7],
        ])
    };
    let (beat_ns, bound_ns) = (word(14), word(22));
    let Some(dog) = CARP_WATCHDOG.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: a helper without arguments or side effects.
    let now = unsafe { bpf_ktime_get_ns() };
    let remaining = alive_for(beat_ns, bound_ns, now).unwrap_or(1);
    let map = core::ptr::from_ref(&CARP_WATCHDOG).cast_mut().cast();
    // SAFETY: the timer lives in this map's value; the helpers check the
    // rest. Init fails with EBUSY once initialised: that is expected.
    let started = unsafe {
        let timer = &raw mut (*dog).timer;
        let _ = bpf_timer_init(timer, map, CLOCK_MONOTONIC);
        let _ = bpf_timer_set_callback(timer, expired as *mut _);
        bpf_timer_start(timer, remaining, 0)
    };
    // SAFETY: `dog` points into the map's value, valid while we run.
    let expiries = unsafe { (*dog).expiries };
    if started == 0 && write(ctx, BEAT_EXPIRIES_AT, expiries.to_ne_bytes()) {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_ABORTED
    }
}

/// The timer ran out: the agent missed its bound. Every MASTER becomes
/// stale, then the count goes up, so an agent that reads the new count
/// finds every role already demoted and writes them all again.
extern "C" fn expired(_map: *mut core::ffi::c_void, _key: *mut u32, dog: *mut Watchdog) -> i32 {
    // SAFETY: a callback of this program over the map's whole range.
    unsafe {
        let _ = bpf_loop(VHID_ENTRIES, demote as *mut _, core::ptr::null_mut(), 0);
    }
    // SAFETY: the kernel passes the map value the timer lives in; only
    // this callback writes the count, and never twice at once.
    unsafe { (*dog).expiries += 1 };
    0
}

/// `bpf_loop`'s step over `CARP_VHIDS`: demotes entry `index` if MASTER.
extern "C" fn demote(index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "bpf_loop counts to VHID_ENTRIES, a u32"
    )]
    if let Some(state) = CARP_VHIDS.get_ptr_mut(index as u32) {
        // SAFETY: `state` points into the array's value; a one-byte write
        // leaves the rest of the entry as the agent wrote it.
        unsafe {
            let role = (*state).role;
            let expired = expired_role(role);
            if expired != role {
                (*state).role = expired;
            }
        }
    }
    0
}
