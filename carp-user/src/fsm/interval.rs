//! The advertisement interval: advbase seconds plus advskew/256 seconds.

use std::time::Duration;

/// Nanoseconds in 1/256 s: exact, so advskew never loses precision.
const SKEW_NANOS: u64 = 3_906_250;

/// An advertisement interval. Intervals order as OpenBSD compares its
/// timevals: by advbase, then advskew.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    pub advbase: u8,
    pub advskew: u8,
}

impl Interval {
    /// What a node sends when it leaves on purpose, so its backup takes over at once.
    pub const BOW_OUT: Interval = Interval {
        advbase: 255,
        advskew: 255,
    };

    /// How often a MASTER advertises; 0/0 means 1/256 s, as in OpenBSD.
    pub fn duration(self) -> Duration {
        if self.advbase == 0 && self.advskew == 0 {
            return Duration::from_nanos(SKEW_NANOS);
        }
        Duration::from_secs(u64::from(self.advbase))
            + Duration::from_nanos(u64::from(self.advskew) * SKEW_NANOS)
    }

    /// How long a BACKUP waits for the master: three intervals (the project's
    /// rule; OpenBSD's `carp_setrun` adds only one advskew/256 when advbase > 0,
    /// which orders backups the same way).
    pub fn master_down(self) -> Duration {
        self.duration() * 3
    }

    /// Whether a master advertising at `self` is sure to be declared down by a
    /// backup configured with `ours` (OpenBSD: "guaranteed to time out"; catches
    /// the 255/255 bow-out for any advbase up to 85).
    ///
    /// As OpenBSD's `carp_proto_input_c`: the bound is our interval with only the
    /// seconds tripled (3 x advbase + our advskew/256, its master-down time), and
    /// there is none when our advbase is 0. Our advskew counts: a backup at 1/100
    /// must not take over from a live master at 3/50, which OpenBSD keeps.
    pub fn times_out_against(self, ours: Interval) -> bool {
        let bound = (u16::from(ours.advbase) * 3, ours.advskew);
        ours.advbase != 0 && (u16::from(self.advbase), self.advskew) > bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(advbase: u8, advskew: u8) -> Interval {
        Interval { advbase, advskew }
    }

    #[test]
    fn sub_second_part_is_exact() {
        assert_eq!(
            interval(1, 100).duration(),
            Duration::from_micros(1_390_625)
        );
        assert_eq!(interval(0, 1).duration(), Duration::from_nanos(3_906_250));
        assert_eq!(interval(0, 0).duration(), Duration::from_nanos(3_906_250));
        assert_eq!(
            interval(0, 0).master_down(),
            Duration::from_nanos(11_718_750)
        );
        assert_eq!(interval(1, 0).master_down(), Duration::from_secs(3));
        assert_eq!(
            interval(255, 254).duration(),
            Duration::from_nanos(255_992_187_500)
        );
    }

    #[test]
    fn order_is_advbase_then_advskew() {
        assert!(interval(1, 200) < interval(2, 0));
        assert!(interval(1, 0) < interval(1, 1));
        assert!(interval(0, 255) < interval(1, 0));
    }

    #[test]
    fn bow_out_times_out_unless_advbase_is_zero_or_over_85() {
        assert!(Interval::BOW_OUT.times_out_against(interval(1, 0)));
        assert!(Interval::BOW_OUT.times_out_against(interval(84, 254)));
        // 3 x 85 = 255 seconds, and 255/255 is longer than 255 + any advskew.
        assert!(Interval::BOW_OUT.times_out_against(interval(85, 254)));
        assert!(!Interval::BOW_OUT.times_out_against(interval(86, 0)));
        assert!(!Interval::BOW_OUT.times_out_against(interval(0, 0)));
        assert!(!interval(3, 0).times_out_against(interval(1, 0)));
        assert!(interval(3, 1).times_out_against(interval(1, 0)));
        assert!(!interval(3, 50).times_out_against(interval(1, 100)));
    }
}
