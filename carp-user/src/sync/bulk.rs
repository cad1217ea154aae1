//! The bulk update, requester side: after our own start, or after we lost
//! sync, ask the peer for its whole table and hold a carp demotion until it
//! has arrived. Pure: time is an argument.
//!
//! Rules, from pfsync's history (PROTOCOL.md, "pfsync lessons"):
//!
//! - A bulk is requested at our own start ([`Event::Start`]) and when we
//!   lost sync ([`Event::LostSync`]: a gap in the peer's state messages, or
//!   our queue of received updates overflowed). Nothing else asks: not the
//!   sync link coming up, not the peer restarting, not the peer's own bulk
//!   request. In `OpenBSD` 5.1 a master whose sync link flapped while the
//!   backup rebooted asked the rebooting peer for a bulk, demoted itself,
//!   and the empty backup took over for minutes.
//! - While a bulk is under way the node holds [`BULK_DEMOTION`] (+32), so it
//!   does not take over before it has the states. Never as a MASTER
//!   ([`Event::Master`]): a master carries the traffic, its table is the live
//!   one, and demoting it to wait for a peer hands the traffic to the node
//!   with less state. A master that lost sync still asks for a bulk, without
//!   the demotion.
//! - Every demotion is bounded in time: a try that gets no answer, or whose
//!   answer stalls, is retried after [`BulkConfig::retry_interval`] with a
//!   new request id, at most [`BulkConfig::max_tries`] tries; and whatever
//!   happens the bulk ends [`BulkConfig::max_duration`] after it began. Then
//!   the state is Failed, the demotion is released and a [`Report::GaveUp`]
//!   says so. Link flaps do not restart these timers.
//! - A bulk is Done only when the peer's `BulkEnd` count equals the records
//!   received; otherwise it is retried (missing records are never "Done").
//! - The sync link down costs [`LINK_DOWN_DEMOTION`] (+1) once the bulk is
//!   over (Done, or Failed); a node in sync ignores flaps beyond that.
//!
//! At our start the first request usually cannot be delivered: the peer
//! takes requests only from a session it has heard, and
//! [`super::freshness::Sequencer`] sends nothing but heartbeats before we
//! have heard the peer. The daemon sends the request if it can;
//! [`Event::PeerReady`] sends it again the moment the peer has heard us, and
//! the retry timer covers the rest.
//!
//! Answering a peer's request is the caller's job, and so is its pacing: on
//! a `BulkRequest` with a new id, abandon any answer in progress, send
//! `BulkStart`, read the table after that (so it covers every update sent
//! before), push the flows through a [`super::wire::RecordBatcher`] and
//! send its `BulkRecords` a few per tick (the dump arrives from netlink at
//! its own pace, and the pace that suits the link depends on socket
//! buffers, not on protocol state), then its `BulkEnd`. A `BulkRequest`
//! repeating the id of the answer in progress is a duplicate ([`Event::PeerReady`]
//! resends one) and is ignored.

use std::fmt;
use std::time::Duration;

use crate::clock::Mono;

/// Held while our bulk update runs (pfsync's `carpdemote` for it).
pub const BULK_DEMOTION: u8 = 32;
/// Held while the sync link is down after the bulk is over.
pub const LINK_DOWN_DEMOTION: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkConfig {
    /// How long a request waits for its answer to start, and an answer may
    /// pause between records, before the next try.
    pub retry_interval: Duration,
    /// Requests per bulk, the first included.
    pub max_tries: u32,
    /// The longest a bulk (and its demotion) lasts, from its first request.
    pub max_duration: Duration,
}

impl Default for BulkConfig {
    fn default() -> Self {
        Self {
            retry_interval: Duration::from_secs(5),
            max_tries: 3,
            max_duration: Duration::from_secs(30),
        }
    }
}

/// The try under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub request_id: u32,
    /// This is try number `tries` (from 1).
    pub tries: u32,
    /// When this try's request was sent.
    pub since: Mono,
    /// When the bulk's first request was sent.
    pub started: Mono,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkState {
    /// Not started.
    None,
    /// Asked; no answer yet.
    Requested(Attempt),
    /// The answer is arriving: `records` so far, the last at `last_progress`.
    Receiving {
        attempt: Attempt,
        records: u32,
        last_progress: Mono,
    },
    /// In sync.
    Done,
    /// Gave up; the demotion is released.
    Failed,
}

