//! Monotonic time. The agent never reads the wall clock: every deadline is a
//! [`Mono`], the time since boot on `CLOCK_MONOTONIC`, the same clock the XDP
//! program stamps advertisements with (`bpf_ktime_get_ns`).

use std::time::Duration;

/// A point on `CLOCK_MONOTONIC`.
pub type Mono = Duration;

/// Now on `CLOCK_MONOTONIC`.
pub fn now() -> Mono {
    // std::time::Instant is CLOCK_MONOTONIC on Linux but opaque; read the clock
    // directly so kernel timestamps and our deadlines compare.
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC is
    // always available on Linux, so the call cannot fail.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    debug_assert_eq!(rc, 0);
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// A kernel timestamp from `bpf_ktime_get_ns()`.
pub const fn from_kernel_ns(ns: u64) -> Mono {
    Duration::from_nanos(ns)
}
