//! INIT, loops, the administrator (force), leaving (bow-out, stop) and new
//! settings at run time.

use super::{
    AdvertToSend, COOKIE, Duration, Interval, Machine, Output, PeerAdvert, State, T0, advert_only,
    backup, change, config, iv, just_before, master, ns, peer, ref_interval, ref_master_down,
    snapshot, takeover,
};
use crate::fsm::Ignored;

const FAR_FUTURE: Duration = Duration::from_secs(1_000_000);

/// A machine in `state` with interval 1/0 and no preempt.
fn in_state(state: State, demote: u8) -> Machine {
    let cfg = config(iv(1, 0), false);
    match state {
        State::Init => Machine::new(cfg, COOKIE),
        State::Backup => backup(cfg),
        State::Master => master(cfg, demote).0,
    }
}

#[test]
fn a_new_machine_waits_in_init() {
    let cfg = config(iv(2, 30), true);
    let mut machine = Machine::new(cfg, COOKIE);
    assert_eq!(machine.state(), State::Init);
    assert_eq!(machine.config(), cfg);
    assert_eq!(machine.cookie(), COOKIE);
    assert_eq!(machine.next_deadline(), None);
    assert_eq!(machine.poll_timers(FAR_FUTURE, 0), Output::default());
    assert_eq!(machine.state(), State::Init);
}

#[test]
fn state_names_and_metric() {
    let rows = [
        (State::Init, "INIT", 0),
        (State::Backup, "BACKUP", 1),
        (State::Master, "MASTER", 2),
    ];
    for (state, name, metric) in rows {
        assert_eq!(state.to_string(), name);
        assert_eq!(state.as_metric(), metric);
    }
}

#[test]
fn init_ignores_adverts() {
    let adverts = [
        peer(iv(1, 0), 0),
        peer(Interval::BOW_OUT, 0),
        peer(iv(9, 0), 255),
        peer(iv(0, 0), 0),
    ];
    for preempt in [false, true] {
        let mut fresh = Machine::new(config(iv(1, 0), preempt), COOKIE);
        let mut stopped = backup(config(iv(1, 0), preempt));
        stopped.stop();
        for machine in [&mut fresh, &mut stopped] {
            let before = snapshot(machine);
            for advert in &adverts {
                let result = machine.advert_received(T0, advert, 0);
                assert_eq!(result, Err(Ignored::NotRunning), "{advert:?}");
            }
            assert_eq!(snapshot(machine), before);
            assert_eq!(machine.poll_timers(FAR_FUTURE, 0), Output::default());
            assert_eq!(machine.state(), State::Init);
        }
    }
}

#[test]
fn our_own_advert_coming_back_is_a_loop() {
    // Each advert would change the state if it came from a peer.
    let rows = [
        (State::Backup, peer(iv(1, 100), 2)),
        (State::Backup, peer(Interval::BOW_OUT, 0)),
        (State::Master, peer(iv(0, 100), 0)),
        (State::Master, peer(iv(9, 0), 0)),
    ];
    for (state, from_peer) in rows {
        // Against our demote 1, the peers are more (BACKUP) or less (MASTER)
        // demoted, or bowing out, or advertising faster.
        let mut machine = in_state(state, 1);
        let now = machine
            .next_deadline()
            .map_or(T0, |due| due.saturating_sub(Duration::from_millis(1)));
        let echo = PeerAdvert {
            counter: COOKIE,
            ..from_peer
        };
        let before = snapshot(&machine);
        assert_eq!(
            machine.advert_received(now, &echo, 1),
            Err(Ignored::Loop),
            "{state}"
        );
        assert_eq!(snapshot(&machine), before, "{state}");
        // The same advert from a peer is acted on, so the loop check is what held.
        let acted = machine.advert_received(now, &from_peer, 1);
        assert!(
            matches!(
                acted,
                Ok(Output {
                    transition: Some(_),
                    ..
                })
            ),
            "{state}: {acted:?}"
        );
    }
}

#[test]
fn force_sets_any_state() {
    let ours = iv(1, 0);
    let now = T0 + Duration::from_secs(100);
    let states = [State::Init, State::Backup, State::Master];
    for from in states {
        for to in states {
            let mut machine = in_state(from, 5);
            let deadline_before = machine.next_deadline();
            let output = machine.force(now, to, 5);
            let (expected, deadline) = match (from, to) {
                (State::Master, State::Master) => (Output::default(), deadline_before),
                (State::Init, State::Init) => (Output::default(), None),
                (_, State::Init) => (change(from, to, "admin"), None),
                // Forcing BACKUP again still restarts master-down, as a new start.
                (State::Backup, State::Backup) => {
                    (Output::default(), Some(now + ref_master_down(ours)))
                }
                // A MASTER steps down with the bow-out, so the peer takes over at once.
                (State::Master, State::Backup) => (
                    Output {
                        send_advert: Some(AdvertToSend {
                            interval: Interval::BOW_OUT,
                            demote: 5,
                        }),
                        ..change(from, to, "admin")
                    },
                    Some(now + ref_master_down(ours)),
                ),
                (_, State::Backup) => {
                    (change(from, to, "admin"), Some(now + ref_master_down(ours)))
                }
                (_, State::Master) => (
                    takeover(from, "admin", ours, 5),
                    Some(now + ref_interval(ours)),
                ),
            };
            assert_eq!(output, expected, "{from} -> {to}");
            assert_eq!(machine.state(), to, "{from} -> {to}");
            assert_eq!(machine.next_deadline(), deadline, "{from} -> {to}");
        }
    }
}

