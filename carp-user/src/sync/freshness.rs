//! Sessions and replay: which authenticated sync messages are fresh. Pure:
//! no I/O, no clock.
//!
//! The MAC proves a datagram came from a holder of the key, not that it is
//! new: anyone on the sync link can record traffic and send it again. Every
//! carpd start draws a random session; a sender numbers its messages per
//! session and per [`Channel`], and echoes the session it last heard from
//! us (`peer_session`). A receiver ([`Freshness`]) then accepts:
//!
//! - a Heartbeat from any session: it may introduce a session we have not
//!   seen (the peer restarted, or we did) but it applies no state;
//! - any other message only if its `peer_session` is our current session
//!   (its sender has heard *this* incarnation of us: traffic recorded before
//!   our restart is `stale_session`) and its sender session is known
//!   (`unknown_session` otherwise);
//! - each seq once, in a sliding window of 64 behind the highest seen
//!   (`replayed` otherwise);
//! - nothing from our own session (`own_session`: a looped-back datagram,
//!   e.g. a multicast sync link with loopback on).
//!
//! An accepted message reports the *gap*: state-channel seqs newly known to
//! be lost. The caller treats a gap as loss of sync (ask for a bulk update)
//! rather than silently diverging. The control channel (heartbeats, bulk
//! requests) reports no gap: losing one loses no state, and a node that is
//! in sync must not ask for a bulk because the sync link flapped.
//!
//! A heartbeat carries the seq of the last state message its sender sent.
//! If it proves its sender heard us, state seqs it names that we never
//! received are a gap (the last update before a quiet period was lost). If
//! not, they were sent before the sender knew this incarnation of us (they
//! would be refused as stale anyway) and are skipped silently; that is also
//! where a newly learned session's state window starts, so state traffic
//! from before it is refused as replayed.
//!
//! Known sessions are bounded ([`DEFAULT_MAX_SESSIONS`]). A new one evicts
//! the least recently used, preferring sessions that never proved they heard
//! us: replayed heartbeats from before our start can then never push out a
//! live peer. Eviction forgets a session's window, so a session can be
//! re-learned from a recording of its heartbeats and its recorded state
//! traffic replayed; that takes more than [`DEFAULT_MAX_SESSIONS`] newer
//! sessions that heard us (peer restarts during our lifetime) to evict it.
//!
//! [`Sequencer`] is the sending half: per-channel numbering, `state_seq` in
//! heartbeats, no state before the peer is heard.

use std::num::NonZeroU64;

use super::wire::{Channel, Envelope, Kind, Message};

/// Known peer sessions kept by default: the live peer and a few it had
/// before (carpd is deployed in pairs).
pub const DEFAULT_MAX_SESSIONS: usize = 8;

/// Seqs behind the highest one still accepted once (the bitmap's width).
pub const REPLAY_WINDOW: u64 = 64;

/// Why a fresh message is fresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// A heartbeat from a session we did not know; now we do. `gap`: state
    /// messages it proves we missed (0 if it does not prove it heard us).
    Learned { gap: u64 },
    /// The highest seq so far on its channel; `gap` state seqs newly known
    /// lost.
    InOrder { gap: u64 },
    /// Older than the highest on its channel, inside the window, not seen
    /// before: a reordered message. On the state channel its seq was part of
    /// an earlier gap, already reported and handled; an Update arriving late
    /// may be older than what has been applied since, so a caller that
    /// resyncs on gaps should not apply it.
    Late,
}

impl Accepted {
    /// State-channel seqs newly known lost: the caller's cue to resync.
    pub const fn gap(&self) -> u64 {
        match self {
            Accepted::Learned { gap } | Accepted::InOrder { gap } => *gap,
            Accepted::Late => 0,
        }
    }

    pub const fn label(&self) -> &'static str {
        match self {
            Accepted::Learned { .. } => "learned",
            Accepted::InOrder { .. } => "accepted",
            Accepted::Late => "late",
        }
    }
}

/// Why an authenticated message is not acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("seq already seen or older than the replay window")]
    Replayed,
    #[error("sent to another session of ours (before our restart, or a replay)")]
    StaleSession,
    #[error("from a session no heartbeat has introduced")]
    UnknownSession,
    /// Our own message came back (multicast loop, a reflecting switch).
    #[error("our own session: a looped-back message")]
    OwnSession,
}

impl Rejected {
    pub const fn label(&self) -> &'static str {
        match self {
            Rejected::Replayed => "replayed",
            Rejected::StaleSession => "stale_session",
            Rejected::UnknownSession => "unknown_session",
            Rejected::OwnSession => "own_session",
        }
    }
}

/// One channel's sliding window: the highest seq and a bitmap of the 64
/// seqs at and below it (bit i: `highest - i` seen).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    highest: u64,
    seen: u64,
}

