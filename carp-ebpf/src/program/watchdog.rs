//! The fail-closed watchdog: a BPF timer the agent's heartbeats keep armed.
//! When it runs out (the agent has not beaten within its bound), its
//! callback clears the "alive" flag, and from then on nothing is owned. A
//! MASTER's packets read that flag (an inlined array lookup) instead of the
//! clock: the exact check, without a helper call per packet.
//!
//! The agent beats by running this program over a heartbeat frame
//! (ethertype `ETH_P_CARP_BEAT`) with `BPF_PROG_TEST_RUN`, which presents
//! it on the loopback device. The program is never attached there (carpdevs
//! are Ethernet devices), so no frame from the wire can pose as a beat.

use aya_ebpf::{
    bindings::{bpf_timer, xdp_action},
    btf_maps::Array,
    helpers::{bpf_ktime_get_ns, bpf_timer_init, bpf_timer_set_callback, bpf_timer_start},
    macros::btf_map,
    programs::XdpContext,
};
use carp_common::BEAT_FRAME_LEN;
use carp_ebpf::alive_for;

use super::read;

/// `CLOCK_MONOTONIC`, the clock `bpf_ktime_get_ns` reads.
const CLOCK_MONOTONIC: u64 = 1;
/// The loopback device's index in every network namespace.
pub const LOOPBACK: u32 = 1;

#[repr(C)]
pub struct Watchdog {
    timer: bpf_timer,
    /// 1 while the agent's last heartbeat is within its bound.
    alive: u64,
}

/// Entry 0: the watchdog. Armed by the agent's beats, cleared by its timer;
/// read here. A BTF map: the kernel must see where the timer is.
#[btf_map]
static CARP_WATCHDOG: Array<Watchdog, 1> = Array::new();

/// Whether the agent is alive: the watchdog has not run out.
#[inline(always)]
pub fn alive() -> bool {
    CARP_WATCHDOG.get(0).is_some_and(|dog| dog.alive != 0)
}

/// A heartbeat frame from the agent: beat and bound (native byte order,
/// after the Ethernet header). Arms the timer for what is left of the
/// bound, or clears the flag if nothing is.
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
    let Some(remaining) = alive_for(beat_ns, bound_ns, now) else {
        // SAFETY: `dog` points into the map's value, valid while we run.
        unsafe { (*dog).alive = 0 };
        return xdp_action::XDP_DROP;
    };
    let map = core::ptr::from_ref(&CARP_WATCHDOG).cast_mut().cast();
    // SAFETY: the timer lives in this map's value; the helpers check the
    // rest. Init fails with EBUSY once initialised: that is expected.
    let started = unsafe {
        let timer = &raw mut (*dog).timer;
        let _ = bpf_timer_init(timer, map, CLOCK_MONOTONIC);
        let _ = bpf_timer_set_callback(timer, expired as *mut _);
        bpf_timer_start(timer, remaining, 0)
    };
    // SAFETY: as above.
    unsafe { (*dog).alive = u64::from(started == 0) };
    if started == 0 {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_ABORTED
    }
}

/// The timer ran out: the agent missed its bound.
extern "C" fn expired(_map: *mut core::ffi::c_void, _key: *mut u32, dog: *mut Watchdog) -> i32 {
    // SAFETY: the kernel passes the map value the timer lives in.
    unsafe { (*dog).alive = 0 };
    0
}
