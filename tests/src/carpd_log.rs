//! carpd's log read back: when each state transition happened, to the
//! microsecond, on the wall clock all namespaces share. Polling carpctl sees
//! a transition tens of milliseconds late; the log line is written as it
//! happens, so bounds of a few hundred milliseconds between two nodes'
//! transitions are measured from here.

use std::time::{Duration, SystemTime};

use crate::status::CarpState;

/// One `<iface>: state transition: <from> -> <to> (<reason>)` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedTransition {
    /// Since the Unix epoch, as in the line's timestamp.
    pub at: Duration,
    pub interface: String,
    pub from: CarpState,
    pub to: CarpState,
    pub reason: String,
}

/// The wall clock as carpd's log timestamps count it, to compare with
/// [`LoggedTransition::at`].
pub fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Every transition in a carpd log, oldest first. Lines of another shape
/// are skipped.
pub fn transitions(log: &str) -> Vec<LoggedTransition> {
    log.lines().filter_map(transition).collect()
}

/// `2025-06-01T12:00:00.123456Z  INFO carp0: state transition: BACKUP -> MASTER (reason)`:
/// tracing's default format without ANSI colours and targets.
fn transition(line: &str) -> Option<LoggedTransition> {
    let (head, tail) = line.split_once(": state transition: ")?;
    let at = timestamp(head.split_whitespace().next()?)?;
    let interface = head.split_whitespace().last()?.to_owned();
    let (from, rest) = tail.split_once(" -> ")?;
    let (to, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(LoggedTransition {
        at,
        interface,
        from: CarpState::from(from.to_owned()),
        to: CarpState::from(to.to_owned()),
        reason: reason
            .trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .to_owned(),
    })
}

/// RFC 3339 in UTC (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`) since the Unix epoch.
fn timestamp(text: &str) -> Option<Duration> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock = clock.splitn(3, ':').map(str::parse::<u64>);
    let (hours, minutes, seconds) = (
        clock.next()?.ok()?,
        clock.next()?.ok()?,
        clock.next()?.ok()?,
    );
    let nanos = if fraction.is_empty() {
        0
    } else {
        // Up to nine digits, right-padded: ".5" is 500 ms.
        let digits: String = fraction
            .chars()
            .chain(std::iter::repeat('0'))
            .take(9)
            .collect();
        digits.parse::<u32>().ok()?
    };
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    let secs = days * 86_400 + hours * 3600 + minutes * 60 + seconds;
    Some(Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    #[test]
    fn reads_transition_lines_and_skips_the_rest() {
        let log = "2025-06-01T12:00:00.123456Z  INFO carp0: vhid 1 on eth-out, advbase 1 advskew 0, 2 address(es)\n\
                   2025-06-01T12:00:00.200000Z  INFO carp0: state transition: INIT -> BACKUP (start)\n\
                   2025-06-01T12:00:03.5Z  INFO carp1: state transition: BACKUP -> MASTER (master-down timer expired)\n";
        let seen = transitions(log);
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].interface, "carp0");
        assert_eq!(
            (&seen[0].from, &seen[0].to),
            (&CarpState::Init, &CarpState::Backup)
        );
        assert_eq!(seen[0].reason, "start");
        assert_eq!(seen[1].interface, "carp1");
        assert_eq!(seen[1].to, CarpState::Master);
        assert_eq!(seen[1].reason, "master-down timer expired");
        assert_eq!(seen[1].at.abs_diff(seen[0].at), Duration::from_millis(3300));
    }

    #[test]
    fn timestamps_count_from_the_unix_epoch() {
        assert_eq!(timestamp("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        // 2000-03-01 is day 11017 (after a leap day of a century leap year).
        assert_eq!(
            timestamp("2000-03-01T00:00:01.000001Z"),
            Some(Duration::new(11_017 * 86_400 + 1, 1000))
        );
        // 2025-06-01 is day 20240.
        assert_eq!(
            timestamp("2025-06-01T12:00:00Z"),
            Some(Duration::from_secs(20_240 * DAY + 12 * 3600))
        );
        assert_eq!(timestamp("2025-06-01 12:00:00"), None);
        assert_eq!(timestamp("INFO"), None);
    }

    #[test]
    fn the_wall_clock_is_after_2025() {
        // 2025-01-01 is day 20089.
        assert!(wall_clock() > Duration::from_secs(20_089 * DAY));
    }
}
