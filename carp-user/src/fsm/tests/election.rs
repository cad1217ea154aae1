//! Received advertisements and OpenBSD's comparison rules: a table written by
//! hand, an exhaustive grid and random values, all checked against the
//! reference in `Case`.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::{
    AdvertToSend, Case, Duration, Output, State, T0, backup, iv, master, ref_interval,
    ref_master_down, ticks,
};

/// Feeds `case` to a machine in `state` (MASTER or BACKUP), half an interval
/// after it got there, so no timer is due, and checks the output, the new
/// state and the timers against the reference. Returns the transition reason.
fn check(case: Case, state: State) -> Option<&'static str> {
    let (mut machine, since) = if state == State::Master {
        master(case.config(), case.our_demote)
    } else {
        (backup(case.config()), T0)
    };
    let deadline_before = machine.next_deadline();
    let now = since + ref_interval(case.ours) / 2;
    let result = machine.advert_received(now, &case.advert(), case.our_demote);
    let Ok(output) = result else {
        panic!("{case:?} in {state}: ignored: {result:?}");
    };
    let moved = output.transition.map(|t| (t.from, t.to));
    if state == State::Master && case.master_steps_down() {
        assert_eq!(moved, Some((State::Master, State::Backup)), "{case:?}");
        assert_eq!(
            (output.send_advert, output.announce),
            (None, false),
            "{case:?}"
        );
        assert_eq!(machine.state(), State::Backup, "{case:?}");
        let master_down = now + ref_master_down(case.ours);
        assert_eq!(machine.next_deadline(), Some(master_down), "{case:?}");
    } else if state == State::Master {
        assert_eq!(output, Output::default(), "{case:?}");
        assert_eq!(machine.state(), State::Master, "{case:?}");
        assert_eq!(machine.next_deadline(), deadline_before, "{case:?}");
    } else if case.backup_takes_over() {
        assert_eq!(moved, Some((State::Backup, State::Master)), "{case:?}");
        let advert = AdvertToSend {
            interval: case.ours,
            demote: case.our_demote,
        };
        assert_eq!(output.send_advert, Some(advert), "{case:?}");
        assert!(output.announce, "{case:?}");
        assert_eq!(machine.state(), State::Master, "{case:?}");
        let next_advert = now + ref_interval(case.ours);
        assert_eq!(machine.next_deadline(), Some(next_advert), "{case:?}");
    } else {
        assert_eq!(output, Output::default(), "{case:?}");
        assert_eq!(machine.state(), State::Backup, "{case:?}");
        // Restarted from now with our own interval, whatever the peer's.
        let master_down = now + ref_master_down(case.ours);
        assert_eq!(machine.next_deadline(), Some(master_down), "{case:?}");
    }
    let reason = output.transition.map(|t| t.reason);
    if let Some(reason) = reason {
        assert!(reason_is_true(case, reason), "{case:?}: reason {reason:?}");
    }
    reason
}

/// A transition's reason must name a rule that holds for the case.
fn reason_is_true(case: Case, reason: &str) -> bool {
    let (d, our_d) = (case.their_demote, case.our_demote);
    let (ours, theirs) = (ticks(case.ours), ticks(case.theirs));
    match reason {
        "less demoted master" => d < our_d,
        "more frequent advertisement received" => ours >= theirs && d <= our_d,
        "preempting a slower master" => case.preempt && ours < theirs && d >= our_d,
        "master is demoted" => d > our_d,
        "master will time out" => case.peer_times_out(),
        _ => false,
    }
}

fn case(ours: (u8, u8), theirs: (u8, u8), demotes: (u8, u8), preempt: bool) -> Case {
    Case {
        ours: iv(ours.0, ours.1),
        theirs: iv(theirs.0, theirs.1),
        our_demote: demotes.0,
        their_demote: demotes.1,
        preempt,
    }
}

const BOW_OUT: (u8, u8) = (255, 255);
const PREEMPT: bool = true;
const NO_PREEMPT: bool = false;

