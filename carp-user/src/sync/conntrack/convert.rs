//! Conversion between a conntrack entry as ctnetlink carries it and a
//! [`Flow`], with no I/O:
//!
//! - kernel attributes (a dump entry or an event) → [`Flow`] or [`FlowKey`],
//!   or a typed [`Skip`] for an entry a `Flow` cannot represent;
//! - [`Flow`] → the attributes of an `IPCTNL_MSG_CT_NEW` that creates the
//!   entry on the peer or updates it there;
//! - [`FlowKey`] → the attributes of a GET or DELETE.
//!
//! Parsing walks the attribute bytes in place (no allocation per attribute):
//! a dump of a million entries parses at memory speed. Encoding builds the
//! typed attributes of `netlink-packet-netfilter`.

mod encode;
mod parse;

use std::net::IpAddr;

pub use encode::{key_attributes, new_attributes};
pub use parse::{flow_from_attributes, key_from_attributes};

use super::uapi::{
    IP_CT_TCP_FLAG_BE_LIBERAL, IP_CT_TCP_FLAG_CLOSE_INIT, IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED,
    IP_CT_TCP_FLAG_SACK_PERM, IP_CT_TCP_FLAG_SIMULTANEOUS_OPEN, IP_CT_TCP_FLAG_WINDOW_SCALE,
    IPS_ASSURED, IPS_CONFIRMED, IPS_SEEN_REPLY, NFPROTO_IPV4, NFPROTO_IPV6, TCP_CONNTRACK_MAX,
};
use crate::sync::flow::Tuple;

/// Why a kernel conntrack entry does not become a [`Flow`]. Never a panic:
/// the entry is counted and left out of the replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("{0} missing")]
    Missing(&'static str),
    #[error("{0} malformed")]
    Malformed(&'static str),
    #[error("tuple mixes IPv4 and IPv6 addresses")]
    MixedFamilies,
    /// A layer-4 tuple attribute that is neither ports nor ICMP fields: a
    /// protocol whose key `L4` cannot hold.
    #[error("protocol {proto}: layer-4 tuple attribute {attribute} is not known")]
    UnknownL4 { proto: u8, attribute: u16 },
    /// SCTP and DCCP keep per-protocol state (`CTA_PROTOINFO_SCTP/DCCP`)
    /// that `Flow` has no room for; an entry installed without it would be
    /// a wrong entry on the peer, so none is installed.
    #[error("protocol {0} keeps state a Flow cannot carry")]
    ProtocolState(u8),
    /// A zone that applies to one direction only (`CTA_TUPLE_ZONE`): `Flow`
    /// has one zone for both.
    #[error("per-direction zone (CTA_TUPLE_ZONE) is not replicated")]
    DirectionalZone,
}

/// Why a [`Flow`] or [`FlowKey`] cannot be sent to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("tuple mixes IPv4 and IPv6 addresses")]
    MixedFamilies,
    #[error("original and reply tuples differ in address family or protocol")]
    TuplesDisagree,
    #[error("protocol {0} with ICMP id/type/code")]
    IcmpFieldsForProtocol(u8),
    #[error("TCP state {0} out of range (at most {max})", max = TCP_CONNTRACK_MAX - 1)]
    TcpState(u8),
    /// Creating a TCP entry without its state would leave the peer an entry
    /// in state NONE; `Flow`s from dumps and events always carry it.
    #[error("TCP flow without its TCP state")]
    MissingTcpState,
    #[error("protocol {0} keeps state a Flow cannot carry")]
    ProtocolState(u8),
}