enum Slot {
    Newest { gap: u64 },
    Late,
}

impl Window {
    /// Everything up to `highest` counts as seen.
    const fn from(highest: u64) -> Self {
        Self {
            highest,
            seen: u64::MAX,
        }
    }

    /// Takes `seq` if it was not seen; `None` for a replay.
    fn accept(&mut self, seq: u64) -> Option<Slot> {
        if seq > self.highest {
            let gap = self.advance(seq, false) - 1;
            self.seen |= 1;
            return Some(Slot::Newest { gap });
        }
        let offset = self.highest - seq;
        if offset >= REPLAY_WINDOW {
            return None;
        }
        let bit = 1u64 << offset;
        if self.seen & bit != 0 {
            return None;
        }
        self.seen |= bit;
        Some(Slot::Late)
    }

    /// Moves the highest seq up to `to` without taking `to`; the seqs passed
    /// over are marked seen if `seen`, else left to arrive late. Returns how
    /// many seqs were passed over (`to` included).
    fn advance(&mut self, to: u64, seen: bool) -> u64 {
        if to <= self.highest {
            return 0;
        }
        let shift = to - self.highest;
        self.seen = if seen {
            u64::MAX
        } else if shift >= REPLAY_WINDOW {
            0
        } else {
            self.seen << shift
        };
        self.highest = to;
        shift
    }
}

#[derive(Clone, Debug)]
struct Peer {
    session: NonZeroU64,
    control: Window,
    state: Window,
    /// Some message of this session carried our session: it has heard us.
    proven: bool,
    /// Recency, for eviction: the value of `Freshness::clock` at its last
    /// accepted message.
    used: u64,
}

/// The receiver's view of peer sessions.
#[derive(Clone, Debug)]
pub struct Freshness {
    our_session: NonZeroU64,
    capacity: usize,
    peers: Vec<Peer>,
    clock: u64,
}

/// What [`Freshness`] needs from a message.
#[derive(Clone, Copy, Debug)]
struct Stamp {
    kind: Kind,
    sender_session: NonZeroU64,
    peer_session: u64,
    seq: u64,
    /// The `state_seq` of a heartbeat.
    state_seq: Option<u64>,
}

impl Freshness {
    pub fn new(our_session: NonZeroU64) -> Self {
        Self::with_capacity(our_session, DEFAULT_MAX_SESSIONS)
    }

    /// Keeps at most `capacity` (at least 1) peer sessions.
    pub fn with_capacity(our_session: NonZeroU64, capacity: usize) -> Self {
        Self {
            our_session,
            capacity: capacity.max(1),
            peers: Vec::new(),
            clock: 0,
        }
    }

    pub fn our_session(&self) -> NonZeroU64 {
        self.our_session
    }

    /// Whether `envelope` is fresh; a fresh one is recorded so it is not
    /// accepted again. Call after the MAC is verified (`Envelope::decode`).
    pub fn check(&mut self, envelope: &Envelope) -> Result<Accepted, Rejected> {
        let state_seq = match envelope.message {
            Message::Heartbeat { state_seq, .. } => Some(state_seq),
            _ => None,
        };
        self.check_stamp(Stamp {
            kind: envelope.message.kind(),
            sender_session: envelope.sender_session,
            peer_session: envelope.peer_session,
            seq: envelope.seq.get(),
            state_seq,
        })
    }

    fn check_stamp(&mut self, stamp: Stamp) -> Result<Accepted, Rejected> {
        if stamp.sender_session == self.our_session {
            return Err(Rejected::OwnSession);
        }
        let heartbeat = stamp.kind == Kind::Heartbeat;
        let proven = stamp.peer_session == self.our_session.get();
        if !heartbeat && !proven {
            return Err(Rejected::StaleSession);
        }
        self.clock += 1;
        let clock = self.clock;
        let Some(peer) = self
            .peers
            .iter_mut()
            .find(|peer| peer.session == stamp.sender_session)
        else {
            if !heartbeat {
                return Err(Rejected::UnknownSession);
            }
            let state_seq = stamp.state_seq.unwrap_or(0);
            self.learn(Peer {
                session: stamp.sender_session,
                control: Window {
                    highest: stamp.seq,
                    seen: 1,
                },
                state: Window::from(state_seq),
                proven,
                used: clock,
            });
            let gap = if proven { state_seq } else { 0 };
            return Ok(Accepted::Learned { gap });
        };
        let window = match stamp.kind.channel() {
            Channel::Control => &mut peer.control,
            Channel::State => &mut peer.state,
        };
        let slot = window.accept(stamp.seq).ok_or(Rejected::Replayed)?;
        peer.used = clock;
        // Once a session has heard us, state it names that we lack was meant
        // for us, even if this heartbeat echoes something else.
        let ours = proven || peer.proven;
        peer.proven = ours;
        Ok(match slot {
            Slot::Late => Accepted::Late,
            Slot::Newest { gap } => match (stamp.kind.channel(), stamp.state_seq) {
                (Channel::State, _) => Accepted::InOrder { gap },
                (Channel::Control, Some(state_seq)) => {
                    let passed = peer.state.advance(state_seq, !ours);
                    Accepted::InOrder {
                        gap: if ours { passed } else { 0 },
                    }
                }
                (Channel::Control, None) => Accepted::InOrder { gap: 0 },
            },
        })
    }