impl BulkState {
    /// For carpctl and metrics.
    pub const fn label(&self) -> &'static str {
        match self {
            BulkState::None => "none",
            BulkState::Requested(_) => "requested",
            BulkState::Receiving { .. } => "receiving",
            BulkState::Done => "done",
            BulkState::Failed => "failed",
        }
    }

    const fn attempt(&self) -> Option<Attempt> {
        match self {
            BulkState::Requested(attempt) | BulkState::Receiving { attempt, .. } => Some(*attempt),
            BulkState::None | BulkState::Done | BulkState::Failed => None,
        }
    }
}

/// What the daemon tells the requester.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// carpd started: ask for the peer's table.
    Start,
    /// We missed some of the peer's state (a freshness gap, or our queue of
    /// received updates overflowed).
    LostSync,
    /// The sync link's carrier.
    Link {
        up: bool,
    },
    /// Whether we are MASTER of at least one vhid.
    Master(bool),
    /// A peer session has just shown it heard us
    /// ([`super::freshness::Freshness::hears_us`] turned true: the peer
    /// started, or we did). Only now does it take our requests, so one not
    /// answered yet is sent again, with the same id. Never starts a bulk.
    PeerReady,
    /// The peer asks for *our* table. Never starts a bulk of ours; answering
    /// is the caller's job.
    PeerBulkRequest,
    BulkStart {
        request_id: u32,
    },
    /// A `BulkRecords` with `records` flows.
    BulkRecords {
        request_id: u32,
        records: u32,
    },
    BulkEnd {
        request_id: u32,
        records: u32,
    },
    /// Time passed (the daemon woke at [`BulkRequester::next_deadline`]).
    Tick,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a `BulkRequest` with this id.
    SendRequest { request_id: u32 },
    /// Our sync demotion is now this (the value, not a difference).
    Demote(u8),
    /// Worth a log line: info for `Completed`, warning otherwise.
    Log(Report),
}

/// The outcome of a try or of the bulk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    Completed {
        records: u32,
        tries: u32,
    },
    /// Try number `tries` has been sent because the previous one failed.
    Retrying {
        tries: u32,
        reason: Retry,
    },
    GaveUp(GiveUp),
}

/// Why a try failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// No answer within the retry interval.
    NoAnswer,
    /// The answer paused longer than the retry interval.
    Stalled,
    /// The peer sent `sent` records, `received` arrived.
    Missing { sent: u32, received: u32 },
    /// State was lost while the answer arrived.
    LostSync,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// The last allowed try failed too.
    Tries { tries: u32, last: Retry },
    /// The bulk took `BulkConfig::max_duration`.
    TimeLimit { tries: u32 },
}

impl fmt::Display for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Retry::NoAnswer => f.write_str("no answer"),
            Retry::Stalled => f.write_str("the answer stalled"),
            Retry::Missing { sent, received } => {
                write!(f, "{received} of {sent} records arrived")
            }
            Retry::LostSync => f.write_str("updates were lost during the answer"),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Completed { records, tries } => {
                write!(f, "bulk update done: {records} records (try {tries})")
            }
            Report::Retrying { tries, reason } => {
                write!(f, "bulk update: {reason}, sending try {tries}")
            }
            Report::GaveUp(GiveUp::Tries { tries, last }) => write!(
                f,
                "bulk update failed after {tries} tries ({last}): not in sync, demotion released"
            ),
            Report::GaveUp(GiveUp::TimeLimit { tries }) => write!(
                f,
                "bulk update failed: time limit reached after {tries} tries, not in sync, \
                 demotion released"
            ),
        }
    }
}

/// The requester's state machine.
#[derive(Clone, Debug)]
pub struct BulkRequester {
    config: BulkConfig,
    state: BulkState,
    link_up: bool,
    master: bool,
    last_request_id: u32,
}

impl BulkRequester {
    /// Not started, link up, not master.
    pub fn new(config: BulkConfig) -> Self {
        Self {
            config,
            state: BulkState::None,
            link_up: true,
            master: false,
            last_request_id: 0,
        }
    }

    pub fn state(&self) -> BulkState {
        self.state
    }

    /// What this module adds to the carp demotion now.
    pub fn demotion(&self) -> u8 {
        let bulk = match self.state {
            BulkState::Requested(_) | BulkState::Receiving { .. } if !self.master => BULK_DEMOTION,
            _ => 0,
        };
        let link = if self.link_up || self.state == BulkState::None {
            0
        } else {
            LINK_DOWN_DEMOTION
        };
        bulk.max(link)
    }

