//! min / median / max of a handful of runs.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for no samples. NaN samples are not expected (every figure is
    /// a duration or a count) and are left out.
    pub fn of(samples: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| !v.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            f64::midpoint(sorted[middle - 1], sorted[middle])
        };
        Some(Self {
            min: sorted[0],
            median,
            max: sorted[sorted.len() - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_counts_take_the_middle_sample() {
        assert_eq!(
            Summary::of(&[3.0, 1.0, 2.0]),
            Some(Summary {
                min: 1.0,
                median: 2.0,
                max: 3.0
            })
        );
    }

    #[test]
    fn even_counts_average_the_two_middle_samples() {
        assert_eq!(
            Summary::of(&[4.0, 1.0, 3.0, 2.0]).map(|s| s.median),
            Some(2.5)
        );
    }

    #[test]
    fn one_sample_is_min_median_and_max() {
        assert_eq!(
            Summary::of(&[7.5]),
            Some(Summary {
                min: 7.5,
                median: 7.5,
                max: 7.5
            })
        );
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN]), None);
    }
}
