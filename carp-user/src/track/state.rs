//! A tracker's verdict with hysteresis (ifstated's "rise" and "fall"), so one
//! lost ping neither demotes a group nor lets a flapping link bring it back.
//! Pure: the caller feeds it check results in order.

/// The verdict of one tracker over its recent checks.
///
/// Unknown until `rise` consecutive good checks (good) or `fall` consecutive
/// failed checks (failed); afterwards it turns good only after `rise`
/// consecutive good checks and failed only after `fall` consecutive failed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    verdict: Option<bool>,
    /// The result of the current run of equal check results, and its length.
    run: Option<(bool, u32)>,
}

impl Hysteresis {
    /// `rise` and `fall` of 0 act as 1: a verdict needs at least one check.
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            verdict: None,
            run: None,
        }
    }

    /// Counts one check; returns the new verdict when this check changed it.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        let length = match self.run {
            Some((previous, length)) if previous == ok => length.saturating_add(1),
            _ => 1,
        };
        self.run = Some((ok, length));
        let needed = if ok { self.rise } else { self.fall };
        if length >= needed && self.verdict != Some(ok) {
            self.verdict = Some(ok);
            return Some(ok);
        }
        None
    }

    /// `Some(true)` good, `Some(false)` failed, `None` not decided yet.
    pub fn verdict(&self) -> Option<bool> {
        self.verdict
    }

    pub fn rise(&self) -> u32 {
        self.rise
    }

    pub fn fall(&self) -> u32 {
        self.fall
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Hysteresis;

    /// An independent statement of the rule: the verdict after `checks` is the
    /// result of the last check that ended a run of equal results at least as
    /// long as that result needs (`rise` for good, `fall` for failed).
    fn reference(checks: &[bool], rise: u32, fall: u32) -> Option<bool> {
        (0..checks.len()).rev().find_map(|end| {
            let ok = checks[end];
            let run = checks[..=end]
                .iter()
                .rev()
                .take_while(|&&c| c == ok)
                .count();
            let needed = usize::try_from(if ok { rise } else { fall }).unwrap_or(usize::MAX);
            (run >= needed).then_some(ok)
        })
    }

    /// Feeds `checks` one by one and compares every step with the reference:
    /// the verdict, and that `observe` reports exactly the changes.
    fn assert_matches_reference(checks: &[bool], rise: u32, fall: u32) {
        let mut hysteresis = Hysteresis::new(rise, fall);
        for end in 0..checks.len() {
            let before = reference(&checks[..end], rise, fall);
            let after = reference(&checks[..=end], rise, fall);
            let reported = hysteresis.observe(checks[end]);
            let expected = (after != before).then_some(after).flatten();
            assert_eq!(
                reported,
                expected,
                "rise {rise} fall {fall} checks {:?}",
                &checks[..=end]
            );
            assert_eq!(hysteresis.verdict(), after);
        }
    }

    #[test]
    fn every_sequence_up_to_ten_checks_follows_the_rule() {
        for rise in 1..=4 {
            for fall in 1..=4 {
                for length in 0..=10 {
                    for bits in 0u32..(1 << length) {
                        let checks: Vec<bool> = (0..length).map(|i| (bits >> i) & 1 == 1).collect();
                        assert_matches_reference(&checks, rise, fall);
                    }
                }
            }
        }
    }

    #[test]
    fn table() {
        // (rise, fall, checks as g/b, verdict after each check as ?/G/B)
        let cases = [
            (3, 3, "gg", "??"),
            (3, 3, "ggg", "??G"),
            (3, 3, "bbb", "??B"),
            (1, 1, "gbgb", "GBGB"),
            // Fails fast, recovers slowly: one bad check is enough, three good ones are needed.
            (3, 1, "bggbggg", "BBBBBBG"),
            // A good check in the middle of a bad run restarts the count.
            (3, 2, "gggbgbb", "??GGGGB"),
            (2, 2, "gbgbgbgb", "????????"),
        ];
        for (rise, fall, checks, verdicts) in cases {
            let mut hysteresis = Hysteresis::new(rise, fall);
            let got: String = checks
                .chars()
                .map(|c| {
                    hysteresis.observe(c == 'g');
                    match hysteresis.verdict() {
                        None => '?',
                        Some(true) => 'G',
                        Some(false) => 'B',
                    }
                })
                .collect();
            assert_eq!(got, verdicts, "rise {rise} fall {fall} checks {checks}");
        }
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let mut hysteresis = Hysteresis::new(0, 0);
        assert_eq!((hysteresis.rise(), hysteresis.fall()), (1, 1));
        assert_eq!(hysteresis.observe(false), Some(false));
        assert_eq!(hysteresis.observe(true), Some(true));
        assert_eq!(hysteresis.observe(true), None);
    }

    #[test]
    fn a_run_longer_than_u32_cannot_overflow() {
        let mut hysteresis = Hysteresis::new(1, 1);
        hysteresis.run = Some((true, u32::MAX));
        hysteresis.verdict = Some(true);
        assert_eq!(hysteresis.observe(true), None);
        assert_eq!(hysteresis.run, Some((true, u32::MAX)));
    }

    proptest! {
        #[test]
        fn long_sequences_follow_the_rule(
            rise in 1u32..=20,
            fall in 1u32..=20,
            checks in proptest::collection::vec(any::<bool>(), 0..200),
        ) {
            assert_matches_reference(&checks, rise, fall);
        }

        #[test]
        fn a_verdict_changes_only_at_the_end_of_a_long_enough_run(
            rise in 1u32..=10,
            fall in 1u32..=10,
            checks in proptest::collection::vec(any::<bool>(), 0..200),
        ) {
            let mut hysteresis = Hysteresis::new(rise, fall);
            for (index, &ok) in checks.iter().enumerate() {
                if let Some(verdict) = hysteresis.observe(ok) {
                    prop_assert_eq!(verdict, ok);
                    let run = checks[..=index].iter().rev().take_while(|&&c| c == ok).count();
                    let needed = if ok { rise } else { fall };
                    prop_assert!(u32::try_from(run).unwrap_or(u32::MAX) >= needed);
                }
            }
        }
    }
}
