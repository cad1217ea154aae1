//! Figures from captured events: how long after an action the new master
//! advertised, announced and answered; how many echo replies were lost; how
//! long both nodes advertised or answered at once. Pure functions of the
//! event list, so the live waits and the final analysis agree.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::events::{Event, Kind, Nanos};

/// A reply more than this after its request is no reply (ping's own idea
/// of a late reply is similar).
const REPLY_WINDOW: Nanos = 1_000_000_000;
/// Requests this close to the end of a span may still be answered after it:
/// they are not counted either way.
const GRACE: Nanos = 100_000_000;

/// Who is who in one measured event, by switch port.
#[derive(Debug, Clone, Copy)]
pub struct Roles<'a> {
    /// The node expected to be master after the event.
    pub new: &'a str,
    /// The node that was master before it.
    pub old: &'a str,
    /// The pinger's node.
    pub client: &'a str,
    pub vip: Ipv4Addr,
}

/// From the action (`start`) to the end of observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: Nanos,
    pub end: Nanos,
}

/// What one run of one event showed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The new master's first advertisement after the action.
    pub advert: Option<Duration>,
    /// Its first gratuitous ARP for the VIP.
    pub garp: Option<Duration>,
    /// Its first echo reply from the VIP.
    pub reply: Option<Duration>,
    /// Echo requests sent after the action that got no reply...
    pub lost: u32,
    /// ...of this many sent, over this long (the pinger's real rate).
    pub requests: u32,
    pub observed: Duration,
    /// How long both nodes advertised, or both answered, at once.
    pub duplicate: Duration,
    /// The new node advertises and the old one had gone quiet by the end.
    pub took_over: bool,
}

/// The part of `span` whose echo requests are counted.
fn counted(span: Span) -> Span {
    Span {
        start: span.start,
        end: span.end.saturating_sub(GRACE).max(span.start),
    }
}

/// A steady run: nothing should change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SteadyOutcome {
    /// Changes of advertiser (master) seen on the wire.
    pub transitions: u32,
    /// Advertisements from the node that should stay backup.
    pub backup_adverts: u32,
    pub requests: u32,
    pub lost: u32,
}

fn adverts<'e>(events: &'e [Event], port: &'e str) -> impl Iterator<Item = &'e Event> + 'e {
    events.iter().filter(move |event| {
        event.port == port && matches!(event.kind, Kind::Advert { leaving: false, .. })
    })
}

fn replies<'e>(
    events: &'e [Event],
    port: &'e str,
    vip: Ipv4Addr,
) -> impl Iterator<Item = &'e Event> + 'e {
    events.iter().filter(move |event| {
        event.port == port && matches!(event.kind, Kind::EchoReply { from, .. } if from == vip)
    })
}

fn within(event: &Event, span: Span) -> bool {
    (span.start..=span.end).contains(&event.at)
}

// Earliest and latest by stamp rather than by position: tcpdump hands
// packets over in capture order, but nothing here needs to rely on it.
fn first_after<'e>(events: impl Iterator<Item = &'e Event>, span: Span) -> Option<Nanos> {
    events
        .filter(|event| within(event, span))
        .map(|event| event.at)
        .min()
}

fn last_within<'e>(events: impl Iterator<Item = &'e Event>, span: Span) -> Option<Nanos> {
    events
        .filter(|event| within(event, span))
        .map(|event| event.at)
        .max()
}

fn since(start: Nanos, at: Option<Nanos>) -> Option<Duration> {
    at.map(|at| Duration::from_nanos(at.saturating_sub(start)))
}

/// The figures of one event observed over `span`. `quiet`: how long the
/// old node must have been silent at the end for the handover to count.
pub fn measure(events: &[Event], roles: &Roles, span: Span, quiet: Nanos) -> Outcome {
    let first_advert = first_after(adverts(events, roles.new), span);
    let first_reply = first_after(replies(events, roles.new, roles.vip), span);
    let garp = first_after(
        events.iter().filter(|event| {
            event.port == roles.new && event.kind == Kind::Garp { address: roles.vip }
        }),
        span,
    );
    let overlap = |first_new: Option<Nanos>, last_old: Option<Nanos>| match (first_new, last_old) {
        (Some(first), Some(last)) => last.saturating_sub(first),
        _ => 0,
    };
    let advertising = overlap(first_advert, last_within(adverts(events, roles.old), span));
    let answering = overlap(
        first_reply,
        last_within(replies(events, roles.old, roles.vip), span),
    );
    let (requests, lost) = lost(events, roles, span);
    Outcome {
        advert: since(span.start, first_advert),
        garp: since(span.start, garp),
        reply: since(span.start, first_reply),
        lost,
        requests,
        observed: Duration::from_nanos(counted(span).end - counted(span).start),
        duplicate: Duration::from_nanos(advertising.max(answering)),
        took_over: handed_over(events, roles, span, quiet),
    }
}

