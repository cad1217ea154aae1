//! The synthetic conntrack entries the benchmark installs: TCP flows in
//! ESTABLISHED, every one with its own source address and port, so a table
//! of any size up to a few million is made of distinct entries.
//!
//! Two disjoint sets: the bulk table (sources in 172.16.0.0/12, to
//! 192.0.2.80:443) and the latency probes (sources in 198.18.0.0/15, to
//! 192.0.2.81:443), so the latency watcher never mistakes a bulk entry for
//! a probe. Neither touches the sync link's addresses, which both daemons
//! leave out of replication.

use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;

use carp::sync::flow::PROTO_TCP;
use carp::sync::{Flow, L4, TcpInfo, Tuple};

/// Source ports used per source address: 1024..61024.
const PORTS_PER_SOURCE: u32 = 60_000;
const FIRST_PORT: u32 = 1024;
const SERVER_PORT: u16 = 443;
/// `TCP_CONNTRACK_ESTABLISHED`.
const ESTABLISHED: u8 = 3;
/// `IP_CT_TCP_FLAG_WINDOW_SCALE | IP_CT_TCP_FLAG_SACK_PERM`: what a
/// handshake with both options leaves on each direction.
const HANDSHAKE_FLAGS: u8 = 0x01 | 0x02;
/// `IPS_SEEN_REPLY | IPS_ASSURED`: an established, answered flow.
const STATUS: u32 = (1 << 1) | (1 << 2);
/// Long enough that nothing expires during a run.
const TIMEOUT_SECS: u32 = 3600;

/// Which set of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    Bulk,
    Probe,
}

impl Set {
    const fn base(self) -> Ipv4Addr {
        match self {
            Self::Bulk => Ipv4Addr::new(172, 16, 0, 0),
            Self::Probe => Ipv4Addr::new(198, 18, 0, 0),
        }
    }

    const fn server(self) -> Ipv4Addr {
        match self {
            Self::Bulk => Ipv4Addr::new(192, 0, 2, 80),
            Self::Probe => Ipv4Addr::new(192, 0, 2, 81),
        }
    }
}

/// Entry `index` of `set`.
pub fn flow(set: Set, index: u32) -> Flow {
    let source = Ipv4Addr::from(u32::from(set.base()) + index / PORTS_PER_SOURCE);
    let port = u16::try_from(FIRST_PORT + index % PORTS_PER_SOURCE).unwrap_or(u16::MAX);
    let client = IpAddr::V4(source);
    let server = IpAddr::V4(set.server());
    let original = Tuple {
        src: client,
        dst: server,
        proto: PROTO_TCP,
        l4: L4::Ports {
            src: port,
            dst: SERVER_PORT,
        },
    };
    let reply = Tuple {
        src: server,
        dst: client,
        proto: PROTO_TCP,
        l4: L4::Ports {
            src: SERVER_PORT,
            dst: port,
        },
    };
    Flow {
        original,
        reply,
        zone: 0,
        status: STATUS,
        timeout_secs: TIMEOUT_SECS,
        mark: 0,
        tcp: Some(TcpInfo {
            state: ESTABLISHED,
            wscale_original: 7,
            wscale_reply: 7,
            flags_original: HANDSHAKE_FLAGS,
            flags_reply: HANDSHAKE_FLAGS,
        }),
    }
}

/// Entries `range` of `set`, made as they are needed (a million flows held
/// at once would be a hundred megabytes for nothing).
pub fn flows(set: Set, range: Range<u32>) -> impl Iterator<Item = Flow> {
    range.map(move |index| flow(set, index))
}

/// The index of a probe from its original tuple, if it is one.
pub fn probe_index(original: &Tuple) -> Option<u32> {
    let (IpAddr::V4(source), IpAddr::V4(server)) = (original.src, original.dst) else {
        return None;
    };
    let L4::Ports {
        src: port,
        dst: SERVER_PORT,
    } = original.l4
    else {
        return None;
    };
    if original.proto != PROTO_TCP || server != Set::Probe.server() {
        return None;
    }
    let host = u32::from(source).checked_sub(u32::from(Set::Probe.base()))?;
    let port = u32::from(port).checked_sub(FIRST_PORT)?;
    if port >= PORTS_PER_SOURCE {
        return None;
    }
    host.checked_mul(PORTS_PER_SOURCE)?.checked_add(port)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn entries_are_distinct_across_source_addresses() {
        let keys: HashSet<_> = flows(Set::Bulk, 0..150_000).map(|f| f.key()).collect();
        assert_eq!(keys.len(), 150_000);
        let last = flow(Set::Bulk, 149_999);
        assert_eq!(last.original.src, IpAddr::V4(Ipv4Addr::new(172, 16, 0, 2)));
        assert_eq!(
            last.original.l4,
            L4::Ports {
                src: 1024 + 29_999,
                dst: 443
            }
        );
    }

    #[test]
    fn the_reply_tuple_mirrors_the_original() {
        let flow = flow(Set::Bulk, 7);
        assert_eq!(flow.reply.src, flow.original.dst);
        assert_eq!(flow.reply.dst, flow.original.src);
        assert_eq!(
            flow.reply.l4,
            L4::Ports {
                src: 443,
                dst: 1031
            }
        );
        assert_eq!(flow.tcp.map(|tcp| tcp.state), Some(ESTABLISHED));
    }

    #[test]
    fn probes_are_found_again_by_their_tuple_and_bulk_entries_are_not() {
        for index in [0, 1, 59_999, 60_000, 1_234_567] {
            assert_eq!(probe_index(&flow(Set::Probe, index).original), Some(index));
            assert_eq!(probe_index(&flow(Set::Bulk, index).original), None);
        }
        assert_eq!(probe_index(&flow(Set::Probe, 3).reply), None);
    }
}
