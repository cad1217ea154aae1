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
/// Upper bound of carpdevs.
pub const MAX_CARPDEVS: u32 = 64;
/// Entries of `CARP_CARPDEVS`: a carpdev's home there is
/// `carpdev_home(ifindex)`.
pub const CARPDEV_HOMES: u32 = 256;
/// Entries of `CARP_VHIDS` each carpdev has, one per vhid (0 included).
pub const VHIDS_PER_CARPDEV: u32 = 256;
/// Entries of `CARP_VHIDS`.
pub const VHID_ENTRIES: u32 = MAX_CARPDEVS * VHIDS_PER_CARPDEV;
/// Claim event ring buffer size in bytes.
pub const CLAIM_RING_BYTES: u32 = 64 * 1024;
/// Upper bound of configured VIPs over all carpdevs.
pub const MAX_VIPS: u32 = 4096;
/// Counter rows: one per configured vhid, one per carpdev for packets tied
/// to no configured vhid.
pub const MAX_COUNTER_ROWS: u32 = MAX_VHIDS + MAX_CARPDEVS;
/// Verdicts, each counted in a row of `CARP_COUNTERS`.
#[expect(
    clippy::cast_possible_truncation,
    reason = "a dozen verdicts; Verdict::from_u8 needs them to fit a byte anyway"
)]
pub const VERDICTS: u32 = Verdict::COUNT as u32;
/// Entries of `CARP_COUNTERS`: `VERDICTS` per counter row.
pub const COUNTER_ENTRIES: u32 = MAX_COUNTER_ROWS * VERDICTS;
/// Words (u64) of the `CARP_VIP_FILTER` bitmap: 64 Ki bits, so that even
/// `MAX_VIPS` addresses leave 94% of the bits clear.
pub const VIP_FILTER_WORDS: u32 = 1024;
/// log2 of the bits in `CARP_VIP_FILTER`.
const VIP_FILTER_BITS_LOG2: u32 = 16;
const _: () = assert!(VIP_FILTER_WORDS * 64 == 1 << VIP_FILTER_BITS_LOG2);

/// A vhid on a carpdev, as the agent names the vhids it configured.
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
/// `VhidState::role` of a MASTER whose agent stopped beating: the XDP
/// watchdog turns every `ROLE_MASTER` into this when the agent's heartbeat
/// outlives its bound (fail closed), and the agent writes its roles again
/// at its next beat. Not owned; its drops count as `Verdict::AgentStale`.
pub const ROLE_STALE: u8 = 2;

/// An entry of the `CARP_VHIDS` array, at `Carpdev::vhids + vhid`: whether
/// the vhid is configured on the carpdev, this node's role for it, and
/// where its packets are counted. Written by the agent, read by the XDP
/// program, which drops advertisements for vhids not configured (`badvhid`).
///
/// The agent flips ownership of every VIP and of the virtual MAC with one
/// write of this entry, in which only `role` changes, so the datapath never
/// sees half a failover (nor a torn entry: the other bytes stay as they were).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VhidState {
    /// `ROLE_BACKUP`, `ROLE_MASTER` or `ROLE_STALE`; anything else counts
    /// as backup.
    pub role: u8,
    /// 1 if this vhid leads a balanced group, whose entry in
    /// `CARP_BALANCED` is at `group`: frames for its MAC are split across
    /// the group.
    pub leads_group: u8,
    /// 1 if the vhid is configured on the carpdev. The entry of vhid 0 (no
    /// vhid) is never configured: it only holds the carpdev's counter row.
    pub configured: u8,
    /// The index of the group it leads in `CARP_BALANCED`, if it leads one.
    pub group: u8,
    /// The row of `CARP_COUNTERS` this vhid's verdicts go to; in the entry
    /// of vhid 0, the row of packets tied to no configured vhid.
    pub counters: u32,
}

impl VhidState {
    /// A configured vhid, not owned, counted in row `counters`, leading
    /// the balanced group at `group` in `CARP_BALANCED` if any.
    pub const fn configured(counters: u32, group: Option<u8>) -> Self {
        let (leads_group, group) = match group {
            Some(group) => (1, group),
            None => (0, 0),
        };
        Self {
            role: ROLE_BACKUP,
            leads_group,
            configured: 1,
            group,
            counters,
        }
    }