    /// When to deliver the next [`Event::Tick`]; `None` without a bulk under
    /// way. Never later than the bulk's end of time.
    pub fn next_deadline(&self) -> Option<Mono> {
        let (attempt, retry_from) = match self.state {
            BulkState::Requested(attempt) => (attempt, attempt.since),
            BulkState::Receiving {
                attempt,
                last_progress,
                ..
            } => (attempt, last_progress),
            BulkState::None | BulkState::Done | BulkState::Failed => return None,
        };
        let retry = retry_from.saturating_add(self.config.retry_interval);
        Some(retry.min(self.end_of(attempt)))
    }

    /// Handles `event` at `now`, after any deadline that has passed.
    pub fn on_event(&mut self, now: Mono, event: Event) -> Vec<Action> {
        let demotion = self.demotion();
        let mut actions = Vec::new();
        self.run_timers(now, &mut actions);
        match event {
            Event::Start => {
                if self.state == BulkState::None {
                    self.begin(now, &mut actions);
                }
            }
            Event::LostSync => self.lost_sync(now, &mut actions),
            Event::Link { up } => self.link_up = up,
            Event::Master(master) => self.master = master,
            Event::PeerReady => {
                if let BulkState::Requested(attempt) = self.state {
                    actions.push(Action::SendRequest {
                        request_id: attempt.request_id,
                    });
                }
            }
            Event::PeerBulkRequest | Event::Tick => {}
            Event::BulkStart { request_id } => self.answer(now, request_id, 0),
            Event::BulkRecords {
                request_id,
                records,
            } => self.answer(now, request_id, records),
            Event::BulkEnd {
                request_id,
                records,
            } => self.end(now, request_id, records, &mut actions),
        }
        if self.demotion() != demotion {
            actions.push(Action::Demote(self.demotion()));
        }
        actions
    }

    fn end_of(&self, attempt: Attempt) -> Mono {
        attempt.started.saturating_add(self.config.max_duration)
    }

    fn run_timers(&mut self, now: Mono, actions: &mut Vec<Action>) {
        let Some(attempt) = self.state.attempt() else {
            return;
        };
        if now >= self.end_of(attempt) {
            self.state = BulkState::Failed;
            actions.push(Action::Log(Report::GaveUp(GiveUp::TimeLimit {
                tries: attempt.tries,
            })));
            return;
        }
        let (retry_from, reason) = match self.state {
            BulkState::Receiving { last_progress, .. } => (last_progress, Retry::Stalled),
            _ => (attempt.since, Retry::NoAnswer),
        };
        if now >= retry_from.saturating_add(self.config.retry_interval) {
            self.retry(now, attempt, reason, actions);
        }
    }

    fn next_request_id(&mut self) -> u32 {
        // Never 0, so a zeroed field never matches.
        self.last_request_id = self.last_request_id.checked_add(1).unwrap_or(1);
        self.last_request_id
    }

    fn begin(&mut self, now: Mono, actions: &mut Vec<Action>) {
        let request_id = self.next_request_id();
        self.state = BulkState::Requested(Attempt {
            request_id,
            tries: 1,
            since: now,
            started: now,
        });
        actions.push(Action::SendRequest { request_id });
    }

    fn retry(&mut self, now: Mono, attempt: Attempt, reason: Retry, actions: &mut Vec<Action>) {
        if attempt.tries >= self.config.max_tries {
            self.state = BulkState::Failed;
            actions.push(Action::Log(Report::GaveUp(GiveUp::Tries {
                tries: attempt.tries,
                last: reason,
            })));
            return;
        }
        let request_id = self.next_request_id();
        let tries = attempt.tries + 1;
        self.state = BulkState::Requested(Attempt {
            request_id,
            tries,
            since: now,
            started: attempt.started,
        });
        actions.push(Action::SendRequest { request_id });
        actions.push(Action::Log(Report::Retrying { tries, reason }));
    }

    fn lost_sync(&mut self, now: Mono, actions: &mut Vec<Action>) {
        match self.state {
            // Before our start, the start asks anyway. Before the answer
            // begins, the table it sends is read after its BulkStart, so it
            // covers what was lost.
            BulkState::None | BulkState::Requested(_) => {}
            BulkState::Receiving { attempt, .. } => {
                self.retry(now, attempt, Retry::LostSync, actions);
            }
            BulkState::Done | BulkState::Failed => self.begin(now, actions),
        }
    }