    fn learn(&mut self, peer: Peer) {
        if self.peers.len() >= self.capacity
            && let Some(victim) = self
                .peers
                .iter()
                .enumerate()
                .min_by_key(|(_, peer)| (peer.proven, peer.used))
                .map(|(i, _)| i)
        {
            self.peers.swap_remove(victim);
        }
        self.peers.push(peer);
    }

    /// The session to echo as `peer_session` in what we send: the sender
    /// session of the last message we accepted, preferring sessions that
    /// have heard us (a replayed heartbeat from before our start must not
    /// redirect what we echo away from the live peer); 0 before any. A
    /// restarted peer takes over as soon as it has heard our heartbeat.
    pub fn last_heard(&self) -> u64 {
        self.peers
            .iter()
            .max_by_key(|peer| (peer.proven, peer.used))
            .map_or(0, |peer| peer.session.get())
    }

    /// Whether `session` has shown it heard our current session: from then
    /// on it takes our state messages and bulk requests. The daemon compares
    /// this before and after [`Freshness::check`] to tell the bulk requester
    /// the peer is ready (`bulk::Event::PeerReady`).
    pub fn hears_us(&self, session: NonZeroU64) -> bool {
        self.peers
            .iter()
            .any(|peer| peer.session == session && peer.proven)
    }

    pub fn is_known(&self, session: NonZeroU64) -> bool {
        self.peers.iter().any(|peer| peer.session == session)
    }

    /// Known sessions.
    pub fn sessions(&self) -> usize {
        self.peers.len()
    }
}

/// Why a message was not given a seq.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Only heartbeats go out before we have heard the peer: it would refuse
    /// anything else as stale, and the seq spent would look like a loss.
    #[error("no {} before the peer is heard", .0.label())]
    PeerNotHeard(Kind),
}

/// The sending half: our session and the next seq of each channel.
#[derive(Clone, Debug)]
pub struct Sequencer {
    session: NonZeroU64,
    control: u64,
    state: u64,
}

impl Sequencer {
    pub fn new(session: NonZeroU64) -> Self {
        Self {
            session,
            control: 0,
            state: 0,
        }
    }

    pub fn session(&self) -> NonZeroU64 {
        self.session
    }

    /// The seq of the last state message, skipped ones included.
    pub fn last_state_seq(&self) -> u64 {
        self.state
    }

    /// Numbers `message` for sending to a peer whose session we last heard
    /// as `peer_session` ([`Freshness::last_heard`]). A heartbeat's
    /// `state_seq` is filled in here.
    pub fn envelope(
        &mut self,
        mut message: Message,
        peer_session: u64,
    ) -> Result<Envelope, SendError> {
        let kind = message.kind();
        if kind != Kind::Heartbeat && peer_session == 0 {
            return Err(SendError::PeerNotHeard(kind));
        }
        if let Message::Heartbeat { state_seq, .. } = &mut message {
            *state_seq = self.state;
        }
        let counter = match kind.channel() {
            Channel::Control => &mut self.control,
            Channel::State => &mut self.state,
        };
        // 2^64 messages take longer than any uptime; saturate rather than wrap.
        *counter = counter.saturating_add(1);
        Ok(Envelope {
            sender_session: self.session,
            peer_session,
            seq: NonZeroU64::MIN.saturating_add(*counter - 1),
            message,
        })
    }

    /// Spends a state seq without sending: we lost changes we should have
    /// sent (our own conntrack event socket overran), so the peer must see a
    /// gap (at our next state message or heartbeat) and resync.
    pub fn skip_state(&mut self) {
        self.state = self.state.saturating_add(1);
    }
}