/// How an installed TCP flow is window-checked on the receiving kernel.
///
/// A flow created over ctnetlink has no window data (`td_maxwin == 0` in
/// both directions), and `tcp_in_window` takes the first packet it then sees
/// in each direction as given ("mid-stream pickup"), learning the window
/// from it. Most of the time that works (tested: a retransmitted segment
/// passes either way). It fails in a failover case that matters: ACKs lost
/// in the switch-over, the sender retransmits its oldest segment, and the
/// receiver, which got newer data through the old master, answers with an
/// ACK beyond anything the new master saw sent. If the sender's segment is
/// the first the new master sees, that ACK and every later segment of the
/// receiver are INVALID, and a ruleset that drops INVALID stalls the
/// connection for good (reproduced on 6.18 by the namespace test
/// `tracked_flows_stall_when_acks_were_lost_in_the_failover`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcpWindow {
    /// Set `IP_CT_TCP_FLAG_BE_LIBERAL` on both directions: out-of-window
    /// packets of the flow are accepted instead of marked INVALID (state
    /// changes are still tracked). What conntrackd does unless
    /// `TCPWindowTracking` is on; the cost is that replicated flows are no
    /// longer window-checked on the node that took them over.
    #[default]
    Liberal,
    /// Send the sender's tracking flags as they are and rely on the kernel's
    /// mid-stream pickup. Strict, but see the failure case above.
    Track,
}

/// The status bits an install copies from the flow.
///
/// `nf_ct_change_status_common` answers EBUSY to a request whose status
/// differs from the entry's in `EXPECTED`, `CONFIRMED` or `DYING`, or that
/// clears `SEEN_REPLY` or `ASSURED`; `__nf_ct_change_status` silently ignores
/// the other kernel-owned bits (`*_NAT`, `*_NAT_DONE`, `SEQ_ADJUST`,
/// `TEMPLATE`, `UNTRACKED`, `OFFLOAD`, `HW_OFFLOAD`). Left out on purpose:
/// - `EXPECTED`: only valid with a master tuple (`CTA_TUPLE_MASTER`), and
///   expectations are not replicated: a related flow becomes a plain flow.
/// - `SRC_NAT`, `DST_NAT` and their `_DONE` bits: they describe a NAT
///   binding, which is not replicated (no `CTA_NAT_SRC/DST`): the peer gets
///   the tuples without the binding.
/// - `SEQ_ADJUST`: needs the NAT sequence-adjust extension we do not send.
/// - `FIXED_TIMEOUT`: on the peer it would make every later update of the
///   timeout fail with EPERM.
/// - `HELPER`: helpers are not replicated.
/// - `DYING`, `TEMPLATE`, `UNTRACKED`, `OFFLOAD`, `HW_OFFLOAD`: the kernel's own.
pub const INSTALL_STATUS: u32 = IPS_SEEN_REPLY | IPS_ASSURED;

/// The `CTA_STATUS` of an install: the replicable bits and `CONFIRMED`.
///
/// `CONFIRMED` is the kernel's, but it must be sent: the entry being updated
/// is confirmed, and a new entry already is when `ctnetlink_create_conntrack`
/// applies `CTA_STATUS`, so a status without it "changes" `CONFIRMED` and the
/// kernel refuses the whole request with EBUSY (seen on 6.18;
/// `libnetfilter_conntrack` adds the bit for the same reason).
pub fn install_status(status: u32) -> u32 {
    status & INSTALL_STATUS | IPS_CONFIRMED
}

/// The TCP tracking flags an install copies from the sender. Left out:
/// `MAXACK_SET` (`td_maxack` itself is not replicated, so the flag would
/// vouch for a zero) and `CHALLENGE_ACK` (about the last packet only). The
/// mask sent is 0xff, so both are cleared on an existing entry too.
pub const INSTALL_TCP_FLAGS: u8 = IP_CT_TCP_FLAG_WINDOW_SCALE
    | IP_CT_TCP_FLAG_SACK_PERM
    | IP_CT_TCP_FLAG_CLOSE_INIT
    | IP_CT_TCP_FLAG_BE_LIBERAL
    | IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
    | IP_CT_TCP_FLAG_SIMULTANEOUS_OPEN;

/// The `nfgen_family` of a flow or key: the family of its original tuple.
pub fn family_of(tuple: &Tuple) -> Result<u8, EncodeError> {
    match (tuple.src, tuple.dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => Ok(NFPROTO_IPV4),
        (IpAddr::V6(_), IpAddr::V6(_)) => Ok(NFPROTO_IPV6),
        _ => Err(EncodeError::MixedFamilies),
    }
}

#[cfg(test)]
mod tests;