    /// The entry of vhid 0: the carpdev's row for packets tied to no vhid.
    pub const fn unconfigured(counters: u32) -> Self {
        Self {
            role: ROLE_BACKUP,
            leads_group: 0,
            configured: 0,
            group: 0,
            counters,
        }
    }

    /// The same entry with this node MASTER (or not).
    #[must_use]
    pub const fn with_role(self, master: bool) -> Self {
        Self {
            role: if master { ROLE_MASTER } else { ROLE_BACKUP },
            ..self
        }
    }

    pub const fn is_master(self) -> bool {
        self.role == ROLE_MASTER
    }

    pub const fn is_configured(self) -> bool {
        self.configured != 0
    }

    /// The index in `CARP_BALANCED` of the group this vhid leads.
    pub const fn led_group(self) -> Option<u8> {
        if self.leads_group != 0 {
            Some(self.group)
        } else {
            None
        }
    }
}

/// An entry of the `CARP_CARPDEVS` array (at `carpdev_home(ifindex)`) or a
/// value of `CARP_COLLIDED` (keyed by ifindex, for a carpdev whose home
/// another one holds): where a carpdev's vhids are in `CARP_VHIDS`.
/// Written by the agent when it first meets the carpdev, read by the XDP
/// program; arrays, not hash maps, because the verifier inlines their
/// lookups and the program makes one per packet it judges.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Carpdev {
    /// Interface index, host byte order; 0 in an empty home.
    pub ifindex: u32,
    /// Index in `CARP_VHIDS` of the carpdev's vhid 0: vhid `v` is at
    /// `vhids + v`. A multiple of `VHIDS_PER_CARPDEV`.
    pub vhids: u32,
}

/// The entry of `CARP_CARPDEVS` where the carpdev `ifindex` lives, unless
/// another carpdev took it first.
pub const fn carpdev_home(ifindex: u32) -> u32 {
    ifindex % CARPDEV_HOMES
}

/// The entry of `CARP_COUNTERS` counting `verdict` in counter row `row`.
pub const fn counter_index(row: u32, verdict: Verdict) -> u32 {
    row * VERDICTS + verdict as u32
}

/// Where a VIP's bit is in the `CARP_VIP_FILTER` bitmap: the word's index
/// and the bit's mask in it. The agent sets the bit of every VIP; the XDP
/// program consults `CARP_VIPS` (a hash map, dearer) only for addresses
/// whose bit is set, so traffic for other addresses passes after one
/// array lookup. `address` as in `VipKey` (IPv4 in the first 4 bytes).
pub const fn vip_filter_bit(address: &[u8; 16]) -> (u32, u64) {
    vip_filter_bit_of_fold(
        le_word(address, 0) ^ le_word(address, 4) ^ le_word(address, 8) ^ le_word(address, 12),
    )
}

