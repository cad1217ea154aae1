//! What the sync service reports to `carpctl status` and `/metrics`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A snapshot of the sync service, published on every heartbeat and on
/// every change of the bulk state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncStatus {
    pub syncdev: String,
    /// The peer session we last heard from, in hex; none yet.
    pub peer_session: Option<String>,
    /// Heard within the last three heartbeats.
    pub peer_up: bool,
    /// Milliseconds since the peer was last heard.
    pub peer_heard_ms_ago: Option<u64>,
    /// The peer says it is in sync with us.
    pub peer_in_sync: bool,
    /// Our bulk update: none, requested, receiving, done, failed.
    pub bulk: String,
    /// What sync adds to group carp's demote counter now.
    pub demotion: u8,
    /// Sync messages sent and received (authenticated and fresh).
    pub messages_sent: u64,
    pub messages_received: u64,
    /// Flow changes sent, received, and applied to our conntrack table.
    pub updates_sent: u64,
    pub updates_received: u64,
    pub updates_applied: u64,
    /// Changes the kernel refused to apply.
    pub updates_failed: u64,
    /// Local changes not sent yet (batched for a few milliseconds).
    pub pending: u64,
    /// State messages the peer said (in its last heartbeat) it had sent
    /// that had not reached us then: in flight, or lost (then resynced).
    pub lag: u64,
    /// Datagrams dropped, by reason (`bad_mac`, `replayed`, ...).
    pub drops: BTreeMap<String, u64>,
    /// Times our own conntrack events overran (each one resyncs the peer).
    pub overruns: u64,
    /// Bulk updates we answered.
    pub bulks_answered: u64,
    /// Entries in this node's conntrack table.
    pub entries: u64,
}
