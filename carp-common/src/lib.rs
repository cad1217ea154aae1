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
/// Claim event ring buffer size in bytes.
pub const CLAIM_RING_BYTES: u32 = 64 * 1024;
/// Upper bound of configured VIPs over all carpdevs.
pub const MAX_VIPS: u32 = 4096;
/// Upper bound of distinct counter keys (vhids x reasons plus per-carpdev rows).
pub const MAX_COUNTER_KEYS: u32 = 16 * 1024;

/// Key of the `CARP_VHIDS` map: a vhid configured on a carpdev.
///
/// Written by the agent when it configures a carp interface, read by the XDP
/// program to drop advertisements for vhids that are not ours (`badvhid`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// `VhidState::role` while this node must not act for the vhid.
pub const ROLE_BACKUP: u8 = 0;
/// `VhidState::role` while this node is MASTER of the vhid.
pub const ROLE_MASTER: u8 = 1;

/// Value of the `CARP_VHIDS` map: this node's role for the vhid. The agent
/// flips ownership of every VIP and of the virtual MAC with one update of
/// this value, so the datapath never sees half a failover.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VhidState {
    /// `ROLE_BACKUP` or `ROLE_MASTER`; anything else counts as backup.
    pub role: u8,
    /// 1 if this vhid leads a balanced group (`CARP_BALANCED` has an entry
    /// under its key): frames for its MAC are split across the group.
    pub leads_group: u8,
    pub pad: [u8; 2],
}

impl VhidState {
    pub const fn new(master: bool) -> Self {
        Self {
            role: if master { ROLE_MASTER } else { ROLE_BACKUP },
            leads_group: 0,
            pad: [0; 2],
        }
    }

    pub const fn leading_group(master: bool) -> Self {
        Self {
            leads_group: 1,
            ..Self::new(master)
        }
    }

    pub const fn is_master(self) -> bool {
        self.role == ROLE_MASTER
    }
}

/// Key of the `CARP_VIPS` map: a virtual address on a carpdev.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipKey {
    /// Interface index of the carpdev, host byte order.
    pub ifindex: u32,
    /// `FAMILY_INET` or `FAMILY_INET6`.
    pub family: u8,
    pub pad: [u8; 3],
    /// Network byte order; IPv4 uses the first 4 bytes, the rest zero.
    pub address: [u8; 16],
}

impl VipKey {
    pub const fn v4(ifindex: u32, address: [u8; 4]) -> Self {
        let mut bytes = [0u8; 16];
        bytes[0] = address[0];
        bytes[1] = address[1];
        bytes[2] = address[2];
        bytes[3] = address[3];
        Self {
            ifindex,
            family: FAMILY_INET,
            pad: [0; 3],
            address: bytes,
        }
    }

    pub const fn v6(ifindex: u32, address: [u8; 16]) -> Self {
        Self {
            ifindex,
            family: FAMILY_INET6,
            pad: [0; 3],
            address,
        }
    }
}

/// Value of the `CARP_VIPS` map: the vhid whose role decides for the VIP.
/// Written by the agent at configuration, read by the XDP program.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipOwner {
    /// The vhid; for a balanced group, its leader (first node).
    pub vhid: u8,
    /// 1 if the VIP is shared by a balanced group: the packet's addresses
    /// pick the node that decides.
    pub balanced: u8,
    pub pad: [u8; 2],
}

/// Most nodes (vhids) one balanced carp interface can have.
pub const MAX_NODES: usize = 16;

/// `BalanceGroup::mode`, after OpenBSD's `balancing` modes.
pub const BALANCE_IP: u8 = 1;
pub const BALANCE_IP_STEALTH: u8 = 2;
pub const BALANCE_IP_UNICAST: u8 = 3;

/// Value of the `CARP_BALANCED` map, keyed by the `VhidKey` of the group's
/// leader: a carp interface whose addresses several vhids share, as
/// OpenBSD's `carpnodes` with `balancing ip|ip-stealth|ip-unicast`. A
/// packet belongs to node `nodes[hash % count]`, hash being the IPv4
/// source xor destination. Written by the agent at configuration, read by
/// the XDP program.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BalanceGroup {
    /// The node vhids in configuration order; the first `count` are used.
    pub nodes: [u8; MAX_NODES],
    pub count: u8,
    /// `BALANCE_IP`, `BALANCE_IP_STEALTH` or `BALANCE_IP_UNICAST`.
    pub mode: u8,
    /// The MAC the group's VIPs resolve to: multicast in `ip` mode.
    pub shared_mac: [u8; 6],
    /// The carpdev's own MAC: accepted frames are readdressed to it (one
    /// copy for the stack, however many carp interfaces share the
    /// carpdev), and ARP replies leave from it.
    pub carpdev_mac: [u8; 6],
    pub pad: [u8; 2],
}