/// The new node advertised within `span`, and the old one sent no
/// advertisement during its last `quiet` (nor before its start).
pub fn handed_over(events: &[Event], roles: &Roles, span: Span, quiet: Nanos) -> bool {
    let tail = Span {
        start: span.start.max(span.end.saturating_sub(quiet)),
        end: span.end,
    };
    first_after(adverts(events, roles.new), span).is_some()
        && first_after(adverts(events, roles.old), tail).is_none()
}

/// The last `count` echo replies since `from` all came from `port`.
pub fn serving(events: &[Event], port: &str, vip: Ipv4Addr, from: Nanos, count: usize) -> bool {
    let recent: Vec<&Event> = events
        .iter()
        .filter(|event| {
            event.at >= from && matches!(event.kind, Kind::EchoReply { from, .. } if from == vip)
        })
        .collect();
    recent.len() >= count
        && recent[recent.len() - count..]
            .iter()
            .all(|event| event.port == port)
}

/// Ready to act: `master` has sent `count` advertisements, `backup` none
/// since the first of them, and the VIP's last `replies` echo replies came
/// from `master`.
pub fn steady(
    events: &[Event],
    master: &str,
    backup: &str,
    vip: Ipv4Addr,
    count: usize,
    replies: usize,
) -> bool {
    let sent: Vec<Nanos> = adverts(events, master).map(|event| event.at).collect();
    if sent.len() < count {
        return false;
    }
    let first = sent[sent.len() - count];
    adverts(events, backup).all(|event| event.at < first)
        && serving(events, master, vip, 0, replies)
}

/// (requests sent, requests without a reply) within `span`, leaving out the
/// last [`GRACE`] whose replies may still be on their way.
fn lost(events: &[Event], roles: &Roles, span: Span) -> (u32, u32) {
    let mut answered: HashMap<u16, Vec<Nanos>> = HashMap::new();
    for event in events {
        if let Kind::EchoReply { from, seq } = event.kind
            && from == roles.vip
        {
            answered.entry(seq).or_default().push(event.at);
        }
    }
    let counted = counted(span);
    let (mut sent, mut unanswered) = (0, 0);
    for event in events
        .iter()
        .filter(|event| event.port == roles.client && within(event, counted))
    {
        let Kind::EchoRequest { to, seq } = event.kind else {
            continue;
        };
        if to != roles.vip {
            continue;
        }
        sent += 1;
        let replied = answered.get(&seq).is_some_and(|times| {
            times
                .iter()
                .any(|&at| at >= event.at && at - event.at <= REPLY_WINDOW)
        });
        if !replied {
            unanswered += 1;
        }
    }
    (sent, unanswered)
}