#[test]
fn a_forced_master_also_announces_again_two_adverts_later() {
    let ours = iv(1, 0);
    let mut machine = backup(config(ours, false));
    let second = Duration::from_secs(1);
    assert_eq!(
        machine.force(T0, State::Master, 0),
        takeover(State::Backup, "admin", ours, 0)
    );
    assert_eq!(
        machine.poll_timers(T0 + second, 0),
        advert_only(ours, 0, false)
    );
    assert_eq!(
        machine.poll_timers(T0 + second * 2, 0),
        advert_only(ours, 0, true)
    );
}

#[test]
fn bow_out_sends_255_255_only_as_master() {
    assert_eq!(Interval::BOW_OUT, iv(255, 255));
    let bowing = AdvertToSend {
        interval: iv(255, 255),
        demote: 6,
    };
    let rows = [
        (State::Master, Some(bowing), Some(State::Master)),
        (State::Backup, None, Some(State::Backup)),
        (State::Init, None, None),
    ];
    for (from, send_advert, transition_from) in rows {
        let mut machine = in_state(from, 6);
        let expected = Output {
            transition: transition_from
                .and_then(|from| change(from, State::Init, "bow-out").transition),
            send_advert,
            announce: false,
        };
        assert_eq!(machine.bow_out(6), expected, "{from}");
        assert_eq!(machine.state(), State::Init, "{from}");
        assert_eq!(machine.next_deadline(), None, "{from}");
        // Gone quiet: no more adverts, and none heeded.
        assert_eq!(
            machine.poll_timers(FAR_FUTURE, 6),
            Output::default(),
            "{from}"
        );
        let result = machine.advert_received(FAR_FUTURE, &peer(iv(1, 0), 0), 6);
        assert_eq!(result, Err(Ignored::NotRunning), "{from}");
    }
}

#[test]
fn stop_goes_to_init_without_a_word_and_start_begins_again() {
    for from in [State::Master, State::Backup] {
        let mut machine = in_state(from, 0);
        assert_eq!(machine.stop(), change(from, State::Init, "stopped"));
        assert_eq!(machine.next_deadline(), None);
        let later = T0 + Duration::from_secs(50);
        assert_eq!(
            machine.start(later),
            change(State::Init, State::Backup, "start")
        );
        assert_eq!(
            machine.next_deadline(),
            Some(later + Duration::from_secs(3))
        );
    }
    assert_eq!(in_state(State::Init, 0).stop(), Output::default());
}

#[test]
fn set_config_restarts_running_timers_with_the_new_interval() {
    let slower = config(iv(2, 0), false);
    let now = T0 + Duration::from_millis(500);

    let mut idle = in_state(State::Init, 0);
    assert_eq!(idle.set_config(now, slower), Output::default());
    assert_eq!((idle.config(), idle.next_deadline()), (slower, None));
    idle.start(now);
    assert_eq!(idle.next_deadline(), Some(now + Duration::from_secs(6)));

    let mut waiting = in_state(State::Backup, 0);
    assert_eq!(waiting.set_config(now, slower), Output::default());
    assert_eq!(waiting.config(), slower);
    assert_eq!(waiting.next_deadline(), Some(now + Duration::from_secs(6)));

    let (mut leading, since) = master(config(iv(1, 0), false), 0);
    let now = since + Duration::from_millis(500);
    let faster = config(iv(0, 128), false);
    assert_eq!(leading.set_config(now, faster), Output::default());
    let due = now + Duration::from_millis(500);
    assert_eq!(leading.next_deadline(), Some(due));
    assert_eq!(leading.poll_timers(just_before(due), 0), Output::default());
    // Adverts now carry the new interval.
    assert_eq!(
        leading.poll_timers(due, 0),
        advert_only(iv(0, 128), 0, false)
    );
}

#[test]
fn set_config_preempt_applies_to_the_next_advert() {
    let mut machine = backup(config(iv(1, 0), false));
    let slower = peer(iv(1, 100), 0);
    assert_eq!(
        machine.advert_received(T0, &slower, 0),
        Ok(Output::default())
    );
    machine.set_config(T0, config(iv(1, 0), true));
    let expected = takeover(State::Backup, "preempting a slower master", iv(1, 0), 0);
    assert_eq!(
        machine.advert_received(T0 + ns(1), &slower, 0),
        Ok(expected)
    );
}

#[test]
fn resume_takes_the_predecessors_role_without_a_transition() {
    let cfg = config(iv(1, 100), false);
    let mut resumed_master = Machine::new(cfg, COOKIE);
    let output = resumed_master.resume(T0, true, 7);
    assert_eq!(
        output.transition, None,
        "a hitless restart is no transition"
    );
    assert!(
        !output.announce,
        "the VIPs never moved: nothing to announce"
    );
    assert_eq!(
        output.send_advert,
        Some(AdvertToSend {
            interval: iv(1, 100),
            demote: 7
        }),
        "the peer heard nothing during the restart: advertise at once"
    );
    assert_eq!(resumed_master.state(), State::Master);
    assert_eq!(
        resumed_master.next_deadline(),
        Some(T0 + ref_interval(iv(1, 100)))
    );

    let mut resumed_backup = Machine::new(cfg, COOKIE);
    assert_eq!(resumed_backup.resume(T0, false, 0), Output::default());
    assert_eq!(resumed_backup.state(), State::Backup);
    assert_eq!(
        resumed_backup.next_deadline(),
        Some(T0 + ref_master_down(iv(1, 100)))
    );
}

#[test]
fn resume_only_leaves_init() {
    for state in [State::Backup, State::Master] {
        for master in [false, true] {
            let mut machine = in_state(state, 0);
            let before = snapshot(&machine);
            assert_eq!(machine.resume(T0, master, 0), Output::default());
            assert_eq!(
                snapshot(&machine),
                before,
                "{state} resumed as master={master}"
            );
        }
    }
}