/// The single entry of the `CARP_AGENT` array: the agent's heartbeat.
/// Written by the agent, read by the XDP program, which treats every VIP as
/// not owned once the heartbeat is older than `bound_ns` (fail closed).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AgentHeartbeat {
    /// `CLOCK_MONOTONIC` nanoseconds of the last beat; 0 before the first.
    pub beat_ns: u64,
    /// How old a beat may be before nothing is owned.
    pub bound_ns: u64,
}

/// Value of the `CARP_CLAIMED` map (keyed by `VipKey`): the last MAC seen
/// claiming a VIP (ARP reply, gratuitous ARP, neighbour advertisement) and
/// when. Written by XDP, read by the agent for `carpctl status`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipClaim {
    /// `bpf_ktime_get_ns()` when it was seen.
    pub seen_ns: u64,
    pub mac: [u8; 6],
    pub pad: [u8; 2],
}

/// A frame or packet claiming a VIP (ARP reply, gratuitous ARP, neighbour
/// advertisement), handed to the agent through `CARP_CLAIMS` when the
/// claiming MAC is not the vhid's virtual MAC. Written by XDP, read by the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimEvent {
    /// `bpf_ktime_get_ns()` at reception.
    pub timestamp_ns: u64,
    pub vip: VipKey,
    /// The MAC that claimed the VIP (ARP sender / NA target link-layer address).
    pub mac: [u8; 6],
    pub vhid: u8,
    pub pad: u8,
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
    /// Traffic for a VIP or the virtual MAC of a vhid we are MASTER of: passed.
    Owned = 7,
    /// Traffic for a VIP or the virtual MAC of a vhid we are not MASTER of,
    /// or an ARP request / neighbour solicitation for such a VIP: dropped.
    NotOwned = 8,
    /// As `NotOwned`, because the agent's heartbeat is stale (fail closed).
    AgentStale = 9,
    /// An ARP reply, gratuitous ARP or neighbour advertisement for a VIP
    /// from another MAC than the vhid's virtual MAC: passed, reported.
    Claim = 10,
    /// An ARP request for a balanced VIP, answered by the program itself
    /// with the group's shared MAC (the node the requester hashes to).
    Answered = 11,
}

impl Verdict {
    pub const COUNT: usize = 12;
    pub const ALL: [Verdict; Self::COUNT] = [
        Verdict::Accepted,
        Verdict::BadTtl,
        Verdict::BadLen,
        Verdict::BadVer,
        Verdict::BadSum,
        Verdict::BadVhid,
        Verdict::RingFull,
        Verdict::Owned,
        Verdict::NotOwned,
        Verdict::AgentStale,
        Verdict::Claim,
        Verdict::Answered,
    ];

    /// Whether this is about traffic for a VIP or virtual MAC (ownership),
    /// rather than about a CARP advertisement.
    pub const fn is_ownership(self) -> bool {
        matches!(
            self,
            Verdict::Owned
                | Verdict::NotOwned
                | Verdict::AgentStale
                | Verdict::Claim
                | Verdict::Answered
        )
    }

    /// Whether the program dropped the packet (the drop counters), as
    /// opposed to passing it or handing it to the agent.
    pub const fn is_drop(self) -> bool {
        !matches!(
            self,
            Verdict::Accepted | Verdict::Owned | Verdict::Claim | Verdict::Answered
        )
    }

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
            Verdict::Owned => "owned",
            Verdict::NotOwned => "notowned",
            Verdict::AgentStale => "agentstale",
            Verdict::Claim => "claim",
            Verdict::Answered => "answered",
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
const _: () = assert!(core::mem::size_of::<VhidState>() == 4);
const _: () = assert!(core::mem::size_of::<VipKey>() == 24);
const _: () = assert!(core::mem::size_of::<VipOwner>() == 4);
const _: () = assert!(core::mem::size_of::<BalanceGroup>() == 32);
const _: () = assert!(core::mem::size_of::<AgentHeartbeat>() == 16);
const _: () = assert!(core::mem::size_of::<ClaimEvent>() == 40);
const _: () = assert!(core::mem::size_of::<VipClaim>() == 16);
const _: () = assert!(core::mem::size_of::<CounterKey>() == 8);
const _: () = assert!(core::mem::size_of::<AdvertEvent>() == 72);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is repr(C), Copy, made of integers and byte arrays with
    // explicit padding, so every bit pattern is valid and there are no holes.
    unsafe impl aya::Pod for super::VhidKey {}
    unsafe impl aya::Pod for super::VhidState {}
    unsafe impl aya::Pod for super::VipKey {}
    unsafe impl aya::Pod for super::VipOwner {}
    unsafe impl aya::Pod for super::BalanceGroup {}
    unsafe impl aya::Pod for super::AgentHeartbeat {}
    unsafe impl aya::Pod for super::ClaimEvent {}
    unsafe impl aya::Pod for super::VipClaim {}
    unsafe impl aya::Pod for super::CounterKey {}
    unsafe impl aya::Pod for super::AdvertEvent {}
}
