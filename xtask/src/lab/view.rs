//! What the lab prints: a line per state transition and the table of who is
//! master of each vhid. Pure, so the wording is tested without a lab.

use std::collections::BTreeMap;
use std::time::Duration;

use carp_tests::{GATEWAYS, Status, VHIDS, masters_by_vhid};

/// What one poll learnt about one gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    Status(Status),
    /// carpd runs but carpctl got no answer (yet).
    NoAnswer(String),
    /// carpd is gone, with its exit status.
    Exited(String),
}

/// Last known state per (gateway, carp interface), and per gateway whether
/// it answered; changes become lines.
#[derive(Debug, Default)]
pub struct View {
    states: BTreeMap<(String, String), String>,
    health: BTreeMap<String, String>,
    polls: BTreeMap<String, Poll>,
}

impl View {
    /// Records `poll` for `node` and returns the lines describing what changed.
    pub fn observe(&mut self, elapsed: Duration, node: &str, poll: Poll) -> Vec<String> {
        let stamp = format!("{:>8.3}s {node}", elapsed.as_secs_f64());
        let mut lines = Vec::new();
        let health = match &poll {
            Poll::Status(_) => "answering".to_owned(),
            Poll::NoAnswer(_) => "not answering".to_owned(),
            Poll::Exited(status) => format!("carpd exited ({status})"),
        };
        let previous_health = self.health.insert(node.to_owned(), health.clone());
        if previous_health.as_deref() != Some(health.as_str()) {
            match &poll {
                Poll::Status(_) => lines.push(format!("{stamp} carpd answering")),
                // Say why, but only once per change: it repeats every poll.
                Poll::NoAnswer(reason) => {
                    let reason = reason.lines().next().unwrap_or("");
                    let what = if previous_health.is_none() {
                        "no answer from carpd yet"
                    } else {
                        "carpd not answering"
                    };
                    lines.push(format!("{stamp} {what}: {reason}"));
                }
                Poll::Exited(_) => lines.push(format!("{stamp} {health}")),
            }
        }
        match &poll {
            Poll::Status(status) => {
                for iface in &status.interfaces {
                    let key = (node.to_owned(), iface.name.clone());
                    let state = iface.state.to_string();
                    let before = self.states.insert(key, state.clone());
                    if before.as_deref() != Some(state.as_str()) {
                        let before = before.unwrap_or_else(|| "-".to_owned());
                        lines.push(format!("{stamp} {} {before} -> {state}", iface.name));
                    }
                }
            }
            // Nothing known about its interfaces until it answers again.
            Poll::NoAnswer(_) | Poll::Exited(_) => self.states.retain(|(n, _), _| n != node),
        }
        self.polls.insert(node.to_owned(), poll);
        lines
    }

    /// Statuses of the gateways that answered in their last poll.
    pub fn statuses(&self) -> Vec<(&str, &Status)> {
        self.polls
            .iter()
            .filter_map(|(node, poll)| match poll {
                Poll::Status(status) => Some((node.as_str(), status)),
                Poll::NoAnswer(_) | Poll::Exited(_) => None,
            })
            .collect()
    }

    /// Whether every lab vhid has exactly one MASTER.
    pub fn converged(&self) -> bool {
        masters_by_vhid(&self.statuses())
            .values()
            .all(|masters| masters.len() == 1)
    }

    /// One row per vhid: each gateway's state and who is master.
    pub fn table(&self) -> String {
        let masters = masters_by_vhid(&self.statuses());
        let header: Vec<String> = GATEWAYS
            .iter()
            .map(|gw| format!(" {:<8}", gw.name))
            .collect();
        let rows: Vec<String> = VHIDS
            .iter()
            .map(|vhid| {
                let cells: Vec<String> = GATEWAYS
                    .iter()
                    .map(|gw| format!(" {:<8}", self.cell(gw.name, vhid.vhid)))
                    .collect();
                let holders = masters.get(&vhid.vhid).cloned().unwrap_or_default();
                let master = match holders.as_slice() {
                    [] => "none".to_owned(),
                    [one] => one.clone(),
                    many => format!("{} (more than one!)", many.join("+")),
                };
                format!(
                    "    {:<5} {:<6}{} {master}\n",
                    vhid.vhid,
                    vhid.name,
                    cells.concat()
                )
            })
            .collect();
        format!(
            "    {:<5} {:<6}{} master\n{}",
            "vhid",
            "iface",
            header.concat(),
            rows.concat()
        )
    }