#[test]
fn master_table() {
    let step_down = Some("more frequent advertisement received");
    let less_demoted = Some("less demoted master");
    #[rustfmt::skip]
    let rows = [
        ("peer advertises more often", case((1, 100), (1, 0), (0, 0), NO_PREEMPT), step_down),
        ("equal intervals: the receiver yields", case((1, 0), (1, 0), (0, 0), NO_PREEMPT), step_down),
        ("peer advertises less often", case((1, 0), (1, 1), (0, 0), NO_PREEMPT), None),
        ("advbase before advskew", case((2, 0), (1, 254), (0, 0), NO_PREEMPT), step_down),
        ("advskew only within an advbase", case((1, 254), (2, 0), (0, 0), NO_PREEMPT), None),
        ("slower but less demoted peer", case((1, 0), (2, 0), (1, 0), NO_PREEMPT), less_demoted),
        ("faster but more demoted peer", case((1, 100), (1, 0), (0, 1), NO_PREEMPT), None),
        ("demote 255 against 254", case((1, 0), (9, 0), (255, 254), NO_PREEMPT), less_demoted),
        ("preempt plays no part for a master", case((1, 100), (1, 0), (0, 0), PREEMPT), step_down),
        ("a peer bowing out", case((1, 0), BOW_OUT, (0, 0), NO_PREEMPT), None),
        ("0/0 compares below 0/1", case((0, 0), (0, 1), (0, 0), NO_PREEMPT), None),
        ("0/1 yields to 0/0", case((0, 1), (0, 0), (0, 0), NO_PREEMPT), step_down),
    ];
    for (what, case, expected) in rows {
        assert_eq!(
            case.master_steps_down(),
            expected.is_some(),
            "reference: {what}"
        );
        assert_eq!(check(case, State::Master), expected, "{what}");
    }
}

#[test]
fn backup_table() {
    let preempting = Some("preempting a slower master");
    let demoted = Some("master is demoted");
    let times_out = Some("master will time out");
    #[rustfmt::skip]
    let rows = [
        ("slower master, no preempt", case((1, 0), (1, 100), (0, 0), NO_PREEMPT), None),
        ("slower master, preempt", case((1, 0), (1, 100), (0, 0), PREEMPT), preempting),
        ("equal master, preempt", case((1, 0), (1, 0), (0, 0), PREEMPT), None),
        ("faster master, preempt", case((1, 100), (1, 0), (0, 0), PREEMPT), None),
        ("slower, less demoted master, preempt", case((1, 0), (2, 0), (1, 0), PREEMPT), None),
        ("slower, more demoted master, preempt", case((1, 0), (2, 0), (0, 1), PREEMPT), preempting),
        ("demoted master, no preempt", case((1, 100), (1, 0), (0, 1), NO_PREEMPT), demoted),
        ("demote 255 against 254", case((1, 100), (1, 0), (254, 255), NO_PREEMPT), demoted),
        ("bow-out, advbase 1", case((1, 0), BOW_OUT, (0, 0), NO_PREEMPT), times_out),
        ("bow-out from a less demoted master", case((1, 0), BOW_OUT, (3, 0), NO_PREEMPT), times_out),
        ("bow-out, advbase 84", case((84, 254), BOW_OUT, (0, 0), NO_PREEMPT), times_out),
        ("bow-out, advbase 85: 255/255 > 255/254", case((85, 254), BOW_OUT, (0, 0), NO_PREEMPT), times_out),
        ("bow-out, advbase 86: 3 x 86 s > 255 s", case((86, 0), BOW_OUT, (0, 0), NO_PREEMPT), None),
        ("bow-out, advbase 0: no bound at all", case((0, 100), BOW_OUT, (0, 0), NO_PREEMPT), None),
        ("bow-out, advbase 0, preempt", case((0, 100), BOW_OUT, (0, 0), PREEMPT), preempting),
        ("exactly 3 x advbase is not sure to time out", case((1, 0), (3, 0), (0, 0), NO_PREEMPT), None),
        ("3 s + 1/256 against 1/0", case((1, 0), (3, 1), (0, 0), NO_PREEMPT), times_out),
        ("bound keeps our advskew: 3/50 against 1/100", case((1, 100), (3, 50), (0, 0), NO_PREEMPT), None),
        ("equal to the bound: 3/100 against 1/100", case((1, 100), (3, 100), (0, 0), NO_PREEMPT), None),
        ("past the bound: 3/101 against 1/100", case((1, 100), (3, 101), (0, 0), NO_PREEMPT), times_out),
        ("0/0 against a 0/1 master, preempt", case((0, 0), (0, 1), (0, 0), PREEMPT), preempting),
    ];
    for (what, case, expected) in rows {
        assert_eq!(
            case.backup_takes_over(),
            expected.is_some(),
            "reference: {what}"
        );
        assert_eq!(check(case, State::Backup), expected, "{what}");
    }
}

