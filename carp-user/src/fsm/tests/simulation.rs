//! Two machines on a lossless link, driven only by their own timers: the
//! election settles on the preferred node (least demoted, then shortest
//! interval), a bow-out hands over at once, and a returning node takes back
//! the role only as the rules allow.

use std::collections::VecDeque;

use proptest::prelude::*;

use super::{
    COOKIE, Config, Duration, Machine, Output, PEER_COUNTER, PeerAdvert, State, T0, config, iv,
    ticks,
};
use crate::clock::Mono;

struct Node {
    machine: Machine,
    demote: u8,
}

struct Link {
    nodes: [Node; 2],
    transitions: usize,
}

impl Link {
    fn new(configs: [Config; 2], demotes: [u8; 2]) -> Self {
        let node = |i: usize, cookie| Node {
            machine: Machine::new(configs[i], cookie),
            demote: demotes[i],
        };
        Self {
            nodes: [node(0, COOKIE), node(1, PEER_COUNTER)],
            transitions: 0,
        }
    }

    fn start(&mut self, i: usize, now: Mono) {
        let output = self.nodes[i].machine.start(now);
        self.carry_out(i, now, output);
    }

    fn bow_out(&mut self, i: usize, now: Mono) {
        let output = self.nodes[i].machine.bow_out(self.nodes[i].demote);
        self.carry_out(i, now, output);
    }

    /// Does what `output` of node `from` asks: its advert reaches the other
    /// node at once, whose answer is carried out in turn.
    fn carry_out(&mut self, from: usize, now: Mono, output: Output) {
        let mut pending = VecDeque::from([(from, output)]);
        let mut steps = 0;
        while let Some((from, output)) = pending.pop_front() {
            steps += 1;
            assert!(steps < 10, "adverts bounce back and forth");
            self.transitions += usize::from(output.transition.is_some());
            let Some(advert) = output.send_advert else {
                continue;
            };
            let received = PeerAdvert {
                interval: advert.interval,
                demote: advert.demote,
                counter: self.nodes[from].machine.cookie(),
            };
            let to = &mut self.nodes[1 - from];
            if let Ok(answer) = to.machine.advert_received(now, &received, to.demote) {
                pending.push_back((1 - from, answer));
            }
        }
    }

    /// Fires the timers in time order (node 0 first on a tie) up to `until`.
    fn run_until(&mut self, until: Mono) {
        loop {
            let due = (0..2)
                .filter_map(|i| self.nodes[i].machine.next_deadline().map(|at| (at, i)))
                .min();
            let Some((at, i)) = due.filter(|(at, _)| *at <= until) else {
                return;
            };
            let node = &mut self.nodes[i];
            let output = node.machine.poll_timers(at, node.demote);
            self.carry_out(i, at, output);
        }
    }

    fn states(&self) -> [State; 2] {
        [self.nodes[0].machine.state(), self.nodes[1].machine.state()]
    }

    /// Least demoted, then shortest interval, then node 0.
    fn preference(&self, i: usize) -> (u8, u32) {
        let node = &self.nodes[i];
        (node.demote, ticks(node.machine.config().interval))
    }
}

fn master_only(i: usize) -> [State; 2] {
    if i == 0 {
        [State::Master, State::Backup]
    } else {
        [State::Backup, State::Master]
    }
}

// Intervals of 1 to 2.996 s: each master advertises before the other node's
// master-down (3 s or more) expires, as in any sane pair.
fn any_config(preempt: bool) -> impl Strategy<Value = Config> {
    (1u8..=2, 0u8..=254).prop_map(move |(advbase, advskew)| config(iv(advbase, advskew), preempt))
}

fn any_pair() -> impl Strategy<Value = ([Config; 2], [u8; 2], bool)> {
    any::<bool>().prop_flat_map(|preempt| {
        let configs = [any_config(preempt), any_config(preempt)];
        // Small demotes, so that ties are common.
        (configs, [0u8..=3, 0u8..=3], Just(preempt))
    })
}

proptest! {
    #[test]
    fn the_preferred_node_becomes_the_only_master((configs, demotes, _) in any_pair()) {
        let mut link = Link::new(configs, demotes);
        link.start(0, T0);
        link.start(1, T0);
        link.run_until(T0 + Duration::from_mins(1));
        let preferred = usize::from(link.preference(1) < link.preference(0));
        prop_assert_eq!(link.states(), master_only(preferred));
        // Two starts, at most two takeovers and one step-down: no flapping.
        prop_assert!(link.transitions <= 5, "{} transitions", link.transitions);
    }

    #[test]
    fn bow_out_hands_over_at_once((configs, demotes, preempt) in any_pair()) {
        let mut link = Link::new(configs, demotes);
        link.start(0, T0);
        link.start(1, T0);
        let settled = T0 + Duration::from_mins(1);
        link.run_until(settled);
        let leaving = usize::from(link.states()[1] == State::Master);
        let other = 1 - leaving;

        link.bow_out(leaving, settled);
        // 255/255 is sure to time out against advbase 1 or 2: no master-down wait.
        let mut expected = [State::Init; 2];
        expected[other] = State::Master;
        prop_assert_eq!(link.states(), expected);
        link.run_until(settled + Duration::from_secs(30));
        prop_assert_eq!(link.states(), expected);

        // Back again: it takes over only if less demoted, or with preempt if
        // it is preferred outright; otherwise it stays BACKUP.
        let back = settled + Duration::from_secs(30);
        link.start(leaving, back);
        link.run_until(back + Duration::from_mins(1));
        let (mine, theirs) = (link.preference(leaving), link.preference(other));
        let retakes = mine.0 < theirs.0 || (preempt && mine < theirs);
        prop_assert_eq!(link.states(), master_only(if retakes { leaving } else { other }));
    }
}
