//! One conntrack entry as carpd replicates it: the part of netfilter's state
//! a peer's kernel needs to accept the connection mid-stream after a failover.
//!
//! Both ends of the sync speak this type: `conntrack` turns kernel entries into
//! flows and back, `wire` puts flows into sync messages. NAT bindings, helpers,
//! expectations, labels and accounting are not replicated (yet).

use std::net::IpAddr;

/// IP protocol numbers carpd knows how to key.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// The layer-4 part of a conntrack tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4 {
    /// TCP, UDP and other port-based protocols (SCTP, DCCP, UDP-Lite).
    Ports { src: u16, dst: u16 },
    /// ICMP and `ICMPv6`: the echo id and the message type and code.
    Icmp { id: u16, kind: u8, code: u8 },
    /// A protocol conntrack tracks by addresses only (GRE without the
    /// helper, ESP, ...).
    None,
}

/// One direction of a connection, as conntrack's `CTA_TUPLE_ORIG` /
/// `CTA_TUPLE_REPLY`. `src` and `dst` are always of the same family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub l4: L4,
}

/// TCP tracking state (`CTA_PROTOINFO_TCP`): the state and, per direction,
/// the window scale and the tracking flags (`IP_CT_TCP_FLAG_*`), so the
/// receiving kernel window-checks the flow as the sender's did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpInfo {
    /// `TCP_CONNTRACK_*`: 3 is ESTABLISHED.
    pub state: u8,
    pub wscale_original: u8,
    pub wscale_reply: u8,
    pub flags_original: u8,
    pub flags_reply: u8,
}

/// A conntrack entry to install on (or remove from) the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub original: Tuple,
    pub reply: Tuple,
    /// Conntrack zone (`CTA_ZONE`), 0 by default; part of the key.
    pub zone: u16,
    /// `IPS_*` status bits (`CTA_STATUS`), e.g. `ASSURED`, `SEEN_REPLY`.
    pub status: u32,
    /// Seconds until the kernel expires the entry (`CTA_TIMEOUT`).
    pub timeout_secs: u32,
    /// `CTA_MARK`.
    pub mark: u32,
    /// Present for TCP only.
    pub tcp: Option<TcpInfo>,
}

/// What identifies a conntrack entry: its original tuple in its zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub original: Tuple,
    pub zone: u16,
}

impl Flow {
    pub fn key(&self) -> FlowKey {
        FlowKey {
            original: self.original,
            zone: self.zone,
        }
    }
}