/// A run in which `roles.old` should stay master and `roles.new` backup.
pub fn steady_run(events: &[Event], roles: &Roles, span: Span) -> SteadyOutcome {
    let mut transitions = 0;
    let mut backup_adverts = 0;
    let mut previous: Option<&str> = None;
    for event in events.iter().filter(|event| within(event, span)) {
        if !matches!(event.kind, Kind::Advert { leaving: false, .. }) {
            continue;
        }
        let port = event.port.as_str();
        if port != roles.old && port != roles.new {
            continue;
        }
        if port == roles.new {
            backup_adverts += 1;
        }
        if previous.is_some_and(|previous| previous != port) {
            transitions += 1;
        }
        previous = Some(port);
    }
    let (requests, lost) = lost(events, roles, span);
    SteadyOutcome {
        transitions,
        backup_adverts,
        requests,
        lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 1);
    const MS: Nanos = 1_000_000;
    const ROLES: Roles<'static> = Roles {
        new: "gw2-eth0",
        old: "gw1-eth0",
        client: "client-eth0",
        vip: VIP,
    };

    fn event(at_ms: Nanos, port: &str, kind: Kind) -> Event {
        Event {
            at: at_ms * MS,
            port: port.to_owned(),
            kind,
        }
    }

    fn advert(at_ms: Nanos, port: &str) -> Event {
        let source = if port == "gw1-eth0" {
            Ipv4Addr::new(10, 0, 9, 2)
        } else {
            Ipv4Addr::new(10, 0, 9, 3)
        };
        event(
            at_ms,
            port,
            Kind::Advert {
                source,
                leaving: false,
            },
        )
    }

    fn leaving(at_ms: Nanos, port: &str) -> Event {
        event(
            at_ms,
            port,
            Kind::Advert {
                source: Ipv4Addr::new(10, 0, 9, 2),
                leaving: true,
            },
        )
    }

    /// Echo request `seq` at `at_ms`, answered 1 ms later by `by` (if any).
    fn ping(at_ms: Nanos, seq: u16, by: Option<&str>) -> Vec<Event> {
        let mut events = vec![event(
            at_ms,
            "client-eth0",
            Kind::EchoRequest { to: VIP, seq },
        )];
        if let Some(port) = by {
            events.push(event(at_ms + 1, port, Kind::EchoReply { from: VIP, seq }));
        }
        events
    }

    fn sorted(mut events: Vec<Event>) -> Vec<Event> {
        events.sort_by_key(|event| event.at);
        events
    }

    /// gw1 is killed at 1000 ms; gw2 advertises at 4000, announces at 4001
    /// and answers from 4010; pings every 10 ms, gw1's VIP gone at once.
    fn crash() -> Vec<Event> {
        let mut events = vec![advert(0, "gw1-eth0"), advert(999, "gw1-eth0")];
        events.push(advert(4000, "gw2-eth0"));
        events.push(event(4001, "gw2-eth0", Kind::Garp { address: VIP }));
        events.push(advert(5000, "gw2-eth0"));
        for (n, at) in (900..5500).step_by(10).enumerate() {
            let seq = u16::try_from(n).expect("few pings");
            let by = match at {
                ..1000 => Some("gw1-eth0"),
                1000..4010 => None,
                _ => Some("gw2-eth0"),
            };
            events.extend(ping(at, seq, by));
        }
        sorted(events)
    }

    #[test]
    fn crash_figures_count_from_the_action() {
        let span = Span {
            start: 1000 * MS,
            end: 5500 * MS,
        };
        let outcome = measure(&crash(), &ROLES, span, 1500 * MS);
        assert_eq!(outcome.advert, Some(Duration::from_secs(3)));
        assert_eq!(outcome.garp, Some(Duration::from_millis(3001)));
        assert_eq!(outcome.reply, Some(Duration::from_millis(3011)));
        // Requests at 1000, 1010, ..., 4000: 301 unanswered, of the 441
        // sent before the last 100 ms.
        assert_eq!(outcome.lost, 301);
        assert_eq!(outcome.requests, 441);
        assert_eq!(outcome.observed, Duration::from_millis(4400));
        assert_eq!(outcome.duplicate, Duration::ZERO);
        assert!(outcome.took_over);
    }

    #[test]
    fn overlapping_masters_are_duplicate_time() {
        let events = sorted(vec![
            advert(1500, "gw2-eth0"),
            advert(1800, "gw1-eth0"),
            advert(2500, "gw2-eth0"),
            advert(2100, "gw1-eth0"),
        ]);
        let span = Span {
            start: 1000 * MS,
            end: 3000 * MS,
        };
        let outcome = measure(&events, &ROLES, span, 100 * MS);
        assert_eq!(outcome.duplicate, Duration::from_millis(600));
        assert!(outcome.took_over, "gw1 quiet since 2100 ms");
        // Still advertising within `quiet` of the end: no handover yet.
        assert!(!measure(&events, &ROLES, span, 1000 * MS).took_over);
    }

    #[test]
    fn both_answering_is_duplicate_time() {
        let mut events = ping(1000, 1, Some("gw2-eth0"));
        events.extend(ping(1010, 2, Some("gw1-eth0")));
        events.extend(ping(1020, 3, Some("gw1-eth0")));
        events.extend(ping(1030, 4, Some("gw2-eth0")));
        let span = Span {
            start: 900 * MS,
            end: 2000 * MS,
        };
        let outcome = measure(&sorted(events), &ROLES, span, 100 * MS);
        assert_eq!(outcome.duplicate, Duration::from_millis(20));
        assert_eq!(outcome.lost, 0);
        assert!(!outcome.took_over, "gw2 never advertised");
    }

    #[test]
    fn a_bow_out_is_not_advertising_as_master() {
        let events = sorted(vec![
            leaving(1001, "gw1-eth0"),
            advert(1003, "gw2-eth0"),
            event(1003, "gw2-eth0", Kind::Garp { address: VIP }),
        ]);
        let span = Span {
            start: 1000 * MS,
            end: 2000 * MS,
        };
        let outcome = measure(&events, &ROLES, span, 500 * MS);
        assert_eq!(outcome.advert, Some(Duration::from_millis(3)));
        assert_eq!(outcome.duplicate, Duration::ZERO);
        assert!(outcome.took_over);
    }

    #[test]
    fn events_before_the_action_do_not_count() {
        let events = sorted(vec![
            advert(500, "gw2-eth0"),
            event(500, "gw2-eth0", Kind::Garp { address: VIP }),
        ]);
        let span = Span {
            start: 1000 * MS,
            end: 2000 * MS,
        };
        let outcome = measure(&events, &ROLES, span, 100 * MS);
        assert_eq!(
            outcome,
            Outcome {
                observed: Duration::from_millis(900),
                ..Outcome::default()
            }
        );
    }

    #[test]
    fn late_replies_and_requests_at_the_end_are_not_lost() {
        let mut events = ping(1000, 1, None);
        // Answered, but 2 s late: lost.
        events.push(event(
            3000,
            "gw1-eth0",
            Kind::EchoReply { from: VIP, seq: 1 },
        ));
        // Within the grace period at the end: not counted.
        events.extend(ping(3950, 2, None));
        let span = Span {
            start: 900 * MS,
            end: 4000 * MS,
        };
        assert_eq!(lost(&sorted(events), &ROLES, span), (1, 1));
    }

    #[test]
    fn a_wrapped_sequence_number_matches_its_own_reply() {
        let mut events = ping(1000, 7, Some("gw1-eth0"));
        // The same seq 655 s later (ping wrapped), unanswered.
        events.extend(ping(656_000, 7, None));
        let span = Span {
            start: 0,
            end: 700_000 * MS,
        };
        assert_eq!(lost(&sorted(events), &ROLES, span), (2, 1));
    }

    #[test]
    fn serving_needs_the_latest_replies_from_the_port() {
        let mut events = Vec::new();
        for seq in 0..5 {
            events.extend(ping(u64::from(seq) * 10, seq, Some("gw1-eth0")));
        }
        events.extend(ping(50, 5, Some("gw2-eth0")));
        let events = sorted(events);
        assert!(serving(&events, "gw2-eth0", VIP, 0, 1));
        assert!(!serving(&events, "gw2-eth0", VIP, 0, 2));
        assert!(!serving(&events, "gw1-eth0", VIP, 0, 5));
        assert!(serving(&events[..10], "gw1-eth0", VIP, 0, 5));
        assert!(!serving(&events[..10], "gw1-eth0", VIP, 0, 6));
    }

    #[test]
    fn steady_means_master_advertises_alone_and_answers() {
        let mut events = vec![
            advert(0, "gw2-eth0"),
            advert(100, "gw1-eth0"),
            advert(200, "gw1-eth0"),
        ];
        events.extend(ping(250, 1, Some("gw1-eth0")));
        let events = sorted(events);
        assert!(steady(&events, "gw1-eth0", "gw2-eth0", VIP, 2, 1));
        assert!(!steady(&events, "gw1-eth0", "gw2-eth0", VIP, 3, 1));
        assert!(!steady(&events, "gw1-eth0", "gw2-eth0", VIP, 2, 2));
    }

    #[test]
    fn a_steady_run_counts_changes_of_master() {
        let mut events = vec![
            advert(0, "gw1-eth0"),
            advert(10, "gw1-eth0"),
            advert(20, "gw2-eth0"),
            advert(21, "gw1-eth0"),
            advert(30, "gw1-eth0"),
        ];
        events.extend(ping(5, 1, Some("gw1-eth0")));
        events.extend(ping(15, 2, None));
        let roles = Roles {
            new: "gw2-eth0",
            old: "gw1-eth0",
            ..ROLES
        };
        let span = Span {
            start: 0,
            end: 1000 * MS,
        };
        assert_eq!(
            steady_run(&sorted(events), &roles, span),
            SteadyOutcome {
                transitions: 2,
                backup_adverts: 1,
                requests: 2,
                lost: 1,
            }
        );
    }
}
