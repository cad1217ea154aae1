//! Types shared by the XDP program (`carp-ebpf`) and the agent (`carp-user`).
//!
//! Every type that crosses the kernel boundary is `#[repr(C)]`, `Copy`, made only
//! of integers and byte arrays with explicit padding, and has its size checked at
//! compile time. Byte order is written per field.
#![no_std]

/// IP protocol number of CARP (and VRRP).
pub const IPPROTO_CARP: u8 = 112;
/// Length of a CARP header on the wire.
pub const CARP_HEADER_LEN: usize = 36;
/// CARP version carried in the high nibble of byte 0.
pub const CARP_VERSION: u8 = 2;
/// CARP message type carried in the low nibble of byte 0.
pub const CARP_TYPE_ADVERTISEMENT: u8 = 1;
/// TTL / hop limit of every CARP advertisement; anything else is dropped.
pub const CARP_TTL: u8 = 255;

/// Advertisement ring buffer size in bytes (a power of two, a multiple of the page size).
pub const ADVERT_RING_BYTES: u32 = 256 * 1024;
/// Upper bound of configured (carpdev, vhid) pairs.
pub const MAX_VHIDS: u32 = 1024;
/// Upper bound of distinct counter keys (vhids x reasons plus per-carpdev rows).
pub const MAX_COUNTER_KEYS: u32 = 16 * 1024;

/// Key of the `CARP_VHIDS` map: a vhid configured on a carpdev.
///
/// Written by the agent when it configures a carp interface, read by the XDP
/// program to drop advertisements for vhids that are not ours (`badvhid`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VhidKey {
    /// Interface index of the carpdev, host byte order.
    pub ifindex: u32,
    pub vhid: u8,
    pub pad: [u8; 3],
}

impl VhidKey {
    pub const fn new(ifindex: u32, vhid: u8) -> Self {
        Self {
            ifindex,
            vhid,
            pad: [0; 3],
        }
    }
}

/// Value of the `CARP_VHIDS` map. Reserved flags, zero today.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VhidConfig {
    pub flags: u32,
}

/// What the XDP program did with a CARP packet, one counter per reason.
///
/// Names follow OpenBSD's carpstats so an operator can map them.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Passed the cheap checks and was handed to the agent.
    Accepted = 0,
    /// TTL / hop limit not 255.
    BadTtl = 1,
    /// Shorter than a CARP header, or fragmented.
    BadLen = 2,
    /// Wrong version or type.
    BadVer = 3,
    /// Bad internet checksum over the CARP header.
    BadSum = 4,
    /// vhid not configured on this interface.
    BadVhid = 5,
    /// The ring buffer to the agent was full.
    RingFull = 6,
}

impl Verdict {
    pub const COUNT: usize = 7;
    pub const ALL: [Verdict; Self::COUNT] = [
        Verdict::Accepted,
        Verdict::BadTtl,
        Verdict::BadLen,
        Verdict::BadVer,
        Verdict::BadSum,
        Verdict::BadVhid,
        Verdict::RingFull,
    ];

    /// Decodes a counter key's reason byte; `None` for bytes no verdict has.
    pub const fn from_u8(value: u8) -> Option<Self> {
        if (value as usize) < Self::COUNT {
            Some(Self::ALL[value as usize])
        } else {
            None
        }
    }

    /// The metric label, after OpenBSD's carpstats field names.
    pub const fn label(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::BadTtl => "badttl",
            Verdict::BadLen => "badlen",
            Verdict::BadVer => "badver",
            Verdict::BadSum => "badsum",
            Verdict::BadVhid => "badvhid",
            Verdict::RingFull => "ringfull",
        }
    }
}

/// Key of the per-CPU `CARP_COUNTERS` map.
///
/// Written (incremented) by the XDP program, read and summed over CPUs by the
/// agent. `vhid` is 0 where the packet could not be tied to a configured vhid,
/// so an attacker cannot grow the map by spraying vhids.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CounterKey {
    /// Interface index of the carpdev, host byte order.
    pub ifindex: u32,
    pub vhid: u8,
    /// A `Verdict` as u8.
    pub reason: u8,
    pub pad: [u8; 2],
}

impl CounterKey {
    pub const fn new(ifindex: u32, vhid: u8, reason: Verdict) -> Self {
        Self {
            ifindex,
            vhid,
            reason: reason as u8,
            pad: [0; 2],
        }
    }
}

/// Address family tags used in [`AdvertEvent::family`].
pub const FAMILY_INET: u8 = 4;
pub const FAMILY_INET6: u8 = 6;

/// One advertisement handed from the XDP program to the agent through the
/// `CARP_ADVERTS` ring buffer. Written by XDP, read by the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdvertEvent {
    /// `bpf_ktime_get_ns()` at reception: `CLOCK_MONOTONIC` in nanoseconds.
    pub timestamp_ns: u64,
    /// Interface index of the carpdev it arrived on, host byte order.
    pub ifindex: u32,
    /// `FAMILY_INET` or `FAMILY_INET6`.
    pub family: u8,
    /// 1 if the destination was multicast (224.0.0.18 / `ff02::12`), else 0.
    pub multicast: u8,
    pub pad: [u8; 2],
    /// Source address in network byte order; IPv4 uses the first 4 bytes.
    pub source: [u8; 16],
    /// The CARP header exactly as received (network byte order).
    pub header: [u8; CARP_HEADER_LEN],
    pub pad2: [u8; 4],
}

const _: () = assert!(core::mem::size_of::<VhidKey>() == 8);
const _: () = assert!(core::mem::size_of::<VhidConfig>() == 4);
const _: () = assert!(core::mem::size_of::<CounterKey>() == 8);
const _: () = assert!(core::mem::size_of::<AdvertEvent>() == 72);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is repr(C), Copy, made of integers and byte arrays with
    // explicit padding, so every bit pattern is valid and there are no holes.
    unsafe impl aya::Pod for super::VhidKey {}
    unsafe impl aya::Pod for super::VhidConfig {}
    unsafe impl aya::Pod for super::CounterKey {}
    unsafe impl aya::Pod for super::AdvertEvent {}
}