// Around every boundary: 0, 1, and 3 x advbase = their advbase (84 x 3 = 252,
// 85 x 3 = 255), our advskew against theirs at that boundary, demotes equal,
// one apart and at the ends.
const OUR_ADVBASES: [u8; 8] = [0, 1, 2, 3, 84, 85, 86, 255];
const OUR_ADVSKEWS: [u8; 4] = [0, 1, 100, 254];
const THEIR_ADVBASES: [u8; 15] = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 251, 252, 253, 254, 255];
const THEIR_ADVSKEWS: [u8; 7] = [0, 1, 99, 100, 101, 254, 255];
const DEMOTES: [u8; 4] = [0, 1, 2, 255];

fn grid() -> impl Iterator<Item = Case> {
    let intervals = |bases: &'static [u8], skews: &'static [u8]| {
        bases
            .iter()
            .flat_map(move |&b| skews.iter().map(move |&s| iv(b, s)))
    };
    intervals(&OUR_ADVBASES, &OUR_ADVSKEWS).flat_map(move |ours| {
        intervals(&THEIR_ADVBASES, &THEIR_ADVSKEWS).flat_map(move |theirs| {
            DEMOTES.iter().flat_map(move |&our_demote| {
                DEMOTES.iter().flat_map(move |&their_demote| {
                    [false, true].map(move |preempt| Case {
                        ours,
                        theirs,
                        our_demote,
                        their_demote,
                        preempt,
                    })
                })
            })
        })
    })
}

#[test]
fn exhaustive_grid_matches_the_reference() {
    let mut outcomes: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for case in grid() {
        for state in [State::Master, State::Backup] {
            let reason = check(case, state).unwrap_or("stays");
            *outcomes.entry((state.to_string(), reason)).or_default() += 1;
        }
    }
    let total: usize = outcomes.values().sum();
    assert_eq!(total, 8 * 4 * 15 * 7 * 4 * 4 * 2 * 2);
    // The grid reaches every rule in both states, so none goes untested.
    let reached: Vec<_> = outcomes.keys().map(|(s, r)| (s.as_str(), *r)).collect();
    assert_eq!(
        reached,
        [
            ("BACKUP", "master is demoted"),
            ("BACKUP", "master will time out"),
            ("BACKUP", "preempting a slower master"),
            ("BACKUP", "stays"),
            ("MASTER", "less demoted master"),
            ("MASTER", "more frequent advertisement received"),
            ("MASTER", "stays"),
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn any_advert_follows_the_rules(
        ours in (any::<u8>(), 0u8..=254),
        theirs in (any::<u8>(), any::<u8>()),
        demotes in (any::<u8>(), any::<u8>()),
        preempt: bool,
        as_master: bool,
    ) {
        let case = case(ours, theirs, demotes, preempt);
        check(case, if as_master { State::Master } else { State::Backup });
    }

    /// The bow-out rule on its own, over every interval a peer can send.
    #[test]
    fn bow_out_bound_is_three_advbase_plus_our_advskew(
        ours in (any::<u8>(), 0u8..=254),
        theirs in (any::<u8>(), any::<u8>()),
    ) {
        let (ours, theirs) = (iv(ours.0, ours.1), iv(theirs.0, theirs.1));
        let nanos = |d: Duration| d.as_nanos();
        // In time: their interval is longer than 3 x advbase s + advskew/256 s.
        let bound = Duration::from_secs(3 * u64::from(ours.advbase))
            + Duration::from_nanos(u64::from(ours.advskew) * super::SKEW_NS);
        let expected = ours.advbase != 0 && nanos(ref_interval(theirs)) > nanos(bound);
        prop_assert_eq!(theirs.times_out_against(ours), expected);
    }
}