    /// A `BulkStart` (`records` 0) or `BulkRecords` for `request_id`. Records
    /// without a start mean the start was lost: the answer is arriving all
    /// the same, and the end count tells whether anything else was.
    fn answer(&mut self, now: Mono, request_id: u32, records: u32) {
        self.state = match self.state {
            BulkState::Requested(attempt) if attempt.request_id == request_id => {
                BulkState::Receiving {
                    attempt,
                    records,
                    last_progress: now,
                }
            }
            BulkState::Receiving {
                attempt,
                records: so_far,
                ..
            } if attempt.request_id == request_id => BulkState::Receiving {
                attempt,
                records: so_far.saturating_add(records),
                last_progress: now,
            },
            other => other,
        };
    }

    fn end(&mut self, now: Mono, request_id: u32, sent: u32, actions: &mut Vec<Action>) {
        let (attempt, received) = match self.state {
            BulkState::Requested(attempt) => (attempt, 0),
            BulkState::Receiving {
                attempt, records, ..
            } => (attempt, records),
            BulkState::None | BulkState::Done | BulkState::Failed => return,
        };
        if attempt.request_id != request_id {
            return;
        }
        if received == sent {
            self.state = BulkState::Done;
            actions.push(Action::Log(Report::Completed {
                records: received,
                tries: attempt.tries,
            }));
        } else {
            self.retry(now, attempt, Retry::Missing { sent, received }, actions);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn secs(s: u64) -> Mono {
        Duration::from_secs(s)
    }

    fn ms(ms: u64) -> Mono {
        Duration::from_millis(ms)
    }

    fn started() -> BulkRequester {
        let mut bulk = BulkRequester::new(BulkConfig::default());
        assert_eq!(
            bulk.on_event(secs(100), Event::Start),
            [Action::SendRequest { request_id: 1 }, Action::Demote(32)]
        );
        bulk
    }

    fn done() -> BulkRequester {
        let mut bulk = started();
        bulk.on_event(secs(101), Event::BulkStart { request_id: 1 });
        bulk.on_event(
            secs(101),
            Event::BulkRecords {
                request_id: 1,
                records: 2,
            },
        );
        let actions = bulk.on_event(
            secs(102),
            Event::BulkEnd {
                request_id: 1,
                records: 2,
            },
        );
        assert_eq!(
            actions,
            [
                Action::Log(Report::Completed {
                    records: 2,
                    tries: 1
                }),
                Action::Demote(0)
            ]
        );
        assert_eq!(bulk.state(), BulkState::Done);
        bulk
    }

    fn attempt(request_id: u32, tries: u32, since: u64) -> Attempt {
        Attempt {
            request_id,
            tries,
            since: secs(since),
            started: secs(100),
        }
    }

    #[test]
    fn before_start() {
        let mut bulk = BulkRequester::new(BulkConfig::default());
        assert_eq!(bulk.state().label(), "none");
        assert_eq!(bulk.demotion(), 0);
        assert_eq!(bulk.next_deadline(), None);
        for event in [
            Event::LostSync,
            Event::Link { up: false },
            Event::PeerReady,
            Event::PeerBulkRequest,
            Event::BulkStart { request_id: 1 },
            Event::BulkEnd {
                request_id: 1,
                records: 0,
            },
            Event::Tick,
        ] {
            assert_eq!(bulk.on_event(secs(1), event), [], "{event:?}");
        }
        assert_eq!(bulk.state(), BulkState::None);
        assert_eq!(bulk.demotion(), 0);
    }

    #[test]
    fn start_requests_and_demotes_once() {
        let mut bulk = started();
        assert_eq!(bulk.state(), BulkState::Requested(attempt(1, 1, 100)));
        assert_eq!(bulk.state().label(), "requested");
        assert_eq!(bulk.demotion(), 32);
        assert_eq!(bulk.next_deadline(), Some(secs(105)));
        assert_eq!(bulk.on_event(secs(101), Event::Start), []);
    }

    #[test]
    fn an_answer_is_received_counted_and_completes() {
        let mut bulk = started();
        // Another request's answer is not ours.
        bulk.on_event(secs(101), Event::BulkStart { request_id: 9 });
        assert_eq!(bulk.state().label(), "requested");
        bulk.on_event(secs(101), Event::BulkStart { request_id: 1 });
        assert_eq!(
            bulk.state(),
            BulkState::Receiving {
                attempt: attempt(1, 1, 100),
                records: 0,
                last_progress: secs(101),
            }
        );
        assert_eq!(bulk.state().label(), "receiving");
        assert_eq!(bulk.demotion(), 32);
        assert_eq!(bulk.next_deadline(), Some(secs(106)));
        for (at, records) in [(103, 29), (104, 14)] {
            bulk.on_event(
                secs(at),
                Event::BulkRecords {
                    request_id: 1,
                    records,
                },
            );
        }
        bulk.on_event(
            secs(104),
            Event::BulkRecords {
                request_id: 2,
                records: 5,
            },
        );
        assert_eq!(
            bulk.state(),
            BulkState::Receiving {
                attempt: attempt(1, 1, 100),
                records: 43,
                last_progress: secs(104),
            }
        );
        assert_eq!(bulk.next_deadline(), Some(secs(109)));
        assert_eq!(
            bulk.on_event(
                secs(105),
                Event::BulkEnd {
                    request_id: 1,
                    records: 43
                }
            ),
            [
                Action::Log(Report::Completed {
                    records: 43,
                    tries: 1
                }),
                Action::Demote(0)
            ]
        );
        assert_eq!(bulk.state().label(), "done");
        assert_eq!(bulk.next_deadline(), None);
    }

    #[test]
    fn records_without_a_start_and_an_empty_table() {
        let mut bulk = started();
        bulk.on_event(
            secs(101),
            Event::BulkRecords {
                request_id: 1,
                records: 3,
            },
        );
        assert_eq!(
            bulk.state(),
            BulkState::Receiving {
                attempt: attempt(1, 1, 100),
                records: 3,
                last_progress: secs(101),
            }
        );
        let mut empty = started();
        let actions = empty.on_event(
            secs(101),
            Event::BulkEnd {
                request_id: 1,
                records: 0,
            },
        );
        assert_eq!(actions.last(), Some(&Action::Demote(0)));
        assert_eq!(empty.state(), BulkState::Done);
    }

    #[test]
    fn a_short_answer_is_retried_never_done() {
        let mut bulk = started();
        bulk.on_event(
            secs(101),
            Event::BulkRecords {
                request_id: 1,
                records: 10,
            },
        );
        let actions = bulk.on_event(
            secs(102),
            Event::BulkEnd {
                request_id: 1,
                records: 11,
            },
        );
        let missing = Retry::Missing {
            sent: 11,
            received: 10,
        };
        assert_eq!(
            actions,
            [
                Action::SendRequest { request_id: 2 },
                Action::Log(Report::Retrying {
                    tries: 2,
                    reason: missing
                })
            ]
        );
        assert_eq!(bulk.state(), BulkState::Requested(attempt(2, 2, 102)));
        assert_eq!(bulk.demotion(), 32);
        // The old request's end changes nothing now.
        assert_eq!(
            bulk.on_event(
                secs(102),
                Event::BulkEnd {
                    request_id: 1,
                    records: 10
                }
            ),
            []
        );
        // Too many records is no better than too few.
        bulk.on_event(
            secs(103),
            Event::BulkRecords {
                request_id: 2,
                records: 12,
            },
        );
        bulk.on_event(
            secs(103),
            Event::BulkEnd {
                request_id: 2,
                records: 11,
            },
        );
        assert_eq!(bulk.state(), BulkState::Requested(attempt(3, 3, 103)));
        let actions = bulk.on_event(
            secs(104),
            Event::BulkEnd {
                request_id: 3,
                records: 1,
            },
        );
        assert_eq!(
            actions,
            [
                Action::Log(Report::GaveUp(GiveUp::Tries {
                    tries: 3,
                    last: Retry::Missing {
                        sent: 1,
                        received: 0
                    }
                })),
                Action::Demote(0)
            ]
        );
        assert_eq!(bulk.state().label(), "failed");
        assert_eq!(bulk.next_deadline(), None);
    }

    #[test]
    fn no_answer_is_retried_then_given_up() {
        let mut bulk = started();
        assert_eq!(bulk.on_event(ms(104_999), Event::Tick), []);
        assert_eq!(
            bulk.on_event(secs(105), Event::Tick),
            [
                Action::SendRequest { request_id: 2 },
                Action::Log(Report::Retrying {
                    tries: 2,
                    reason: Retry::NoAnswer
                })
            ]
        );
        assert_eq!(bulk.next_deadline(), Some(secs(110)));
        bulk.on_event(secs(110), Event::Tick);
        assert_eq!(bulk.state(), BulkState::Requested(attempt(3, 3, 110)));
        assert_eq!(
            bulk.on_event(secs(115), Event::Tick),
            [
                Action::Log(Report::GaveUp(GiveUp::Tries {
                    tries: 3,
                    last: Retry::NoAnswer
                })),
                Action::Demote(0)
            ]
        );
        assert_eq!(bulk.state(), BulkState::Failed);
    }

    #[test]
    fn a_stalled_answer_is_retried() {
        let mut bulk = started();
        bulk.on_event(secs(101), Event::BulkStart { request_id: 1 });
        bulk.on_event(
            secs(103),
            Event::BulkRecords {
                request_id: 1,
                records: 1,
            },
        );
        assert_eq!(bulk.on_event(ms(107_999), Event::Tick), []);
        assert_eq!(
            bulk.on_event(secs(108), Event::Tick),
            [
                Action::SendRequest { request_id: 2 },
                Action::Log(Report::Retrying {
                    tries: 2,
                    reason: Retry::Stalled
                })
            ]
        );
    }

    #[test]
    fn a_slow_steady_answer_ends_at_the_time_limit() {
        let mut bulk = started();
        bulk.on_event(secs(101), Event::BulkStart { request_id: 1 });
        for at in 102..130 {
            bulk.on_event(
                secs(at),
                Event::BulkRecords {
                    request_id: 1,
                    records: 100,
                },
            );
            assert_eq!(bulk.demotion(), 32);
        }
        assert_eq!(bulk.next_deadline(), Some(secs(130)));
        // The end arrives too late: the time limit is applied first.
        let actions = bulk.on_event(
            secs(130),
            Event::BulkEnd {
                request_id: 1,
                records: 2800,
            },
        );
        assert_eq!(
            actions,
            [
                Action::Log(Report::GaveUp(GiveUp::TimeLimit { tries: 1 })),
                Action::Demote(0)
            ]
        );
        assert_eq!(bulk.state(), BulkState::Failed);
    }

    #[test]
    fn losing_sync() {
        // Before the answer starts: the answer covers it.
        let mut requested = started();
        assert_eq!(requested.on_event(secs(101), Event::LostSync), []);
        assert_eq!(requested.state(), BulkState::Requested(attempt(1, 1, 100)));
        // During the answer: this try cannot be trusted.
        let mut receiving = started();
        receiving.on_event(secs(101), Event::BulkStart { request_id: 1 });
        assert_eq!(
            receiving.on_event(secs(102), Event::LostSync),
            [
                Action::SendRequest { request_id: 2 },
                Action::Log(Report::Retrying {
                    tries: 2,
                    reason: Retry::LostSync
                })
            ]
        );
        // After it: a new bulk, with a new time bound.
        let mut bulk = done();
        assert_eq!(
            bulk.on_event(secs(500), Event::LostSync),
            [Action::SendRequest { request_id: 2 }, Action::Demote(32)]
        );
        assert_eq!(
            bulk.state(),
            BulkState::Requested(Attempt {
                request_id: 2,
                tries: 1,
                since: secs(500),
                started: secs(500),
            })
        );
        assert_eq!(bulk.next_deadline(), Some(secs(505)));
        // After giving up, too.
        let mut failed = started();
        failed.on_event(secs(200), Event::Tick);
        assert_eq!(failed.state(), BulkState::Failed);
        assert_eq!(
            failed.on_event(secs(201), Event::LostSync),
            [Action::SendRequest { request_id: 2 }, Action::Demote(32)]
        );
    }

    #[test]
    fn the_link_costs_one_after_the_bulk_and_does_not_touch_its_timers() {
        let mut bulk = started();
        assert_eq!(bulk.on_event(secs(101), Event::Link { up: false }), []);
        assert_eq!(bulk.demotion(), 32);
        assert_eq!(bulk.on_event(secs(102), Event::Link { up: true }), []);
        assert_eq!(bulk.state(), BulkState::Requested(attempt(1, 1, 100)));
        assert_eq!(bulk.next_deadline(), Some(secs(105)));

        let mut bulk = done();
        assert_eq!(
            bulk.on_event(secs(200), Event::Link { up: false }),
            [Action::Demote(1)]
        );
        assert_eq!(
            bulk.on_event(secs(201), Event::Link { up: true }),
            [Action::Demote(0)]
        );
        assert_eq!(bulk.state(), BulkState::Done);

        let mut failed = started();
        failed.on_event(secs(101), Event::Link { up: false });
        assert_eq!(
            failed.on_event(secs(130), Event::Tick).last(),
            Some(&Action::Demote(1))
        );
    }

    #[test]
    fn a_master_never_demotes_itself_for_a_bulk() {
        let mut bulk = started();
        assert_eq!(
            bulk.on_event(secs(101), Event::Master(true)),
            [Action::Demote(0)]
        );
        assert_eq!(bulk.state().label(), "requested");
        assert_eq!(
            bulk.on_event(secs(102), Event::Master(false)),
            [Action::Demote(32)]
        );

        let mut bulk = done();
        bulk.on_event(secs(200), Event::Master(true));
        // A master that lost sync asks, without the demotion.
        assert_eq!(
            bulk.on_event(secs(201), Event::LostSync),
            [Action::SendRequest { request_id: 2 }]
        );
        assert_eq!(bulk.demotion(), 0);
        // The link still costs one.
        bulk.on_event(
            secs(202),
            Event::BulkEnd {
                request_id: 2,
                records: 0,
            },
        );
        assert_eq!(
            bulk.on_event(secs(203), Event::Link { up: false }),
            [Action::Demote(1)]
        );
    }

    #[test]
    fn a_ready_peer_gets_the_unanswered_request_again() {
        let mut bulk = started();
        assert_eq!(
            bulk.on_event(secs(101), Event::PeerReady),
            [Action::SendRequest { request_id: 1 }]
        );
        // Same try, same timers.
        assert_eq!(bulk.state(), BulkState::Requested(attempt(1, 1, 100)));
        bulk.on_event(secs(102), Event::BulkStart { request_id: 1 });
        assert_eq!(bulk.on_event(secs(103), Event::PeerReady), []);
        let mut bulk = done();
        assert_eq!(bulk.on_event(secs(300), Event::PeerReady), []);
    }

    /// The `OpenBSD` 5.1 story: we are in sync (and master); the peer
    /// reboots, and our sync link flaps five times while it does. The peer
    /// starts, learns us, asks us for bulks. We answer (the caller's job),
    /// hold +1 while the link is down, and never ask the rebooting peer for
    /// anything nor demote ourselves further.
    #[test]
    fn openbsd_5_1_a_node_in_sync_ignores_link_flaps_and_a_booting_peer() {
        let mut bulk = done();
        bulk.on_event(secs(150), Event::Master(true));
        let mut at = 200;
        for _ in 0..5 {
            for event in [
                Event::Link { up: false },
                Event::Tick,
                Event::Link { up: true },
                Event::PeerReady,
                Event::PeerBulkRequest,
                Event::Tick,
            ] {
                at += 3;
                for action in bulk.on_event(secs(at), event) {
                    assert!(
                        matches!(action, Action::Demote(0 | 1)),
                        "{action:?} on {event:?}"
                    );
                }
                assert!(bulk.demotion() <= 1);
                assert_eq!(bulk.state(), BulkState::Done);
            }
        }
        // The same as a backup: nothing depends on being master here.
        let mut backup = done();
        for event in [Event::Link { up: false }, Event::Link { up: true }] {
            backup.on_event(secs(300), event);
            backup.on_event(secs(301), Event::PeerReady);
            backup.on_event(secs(302), Event::PeerBulkRequest);
        }
        assert_eq!(backup.state(), BulkState::Done);
        assert_eq!(backup.demotion(), 0);
    }

    #[test]
    fn reports_read_well() {
        let lines = [
            Report::Completed {
                records: 5,
                tries: 2,
            }
            .to_string(),
            Report::Retrying {
                tries: 2,
                reason: Retry::Missing {
                    sent: 3,
                    received: 1,
                },
            }
            .to_string(),
            Report::GaveUp(GiveUp::Tries {
                tries: 3,
                last: Retry::Stalled,
            })
            .to_string(),
            Report::GaveUp(GiveUp::TimeLimit { tries: 1 }).to_string(),
        ];
        assert_eq!(lines[0], "bulk update done: 5 records (try 2)");
        assert_eq!(
            lines[1],
            "bulk update: 1 of 3 records arrived, sending try 2"
        );
        assert!(
            lines[2].contains("after 3 tries (the answer stalled)"),
            "{}",
            lines[2]
        );
        assert!(lines[3].contains("time limit"), "{}", lines[3]);
    }

    /// An event as generated: request ids are picked relative to the one in
    /// flight so answers match often.
    #[derive(Clone, Copy, Debug)]
    enum Input {
        Plain(Event),
        Start { current: bool },
        Records { current: bool, records: u32 },
        End { current: bool, records: u32 },
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            Just(Input::Plain(Event::Start)),
            Just(Input::Plain(Event::LostSync)),
            any::<bool>().prop_map(|up| Input::Plain(Event::Link { up })),
            any::<bool>().prop_map(|m| Input::Plain(Event::Master(m))),
            Just(Input::Plain(Event::PeerReady)),
            Just(Input::Plain(Event::PeerBulkRequest)),
            Just(Input::Plain(Event::Tick)),
            any::<bool>().prop_map(|current| Input::Start { current }),
            (any::<bool>(), 0u32..4)
                .prop_map(|(current, records)| Input::Records { current, records }),
            (any::<bool>(), 0u32..8).prop_map(|(current, records)| Input::End { current, records }),
        ]
    }

    fn event(bulk: &BulkRequester, input: Input) -> Event {
        let id = |current: bool| {
            let live = bulk.state().attempt().map_or(0, |a| a.request_id);
            if current { live } else { live.wrapping_sub(1) }
        };
        match input {
            Input::Plain(event) => event,
            Input::Start { current } => Event::BulkStart {
                request_id: id(current),
            },
            Input::Records { current, records } => Event::BulkRecords {
                request_id: id(current),
                records,
            },
            Input::End { current, records } => Event::BulkEnd {
                request_id: id(current),
                records,
            },
        }
    }

    proptest! {
        /// Whatever arrives, and whenever: more than the link's +1 is held
        /// only while a bulk runs and for less than `max_duration` after its
        /// first request; the deadline never lies beyond that; `Demote`
        /// actions track `demotion()`; a bulk begins only on our start or a
        /// loss of sync.
        #[test]
        fn the_demotion_is_bounded_in_time(
            steps in proptest::collection::vec((0u64..7_000, input()), 1..120),
            retry_ms in 100u64..10_000,
            max_tries in 1u32..5,
            max_ms in 1_000u64..40_000,
        ) {
            let config = BulkConfig {
                retry_interval: ms(retry_ms),
                max_tries,
                max_duration: ms(max_ms),
            };
            let mut bulk = BulkRequester::new(config);
            let mut now = ms(1);
            let mut announced = 0u8;
            let mut bulk_began = None;
            for (advance, input) in steps {
                now += ms(advance);
                let event = event(&bulk, input);
                let before = bulk.state();
                let actions = bulk.on_event(now, event);
                for action in &actions {
                    if let Action::Demote(value) = action {
                        announced = *value;
                    }
                }
                prop_assert_eq!(announced, bulk.demotion());
                let after = bulk.state();
                if let Some(attempt) = after.attempt() {
                    if before.attempt().is_none_or(|a| a.started != attempt.started) {
                        prop_assert!(
                            matches!(event, Event::Start | Event::LostSync),
                            "{:?} began a bulk", event
                        );
                        prop_assert_eq!(attempt.started, now);
                        bulk_began = Some(now);
                    }
                    prop_assert_eq!(Some(attempt.started), bulk_began);
                    prop_assert!(now < attempt.started + config.max_duration);
                    prop_assert!(attempt.tries <= max_tries);
                    let deadline = bulk.next_deadline().expect("a bulk runs");
                    prop_assert!(deadline > now);
                    prop_assert!(deadline <= attempt.started + config.max_duration);
                } else {
                    prop_assert!(bulk.demotion() <= LINK_DOWN_DEMOTION);
                    prop_assert_eq!(bulk.next_deadline(), None);
                }
                if let Some(began) = bulk_began && now >= began + config.max_duration {
                    prop_assert!(bulk.demotion() <= LINK_DOWN_DEMOTION);
                }
            }
        }

        /// Once in sync, nothing but a loss of sync makes us ask again or
        /// demote beyond the link's +1.
        #[test]
        fn in_sync_only_a_loss_of_sync_asks(
            steps in proptest::collection::vec((0u64..20_000, input()), 1..80),
        ) {
            let mut bulk = done();
            let mut now = secs(200);
            for (advance, input) in steps {
                now += ms(advance);
                let event = event(&bulk, input);
                if matches!(event, Event::LostSync) {
                    continue;
                }
                let actions = bulk.on_event(now, event);
                prop_assert!(
                    actions.iter().all(|a| matches!(a, Action::Demote(0 | 1))),
                    "{:?} -> {:?}", event, actions
                );
                prop_assert_eq!(bulk.state(), BulkState::Done);
            }
        }
    }
}