/// A fresh random session for a carpd start.
pub fn new_session<R: rand::Rng + ?Sized>(rng: &mut R) -> NonZeroU64 {
    rng.r#gen()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const US: u64 = 0xaaaa;
    const PEER: u64 = 0xbbbb;

    fn nz(value: u64) -> NonZeroU64 {
        NonZeroU64::new(value).expect("not 0")
    }

    fn freshness() -> Freshness {
        Freshness::new(nz(US))
    }

    fn stamp(kind: Kind, sender: u64, peer: u64, seq: u64) -> Stamp {
        Stamp {
            kind,
            sender_session: nz(sender),
            peer_session: peer,
            seq,
            state_seq: (kind == Kind::Heartbeat).then_some(0),
        }
    }

    fn heartbeat(sender: u64, peer: u64, seq: u64, state_seq: u64) -> Stamp {
        Stamp {
            state_seq: Some(state_seq),
            ..stamp(Kind::Heartbeat, sender, peer, seq)
        }
    }

    fn update(seq: u64) -> Stamp {
        stamp(Kind::Update, PEER, US, seq)
    }

    /// A freshness that knows PEER (learned from its heartbeat 1, which
    /// proves it heard us, with no state sent yet).
    fn knowing_peer() -> Freshness {
        let mut fresh = freshness();
        assert_eq!(
            fresh.check_stamp(heartbeat(PEER, US, 1, 0)),
            Ok(Accepted::Learned { gap: 0 })
        );
        fresh
    }

    /// Runs each case's stamps through a new receiver and compares the
    /// verdict of the last one.
    fn run(table: Vec<(&str, Vec<Stamp>, Result<Accepted, Rejected>)>) {
        for (name, stamps, expected) in table {
            let mut fresh = freshness();
            let mut last = None;
            for stamp in stamps {
                last = Some(fresh.check_stamp(stamp));
            }
            assert_eq!(last, Some(expected), "{name}");
        }
    }

    /// Who may speak: learning, stale and unknown sessions, loops.
    #[test]
    fn sessions() {
        let other = 0xcccc;
        let table: Vec<(&str, Vec<Stamp>, Result<Accepted, Rejected>)> = vec![
            (
                "a heartbeat introduces a session even before it heard us",
                vec![heartbeat(PEER, 0, 1, 0)],
                Ok(Accepted::Learned { gap: 0 }),
            ),
            (
                "also with an old session of ours",
                vec![heartbeat(PEER, other, 1, 0)],
                Ok(Accepted::Learned { gap: 0 }),
            ),
            (
                "state from an unknown session",
                vec![update(1)],
                Err(Rejected::UnknownSession),
            ),
            (
                "a bulk request from an unknown session",
                vec![stamp(Kind::BulkRequest, PEER, US, 1)],
                Err(Rejected::UnknownSession),
            ),
            (
                "state sent to our previous incarnation",
                vec![
                    heartbeat(PEER, 0, 1, 0),
                    stamp(Kind::Update, PEER, other, 1),
                ],
                Err(Rejected::StaleSession),
            ),
            (
                "state from a sender that has not heard us",
                vec![heartbeat(PEER, 0, 1, 0), stamp(Kind::BulkEnd, PEER, 0, 1)],
                Err(Rejected::StaleSession),
            ),
            (
                "stale is reported before unknown (a replay from before our start)",
                vec![stamp(Kind::Update, other, other, 1)],
                Err(Rejected::StaleSession),
            ),
            (
                "known and proven",
                vec![heartbeat(PEER, 0, 1, 0), update(1)],
                Ok(Accepted::InOrder { gap: 0 }),
            ),
            (
                "our own message looped back",
                vec![heartbeat(US, US, 1, 0)],
                Err(Rejected::OwnSession),
            ),
        ];
        run(table);
    }

    /// Each seq once, per channel; gaps on the state channel only.
    #[test]
    fn replay_window() {
        let table: Vec<(&str, Vec<Stamp>, Result<Accepted, Rejected>)> = vec![
            (
                "a duplicate heartbeat",
                vec![heartbeat(PEER, 0, 1, 0), heartbeat(PEER, 0, 1, 0)],
                Err(Rejected::Replayed),
            ),
            (
                "a duplicate update",
                vec![heartbeat(PEER, 0, 1, 0), update(1), update(1)],
                Err(Rejected::Replayed),
            ),
            (
                "channels count apart: state 1 after control 1 and 2",
                vec![
                    heartbeat(PEER, 0, 1, 0),
                    stamp(Kind::BulkRequest, PEER, US, 2),
                    update(1),
                ],
                Ok(Accepted::InOrder { gap: 0 }),
            ),
            (
                "a lost heartbeat is no gap",
                vec![heartbeat(PEER, US, 1, 0), heartbeat(PEER, US, 5, 0)],
                Ok(Accepted::InOrder { gap: 0 }),
            ),
            (
                "a lost update is",
                vec![heartbeat(PEER, US, 1, 0), update(1), update(4)],
                Ok(Accepted::InOrder { gap: 2 }),
            ),
            (
                "a reordered update is late",
                vec![heartbeat(PEER, US, 1, 0), update(3), update(2)],
                Ok(Accepted::Late),
            ),
            (
                "once",
                vec![heartbeat(PEER, US, 1, 0), update(3), update(2), update(2)],
                Err(Rejected::Replayed),
            ),
            (
                "the window reaches 63 back",
                vec![heartbeat(PEER, US, 1, 0), update(100), update(37)],
                Ok(Accepted::Late),
            ),
            (
                "not 64",
                vec![heartbeat(PEER, US, 1, 0), update(100), update(36)],
                Err(Rejected::Replayed),
            ),
        ];
        run(table);
    }

    /// Tail loss, seen through a heartbeat's state seq.
    #[test]
    fn heartbeats_carry_the_last_state_seq() {
        let other = 0xcccc;
        let table: Vec<(&str, Vec<Stamp>, Result<Accepted, Rejected>)> = vec![
            (
                "a proven heartbeat reveals a lost last update",
                vec![
                    heartbeat(PEER, US, 1, 0),
                    update(1),
                    heartbeat(PEER, US, 2, 3),
                ],
                Ok(Accepted::InOrder { gap: 2 }),
            ),
            (
                "which may still arrive late",
                vec![
                    heartbeat(PEER, US, 1, 0),
                    update(1),
                    heartbeat(PEER, US, 2, 3),
                    update(3),
                ],
                Ok(Accepted::Late),
            ),
            (
                "and is not reported again",
                vec![
                    heartbeat(PEER, US, 1, 0),
                    update(1),
                    heartbeat(PEER, US, 2, 3),
                    update(4),
                ],
                Ok(Accepted::InOrder { gap: 0 }),
            ),
            (
                "a heartbeat that has not heard us moves the state window silently",
                vec![heartbeat(PEER, 0, 1, 0), heartbeat(PEER, 0, 2, 7)],
                Ok(Accepted::InOrder { gap: 0 }),
            ),
            (
                "what it passed over is not accepted later",
                vec![
                    heartbeat(PEER, 0, 1, 0),
                    heartbeat(PEER, 0, 2, 7),
                    update(6),
                ],
                Err(Rejected::Replayed),
            ),
            (
                "a session learned from a heartbeat that heard us: its state so far was lost",
                vec![heartbeat(PEER, US, 4, 3)],
                Ok(Accepted::Learned { gap: 3 }),
            ),
            (
                "learned from one that did not: state before it is not ours",
                vec![heartbeat(PEER, other, 900, 500), update(500)],
                Err(Rejected::Replayed),
            ),
            (
                "and the next one is no gap",
                vec![heartbeat(PEER, other, 900, 500), update(501)],
                Ok(Accepted::InOrder { gap: 0 }),
            ),
            (
                "a late heartbeat says nothing about state",
                vec![
                    heartbeat(PEER, US, 1, 0),
                    heartbeat(PEER, US, 3, 0),
                    heartbeat(PEER, US, 2, 9),
                    update(1),
                ],
                Ok(Accepted::InOrder { gap: 0 }),
            ),
        ];
        run(table);
    }

    #[test]
    fn a_restart_of_ours_makes_recorded_traffic_stale() {
        let mut before = knowing_peer();
        let recorded: Vec<Stamp> = (1..=5).map(update).collect();
        for stamp in &recorded {
            assert_eq!(before.check_stamp(*stamp), Ok(Accepted::InOrder { gap: 0 }));
        }
        // We restart with a new session; the peer's session is unchanged.
        let mut after = Freshness::new(nz(US + 1));
        assert_eq!(
            after.check_stamp(heartbeat(PEER, US, 6, 5)),
            Ok(Accepted::Learned { gap: 0 })
        );
        for stamp in recorded {
            assert_eq!(after.check_stamp(stamp), Err(Rejected::StaleSession));
        }
        let mut fresh_update = update(6);
        fresh_update.peer_session = US + 1;
        assert_eq!(
            after.check_stamp(fresh_update),
            Ok(Accepted::InOrder { gap: 0 })
        );
    }

    #[test]
    fn bounded_and_least_recently_used_goes_first() {
        let mut fresh = freshness();
        for session in 1..=8 {
            assert!(fresh.check_stamp(heartbeat(session, 0, 1, 0)).is_ok());
        }
        assert_eq!(fresh.sessions(), 8);
        // Session 1 speaks again: now 2 is the least recently used.
        assert!(fresh.check_stamp(heartbeat(1, 0, 2, 0)).is_ok());
        assert!(fresh.check_stamp(heartbeat(9, 0, 1, 0)).is_ok());
        assert_eq!(fresh.sessions(), 8);
        assert!(fresh.is_known(nz(1)));
        assert!(!fresh.is_known(nz(2)));
        assert!(fresh.is_known(nz(9)));
        // A rejected message does not count as use.
        assert_eq!(
            fresh.check_stamp(heartbeat(3, 0, 1, 0)),
            Err(Rejected::Replayed)
        );
        assert!(fresh.check_stamp(heartbeat(10, 0, 1, 0)).is_ok());
        assert!(!fresh.is_known(nz(3)));
    }

    #[test]
    fn replayed_old_sessions_cannot_push_out_one_that_heard_us() {
        let mut fresh = knowing_peer();
        // Recorded heartbeats of many sessions from before our start: none
        // of them carries our session.
        for session in 1..100 {
            assert!(fresh.check_stamp(heartbeat(session, 0, 1, 0)).is_ok());
        }
        assert!(fresh.is_known(nz(PEER)));
        assert_eq!(
            fresh.check_stamp(update(1)),
            Ok(Accepted::InOrder { gap: 0 })
        );
        // Once every slot has heard us, the least recently used goes.
        let mut full = Freshness::with_capacity(nz(US), 2);
        for session in [1, 2, 3] {
            assert!(full.check_stamp(heartbeat(session, US, 1, 0)).is_ok());
        }
        assert!(!full.is_known(nz(1)));
        assert_eq!(Freshness::with_capacity(nz(US), 0).capacity, 1);
    }

    #[test]
    fn last_heard_follows_the_latest_accepted_message() {
        let mut fresh = freshness();
        assert_eq!(fresh.last_heard(), 0);
        assert!(fresh.check_stamp(heartbeat(PEER, 0, 1, 0)).is_ok());
        assert_eq!(fresh.last_heard(), PEER);
        assert!(fresh.check_stamp(heartbeat(7, 0, 1, 0)).is_ok());
        assert_eq!(fresh.last_heard(), 7);
        assert!(fresh.check_stamp(heartbeat(PEER, 0, 2, 0)).is_ok());
        assert_eq!(fresh.last_heard(), PEER);
        // A replay does not change it.
        assert!(fresh.check_stamp(heartbeat(7, 0, 1, 0)).is_err());
        assert_eq!(fresh.last_heard(), PEER);
    }

    #[test]
    fn last_heard_prefers_a_peer_that_heard_us() {
        let mut fresh = knowing_peer();
        // A recorded heartbeat of a session from before our start.
        assert!(fresh.check_stamp(heartbeat(7, 0xcccc, 40, 0)).is_ok());
        assert_eq!(fresh.last_heard(), PEER);
        // The peer restarts as 8: once it has heard us, it is the one.
        assert!(fresh.check_stamp(heartbeat(8, 0, 1, 0)).is_ok());
        assert_eq!(fresh.last_heard(), PEER);
        assert!(fresh.check_stamp(heartbeat(8, US, 2, 0)).is_ok());
        assert_eq!(fresh.last_heard(), 8);
    }

    #[test]
    fn a_session_that_heard_us_never_skips_state_silently() {
        let mut fresh = knowing_peer();
        assert_eq!(
            fresh.check_stamp(update(1)),
            Ok(Accepted::InOrder { gap: 0 })
        );
        // Update 2 is lost; the next heartbeat echoes another session.
        assert_eq!(
            fresh.check_stamp(heartbeat(PEER, 0xcccc, 2, 2)),
            Ok(Accepted::InOrder { gap: 1 })
        );
    }

    #[test]
    fn labels() {
        assert_eq!(Accepted::Learned { gap: 1 }.label(), "learned");
        assert_eq!(Accepted::InOrder { gap: 0 }.label(), "accepted");
        assert_eq!(Accepted::Late.label(), "late");
        assert_eq!(Accepted::Late.gap(), 0);
        assert_eq!(Accepted::InOrder { gap: 4 }.gap(), 4);
        assert_eq!(Rejected::Replayed.label(), "replayed");
        assert_eq!(Rejected::StaleSession.label(), "stale_session");
        assert_eq!(Rejected::UnknownSession.label(), "unknown_session");
        assert_eq!(Rejected::OwnSession.label(), "own_session");
    }

    #[test]
    fn sequencer_numbers_channels_apart_and_waits_for_the_peer() {
        let mut out = Sequencer::new(nz(PEER));
        let refused = out.envelope(Message::Update(Vec::new()), 0);
        assert_eq!(refused, Err(SendError::PeerNotHeard(Kind::Update)));
        assert_eq!(
            refused.map_err(|e| e.to_string()),
            Err("no update before the peer is heard".to_owned())
        );
        let first = out
            .envelope(
                Message::Heartbeat {
                    in_sync: false,
                    state_seq: 99,
                },
                0,
            )
            .expect("heartbeats go out unheard");
        assert_eq!(first.seq.get(), 1);
        assert_eq!(
            first.message,
            Message::Heartbeat {
                in_sync: false,
                state_seq: 0
            }
        );
        let update = out
            .envelope(Message::Update(Vec::new()), US)
            .expect("heard");
        assert_eq!((update.seq.get(), update.peer_session), (1, US));
        let request = out
            .envelope(Message::BulkRequest { request_id: 1 }, US)
            .expect("heard");
        assert_eq!(request.seq.get(), 2);
        let beat = out
            .envelope(
                Message::Heartbeat {
                    in_sync: true,
                    state_seq: 0,
                },
                US,
            )
            .expect("heartbeat");
        assert_eq!(beat.seq.get(), 3);
        assert_eq!(
            beat.message,
            Message::Heartbeat {
                in_sync: true,
                state_seq: 1
            }
        );
        assert_eq!(out.session(), nz(PEER));
    }

    /// Our own conntrack events overran: skipping a state seq makes the peer
    /// see a gap at our next heartbeat and resync.
    #[test]
    fn a_skipped_state_seq_is_a_gap_at_the_receiver() {
        let mut sender = Sequencer::new(nz(PEER));
        let mut receiver = freshness();
        let mut send = |message: Message| {
            let envelope = sender.envelope(message, US).expect("heard");
            receiver.check(&envelope)
        };
        let beat = || Message::Heartbeat {
            in_sync: true,
            state_seq: 0,
        };
        assert_eq!(send(beat()), Ok(Accepted::Learned { gap: 0 }));
        assert_eq!(
            send(Message::Update(Vec::new())),
            Ok(Accepted::InOrder { gap: 0 })
        );
        assert_eq!(send(beat()), Ok(Accepted::InOrder { gap: 0 }));
        sender.skip_state();
        assert_eq!(sender.last_state_seq(), 2);
        let mut send = |message: Message| {
            let envelope = sender.envelope(message, US).expect("heard");
            receiver.check(&envelope)
        };
        assert_eq!(send(beat()), Ok(Accepted::InOrder { gap: 1 }));
        assert_eq!(
            send(Message::Update(Vec::new())),
            Ok(Accepted::InOrder { gap: 0 })
        );
    }

    /// One carpd incarnation's sync endpoint, talking through real bytes.
    struct Node {
        out: Sequencer,
        fresh: Freshness,
    }

    impl Node {
        fn new(session: u64) -> Self {
            Self {
                out: Sequencer::new(nz(session)),
                fresh: Freshness::new(nz(session)),
            }
        }

        fn send(&mut self, message: Message) -> Result<Vec<u8>, SendError> {
            let envelope = self.out.envelope(message, self.fresh.last_heard())?;
            Ok(envelope.encode(&key()).expect("encodes"))
        }

        fn beat(&mut self) -> Vec<u8> {
            self.send(Message::Heartbeat {
                in_sync: true,
                state_seq: 0,
            })
            .expect("heartbeats always go")
        }

        fn update(&mut self) -> Result<Vec<u8>, SendError> {
            self.send(Message::Update(Vec::new()))
        }

        fn receive(&mut self, datagram: &[u8]) -> Result<Accepted, Rejected> {
            let envelope = Envelope::decode(datagram, &key()).expect("authentic");
            self.fresh.check(&envelope)
        }
    }

    fn key() -> crate::sync::wire::SyncKey {
        crate::sync::wire::SyncKey::new(b"freshness-handshake").expect("valid key")
    }

    /// Both peers restart in turn. Heartbeats re-establish the sessions;
    /// state is refused until its sender has heard the receiver; no restart
    /// ever shows as a gap (only a real loss would).
    #[test]
    fn restarts_handshake_without_false_gaps() {
        let no_gap = |verdict: Result<Accepted, Rejected>| {
            assert_eq!(verdict.map(|v| v.gap()), Ok(0), "{verdict:?}");
        };
        let mut a = Node::new(0xa1);
        let mut b = Node::new(0xb1);
        // B cannot send state before it has heard A.
        assert_eq!(b.update(), Err(SendError::PeerNotHeard(Kind::Update)));
        no_gap(a.receive(&b.beat()));
        no_gap(b.receive(&a.beat()));
        for _ in 0..3 {
            no_gap(a.receive(&b.update().expect("heard")));
        }

        // B restarts.
        let mut b = Node::new(0xb2);
        assert_eq!(a.receive(&b.beat()), Ok(Accepted::Learned { gap: 0 }));
        assert!(!a.fresh.hears_us(nz(0xb2)));
        assert!(b.update().is_err());
        // A still echoes the old B, which B2 learns A from all the same.
        assert_eq!(a.fresh.last_heard(), 0xb1);
        no_gap(b.receive(&a.beat()));
        no_gap(a.receive(&b.update().expect("heard A")));
        assert!(a.fresh.hears_us(nz(0xb2)));
        assert_eq!(a.fresh.last_heard(), 0xb2);
        no_gap(b.receive(&a.beat()));
        no_gap(b.receive(&a.update().expect("heard B2")));

        // A restarts; B2's traffic meant for A1 is stale to A2.
        let mut a = Node::new(0xa2);
        let in_flight = b.update().expect("heard A1");
        assert_eq!(a.receive(&in_flight), Err(Rejected::StaleSession));
        no_gap(a.receive(&b.beat()));
        no_gap(b.receive(&a.beat()));
        assert_eq!(b.fresh.last_heard(), 0xa2);
        for _ in 0..3 {
            no_gap(a.receive(&b.update().expect("heard A2")));
            no_gap(b.receive(&a.update().expect("heard B2")));
        }
        no_gap(a.receive(&b.beat()));

        // And a real loss still shows.
        let _lost = b.update().expect("heard");
        assert_eq!(
            a.receive(&b.beat()).map(|v| v.gap()),
            Ok(1),
            "the heartbeat reveals the lost update"
        );
    }

    #[test]
    fn sessions_are_random_and_never_zero() {
        let mut rng = rand::thread_rng();
        let a = new_session(&mut rng);
        let b = new_session(&mut rng);
        assert_ne!(a, b);
    }

    proptest! {
        /// Whatever the arrival order and duplication, no seq is accepted
        /// twice, and every seq up to the highest accepted is either
        /// accepted in order or inside exactly one reported gap.
        #[test]
        fn each_seq_once_and_each_loss_reported_once(
            arrivals in proptest::collection::vec(1u64..150, 0..300),
        ) {
            let mut fresh = knowing_peer();
            let mut accepted = std::collections::HashSet::new();
            let mut in_order = 0u64;
            let mut gaps = 0u64;
            let mut highest = 0u64;
            let mut reported = std::collections::HashSet::new();
            for seq in arrivals {
                match fresh.check_stamp(update(seq)) {
                    Ok(verdict) => {
                        prop_assert!(accepted.insert(seq), "seq {} accepted twice", seq);
                        match verdict {
                            Accepted::InOrder { gap } => {
                                prop_assert!(seq > highest);
                                prop_assert_eq!(gap, seq - highest - 1);
                                for lost in highest + 1..seq {
                                    prop_assert!(reported.insert(lost));
                                }
                                highest = seq;
                                in_order += 1;
                                gaps += gap;
                            }
                            Accepted::Late => {
                                prop_assert!(seq < highest);
                                prop_assert!(reported.contains(&seq));
                            }
                            Accepted::Learned { .. } => {
                                return Err(TestCaseError::fail("learned twice"));
                            }
                        }
                    }
                    Err(rejected) => {
                        prop_assert_eq!(rejected, Rejected::Replayed);
                        prop_assert!(accepted.contains(&seq) || seq + REPLAY_WINDOW <= highest);
                    }
                }
            }
            prop_assert_eq!(in_order + gaps, highest);
        }

        #[test]
        fn an_in_order_stream_has_no_gaps(len in 1u64..300, start in 0u64..1000) {
            let mut fresh = freshness();
            let learned = fresh.check_stamp(heartbeat(PEER, US + 1, 1, start));
            prop_assert_eq!(learned, Ok(Accepted::Learned { gap: 0 }));
            for seq in start + 1..=start + len {
                prop_assert_eq!(fresh.check_stamp(update(seq)), Ok(Accepted::InOrder { gap: 0 }));
            }
        }

        /// Dropping some seqs of an ordered stream reports each exactly once,
        /// through state messages or heartbeats alike.
        #[test]
        fn drops_in_an_ordered_stream(
            sent in proptest::collection::vec((any::<bool>(), any::<bool>()), 1..200),
        ) {
            // (delivered?, followed by a heartbeat?) per state message.
            let mut fresh = knowing_peer();
            let mut control = 1;
            let mut lost = 0u64;
            let mut reported = 0u64;
            for (i, (delivered, beat)) in sent.iter().enumerate() {
                let seq = i as u64 + 1;
                if *delivered {
                    reported += fresh.check_stamp(update(seq)).map_err(|e| TestCaseError::fail(e.to_string()))?.gap();
                } else {
                    lost += 1;
                }
                if *beat {
                    control += 1;
                    reported += fresh
                        .check_stamp(heartbeat(PEER, US, control, seq))
                        .map_err(|e| TestCaseError::fail(e.to_string()))?
                        .gap();
                }
            }
            // A final heartbeat tells the receiver about a lost tail.
            reported += fresh
                .check_stamp(heartbeat(PEER, US, control + 1, sent.len() as u64))
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .gap();
            prop_assert_eq!(reported, lost);
        }
    }
}