    fn cell(&self, node: &str, vhid: u8) -> String {
        match self.polls.get(node) {
            Some(Poll::Status(status)) => status
                .by_vhid(vhid)
                .map_or_else(|| "absent".to_owned(), |iface| iface.state.to_string()),
            Some(Poll::Exited(_)) => "exited".to_owned(),
            Some(Poll::NoAnswer(_)) | None => "?".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(carp0: &str, carp1: &str) -> Poll {
        let json = format!(
            r#"{{"interfaces":[{{"name":"carp0","vhid":1,"state":"{carp0}"}},{{"name":"carp1","vhid":2,"state":"{carp1}"}}]}}"#
        );
        Poll::Status(Status::parse(&json).expect("test status is well formed"))
    }

    const T: Duration = Duration::from_millis(12_345);

    #[test]
    fn a_transition_is_one_line_with_time_node_and_states() {
        let mut view = View::default();
        let first = view.observe(
            Duration::from_millis(800),
            "gw1",
            status("BACKUP", "BACKUP"),
        );
        assert_eq!(
            first,
            [
                "   0.800s gw1 carpd answering",
                "   0.800s gw1 carp0 - -> BACKUP",
                "   0.800s gw1 carp1 - -> BACKUP",
            ]
        );
        let lines = view.observe(T, "gw1", status("MASTER", "BACKUP"));
        assert_eq!(lines, ["  12.345s gw1 carp0 BACKUP -> MASTER"]);
        assert!(
            view.observe(T, "gw1", status("MASTER", "BACKUP"))
                .is_empty()
        );
    }

    #[test]
    fn a_carpd_still_starting_is_told_apart_from_a_silent_one() {
        let mut view = View::default();
        let lines = view.observe(T, "gw2", Poll::NoAnswer("no socket".into()));
        assert_eq!(lines, ["  12.345s gw2 no answer from carpd yet: no socket"]);
    }

    #[test]
    fn a_silent_or_dead_carpd_is_reported_once() {
        let mut view = View::default();
        view.observe(T, "gw1", status("MASTER", "MASTER"));
        let lines = view.observe(T, "gw1", Poll::NoAnswer("connection refused\nmore".into()));
        assert_eq!(
            lines,
            ["  12.345s gw1 carpd not answering: connection refused"]
        );
        assert!(
            view.observe(T, "gw1", Poll::NoAnswer("again".into()))
                .is_empty()
        );
        let lines = view.observe(T, "gw1", Poll::Exited("signal: 9 (SIGKILL)".into()));
        assert_eq!(lines, ["  12.345s gw1 carpd exited (signal: 9 (SIGKILL))"]);
        // When it answers again, its states show up as fresh transitions.
        let lines = view.observe(T, "gw1", status("INIT", "INIT"));
        assert!(
            lines.contains(&"  12.345s gw1 carp0 - -> INIT".to_owned()),
            "{lines:?}"
        );
    }

    #[test]
    fn table_names_the_master_of_each_vhid() {
        let mut view = View::default();
        view.observe(T, "gw1", status("MASTER", "BACKUP"));
        view.observe(T, "gw2", status("BACKUP", "MASTER"));
        assert!(view.converged());
        let table = view.table();
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(
            rows[0].split_whitespace().collect::<Vec<_>>(),
            ["vhid", "iface", "gw1", "gw2", "master"]
        );
        assert_eq!(
            rows[1].split_whitespace().collect::<Vec<_>>(),
            ["1", "carp0", "MASTER", "BACKUP", "gw1"]
        );
        assert_eq!(
            rows[2].split_whitespace().collect::<Vec<_>>(),
            ["2", "carp1", "BACKUP", "MASTER", "gw2"]
        );
    }

    #[test]
    fn two_masters_or_none_is_not_converged_and_shows() {
        let mut view = View::default();
        view.observe(T, "gw1", status("MASTER", "BACKUP"));
        view.observe(T, "gw2", status("MASTER", "BACKUP"));
        assert!(!view.converged());
        let table = view.table();
        assert!(table.contains("gw1+gw2 (more than one!)"), "{table}");
        assert!(
            table
                .lines()
                .nth(2)
                .is_some_and(|row| row.ends_with(" none")),
            "{table}"
        );
    }

    #[test]
    fn a_dead_gateway_shows_as_exited_and_does_not_count() {
        let mut view = View::default();
        view.observe(T, "gw1", status("MASTER", "MASTER"));
        view.observe(T, "gw2", Poll::Exited("signal: 9".into()));
        assert!(view.converged());
        let table = view.table();
        assert!(
            table
                .lines()
                .nth(1)
                .is_some_and(|row| row.contains("exited")),
            "{table}"
        );
    }
}