const fn le_word(bytes: &[u8; 16], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// `vip_filter_bit` of an IPv4 address (network byte order), without the
/// zero words.
pub const fn vip_filter_bit_v4(address: [u8; 4]) -> (u32, u64) {
    vip_filter_bit_of_fold(u32::from_le_bytes(address))
}

/// Fibonacci hashing of the address folded to 32 bits: the top bits of the
/// product mix every input bit.
const fn vip_filter_bit_of_fold(fold: u32) -> (u32, u64) {
    let bit = fold.wrapping_mul(0x9e37_79b1) >> (32 - VIP_FILTER_BITS_LOG2);
    (bit / 64, 1 << (bit % 64))
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
/// Entries of `CARP_BALANCED`: most balanced groups (indexed by a u8).
pub const MAX_GROUPS: u32 = 256;

/// `BalanceGroup::mode`, after OpenBSD's `balancing` modes.
pub const BALANCE_IP: u8 = 1;
pub const BALANCE_IP_STEALTH: u8 = 2;
pub const BALANCE_IP_UNICAST: u8 = 3;

/// An entry of the `CARP_BALANCED` array, at the index its leader's
/// `VhidState::group` names: a carp interface whose addresses several vhids
/// share, as OpenBSD's `carpnodes` with `balancing ip|ip-stealth|ip-unicast`.
/// A packet belongs to node `nodes[hash % count]`, hash being the IPv4
/// source xor destination. Written by the agent at configuration (before
/// the leader's entry), read by the XDP program. An entry with `count` 0 is
/// no group.
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

/// Ethertype of the agent's heartbeat frames (IEEE 802 local experimental
/// 1). The agent runs the XDP program over one at every beat through
/// `BPF_PROG_TEST_RUN`, which presents it on the loopback device, where the
/// program is never attached: after the Ethernet header, `beat_ns` then
/// `bound_ns` (`AgentHeartbeat`), native byte order, then 8 bytes where the
/// program answers with `BEAT_EXPIRIES_AT`.
pub const ETH_P_CARP_BEAT: u16 = 0x88b5;
/// A heartbeat frame: Ethernet header and three u64.
pub const BEAT_FRAME_LEN: usize = 14 + 24;
/// Where the program writes, in the heartbeat frame it took, how many
/// times its watchdog has run out (demoting every MASTER to `ROLE_STALE`):
/// a count the agent has not seen means its roles must be written again.
pub const BEAT_EXPIRIES_AT: usize = 14 + 16;

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
const _: () = assert!(core::mem::size_of::<VhidState>() == 8);
const _: () = assert!(core::mem::size_of::<Carpdev>() == 8);
const _: () = assert!(core::mem::size_of::<VipKey>() == 24);
const _: () = assert!(core::mem::size_of::<VipOwner>() == 4);
const _: () = assert!(core::mem::size_of::<BalanceGroup>() == 32);
const _: () = assert!(core::mem::size_of::<AgentHeartbeat>() == 16);
const _: () = assert!(core::mem::size_of::<ClaimEvent>() == 40);
const _: () = assert!(core::mem::size_of::<VipClaim>() == 16);
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
    unsafe impl aya::Pod for super::Carpdev {}
    unsafe impl aya::Pod for super::AdvertEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_address_has_the_same_filter_bit_alone_or_in_a_key() {
        for address in [[192, 0, 2, 1], [10, 0, 0, 1], [0, 0, 0, 0], [255; 4]] {
            assert_eq!(
                vip_filter_bit_v4(address),
                vip_filter_bit(&VipKey::v4(1, address).address),
                "{address:?}"
            );
        }
    }

    #[test]
    fn filter_bits_fall_inside_the_bitmap_and_spread() {
        let mut words = [0u64; VIP_FILTER_WORDS as usize];
        for host in 0..=255u8 {
            for address in [
                VipKey::v4(1, [192, 0, 2, host]).address,
                VipKey::v6(
                    1,
                    [
                        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, host,
                    ],
                )
                .address,
            ] {
                let (word, mask) = vip_filter_bit(&address);
                assert!(word < VIP_FILTER_WORDS);
                assert_eq!(mask.count_ones(), 1);
                words[word as usize] |= mask;
            }
        }
        let set: u32 = words.iter().map(|w| w.count_ones()).sum();
        // 512 addresses over 64 Ki bits: a handful of collisions at most.
        assert!(set > 500, "{set} bits set");
    }

    #[test]
    fn counter_rows_do_not_overlap() {
        assert_eq!(
            counter_index(0, Verdict::Answered) + 1,
            counter_index(1, Verdict::Accepted)
        );
        assert_eq!(
            counter_index(MAX_COUNTER_ROWS - 1, Verdict::Answered),
            COUNTER_ENTRIES - 1
        );
    }

    #[test]
    fn homes_wrap_around() {
        assert_eq!(carpdev_home(3), 3);
        assert_eq!(carpdev_home(3 + CARPDEV_HOMES), 3);
    }

    #[test]
    fn a_role_change_touches_only_the_role() {
        let state = VhidState::configured(42, Some(5));
        let master = state.with_role(true);
        assert!(master.is_master() && master.is_configured());
        assert_eq!(master.with_role(false), state);
        assert_eq!((master.counters, master.led_group()), (42, Some(5)));
        assert_eq!(VhidState::configured(1, None).led_group(), None);
        assert!(!VhidState::unconfigured(3).is_configured());
    }
}
