//! Timers: master-down, a MASTER's advertisements, the delayed second
//! announcement, and advertising a demote change. Time is injected; nothing
//! sleeps.

use super::{
    COOKIE, Duration, Machine, Output, State, T0, advert_only, backup, change, config, iv,
    just_before, master, ns, peer, ref_interval, ref_master_down, snapshot, takeover,
};

/// 0/0 (1/256 s), sub-second only, half a second, whole, mixed and the largest.
const INTERVALS: [(u8, u8); 7] = [
    (0, 0),
    (0, 1),
    (0, 128),
    (1, 0),
    (1, 100),
    (3, 254),
    (255, 254),
];

#[test]
fn durations_are_exact() {
    #[rustfmt::skip]
    let rows = [
        // advbase, advskew, interval (ns), master-down (ns)
        (0, 0, 3_906_250, 11_718_750),
        (0, 1, 3_906_250, 11_718_750),
        (0, 128, 500_000_000, 1_500_000_000),
        (1, 0, 1_000_000_000, 3_000_000_000),
        (1, 100, 1_390_625_000, 4_171_875_000),
        (255, 254, 255_992_187_500, 767_976_562_500),
    ];
    for (advbase, advskew, interval, master_down) in rows {
        let i = iv(advbase, advskew);
        assert_eq!(i.duration(), ns(interval), "{i:?}");
        assert_eq!(i.master_down(), ns(master_down), "{i:?}");
        // The reference the other tests use says the same.
        assert_eq!(ref_interval(i), ns(interval), "{i:?}");
        assert_eq!(ref_master_down(i), ns(master_down), "{i:?}");
    }
}

#[test]
fn start_waits_three_local_intervals() {
    for (advbase, advskew) in INTERVALS {
        let ours = iv(advbase, advskew);
        let mut machine = Machine::new(config(ours, false), COOKIE);
        assert_eq!(machine.state(), State::Init);
        assert_eq!(machine.next_deadline(), None);
        assert_eq!(
            machine.start(T0),
            change(State::Init, State::Backup, "start")
        );
        let due = T0 + ref_master_down(ours);
        assert_eq!(machine.next_deadline(), Some(due), "{ours:?}");
        // Starting again changes nothing; the timer keeps the first start.
        assert_eq!(machine.start(T0 + ns(1)), Output::default());
        assert_eq!(machine.next_deadline(), Some(due), "{ours:?}");
    }
}

#[test]
fn master_down_fires_when_due() {
    for (advbase, advskew) in INTERVALS {
        let ours = iv(advbase, advskew);
        let mut machine = backup(config(ours, false));
        let due = T0 + ref_master_down(ours);
        assert_eq!(
            machine.poll_timers(just_before(due), 4),
            Output::default(),
            "{ours:?}"
        );
        assert_eq!(machine.state(), State::Backup);
        let expected = takeover(State::Backup, "master-down timer expired", ours, 4);
        assert_eq!(machine.poll_timers(due, 4), expected, "{ours:?}");
        assert_eq!(
            machine.next_deadline(),
            Some(due + ref_interval(ours)),
            "{ours:?}"
        );
    }
}

#[test]
fn a_late_poll_schedules_from_now() {
    let ours = iv(1, 0);
    let mut machine = backup(config(ours, false));
    let late = T0 + Duration::from_secs(10);
    assert_eq!(
        machine.poll_timers(late, 0),
        takeover(State::Backup, "master-down timer expired", ours, 0)
    );
    assert_eq!(machine.next_deadline(), Some(late + Duration::from_secs(1)));
}

#[test]
fn a_late_master_keeps_its_cadence_unless_a_whole_interval_late() {
    let ours = iv(0, 1);
    let every = ref_interval(ours);
    let (mut machine, since) = master(config(ours, false), 0);
    let due = since + every;
    // Woken 1 ms late (a millisecond timer): the next one stays on the grid.
    let late = due + Duration::from_millis(1);
    assert_eq!(machine.poll_timers(late, 0), advert_only(ours, 0, false));
    assert_eq!(machine.next_deadline(), Some(due + every));
    // Woken more than an interval late: one advert, then from now.
    let very_late = due + every * 5;
    assert_eq!(
        machine.poll_timers(very_late, 0),
        advert_only(ours, 0, true)
    );
    assert_eq!(machine.next_deadline(), Some(very_late + every));
}

#[test]
fn each_accepted_advert_restarts_master_down() {
    let ours = iv(1, 0);
    let mut machine = backup(config(ours, false));
    // A slower master, not preempted, not sure to time out: accepted.
    let advert = peer(iv(2, 0), 0);
    let mut now = T0;
    for _ in 0..20 {
        now += Duration::from_millis(2_900);
        assert_eq!(machine.poll_timers(now, 0), Output::default());
        assert_eq!(
            machine.advert_received(now, &advert, 0),
            Ok(Output::default())
        );
        assert_eq!(machine.next_deadline(), Some(now + Duration::from_secs(3)));
    }
    // The master falls silent: three of our intervals after its last advert.
    let due = now + Duration::from_secs(3);
    assert_eq!(machine.poll_timers(just_before(due), 0), Output::default());
    let expected = takeover(State::Backup, "master-down timer expired", ours, 0);
    assert_eq!(machine.poll_timers(due, 0), expected);
}

#[test]
fn master_advertises_every_interval_and_announces_again_two_later() {
    for (advbase, advskew) in INTERVALS {
        let ours = iv(advbase, advskew);
        let (mut machine, since) = master(config(ours, false), 2);
        let every = ref_interval(ours);
        for k in 1..=8 {
            let due = since + every * k;
            assert_eq!(
                machine.poll_timers(just_before(due), 2),
                Output::default(),
                "{ours:?} {k}"
            );
            // The second advert after the takeover carries the delayed
            // announcement, as OpenBSD's sc_delayed_arp = 2; no other does.
            let expected = advert_only(ours, 2, k == 2);
            assert_eq!(machine.poll_timers(due, 2), expected, "{ours:?} advert {k}");
            assert_eq!(machine.next_deadline(), Some(due + every), "{ours:?} {k}");
            assert_eq!(machine.state(), State::Master);
        }
    }
}

#[test]
fn each_advert_carries_the_current_demote() {
    let ours = iv(1, 0);
    let (mut machine, since) = master(config(ours, false), 0);
    let second = Duration::from_secs(1);
    assert_eq!(
        machine.poll_timers(since + second, 7),
        advert_only(ours, 7, false)
    );
    assert_eq!(
        machine.poll_timers(since + second * 2, 0),
        advert_only(ours, 0, true)
    );
    assert_eq!(
        machine.poll_timers(since + second * 3, 255),
        advert_only(ours, 255, false)
    );
}

#[test]
fn every_takeover_restarts_the_delayed_announcement() {
    let ours = iv(1, 0);
    let second = Duration::from_secs(1);
    let (mut machine, since) = master(config(ours, false), 0);
    assert_eq!(
        machine.poll_timers(since + second, 0),
        advert_only(ours, 0, false)
    );
    // A faster master shows up before the delayed announcement is due...
    let now = since + second * 3 / 2;
    let stepped_down = change(
        State::Master,
        State::Backup,
        "more frequent advertisement received",
    );
    assert_eq!(
        machine.advert_received(now, &peer(iv(0, 100), 0), 0),
        Ok(stepped_down)
    );
    assert_eq!(
        machine.poll_timers(since + second * 2, 0),
        Output::default()
    );
    // ...and falls silent; the count starts over from the new takeover.
    let due = now + second * 3;
    let expected = takeover(State::Backup, "master-down timer expired", ours, 0);
    assert_eq!(machine.poll_timers(due, 0), expected);
    assert_eq!(
        machine.poll_timers(due + second, 0),
        advert_only(ours, 0, false)
    );
    assert_eq!(
        machine.poll_timers(due + second * 2, 0),
        advert_only(ours, 0, true)
    );
    assert_eq!(
        machine.poll_timers(due + second * 3, 0),
        advert_only(ours, 0, false)
    );
}

#[test]
fn a_demote_change_is_advertised_at_once_by_a_master() {
    let ours = iv(1, 100);
    let every = ref_interval(ours);
    let (mut machine, since) = master(config(ours, false), 0);
    let now = since + Duration::from_millis(500);
    assert_eq!(machine.demote_changed(now, 3), advert_only(ours, 3, false));
    // The next periodic advert is one interval after this one.
    assert_eq!(machine.next_deadline(), Some(now + every));
    assert_eq!(
        machine.poll_timers(just_before(now + every), 3),
        Output::default()
    );
    // The delayed announcement counts periodic adverts ("two intervals later").
    assert_eq!(
        machine.poll_timers(now + every, 3),
        advert_only(ours, 3, false)
    );
    assert_eq!(
        machine.poll_timers(now + every * 2, 3),
        advert_only(ours, 3, true)
    );
}

#[test]
fn a_demote_change_is_silent_unless_master() {
    let cfg = config(iv(1, 0), false);
    let mut waiting = backup(cfg);
    let before = snapshot(&waiting);
    assert_eq!(waiting.demote_changed(T0 + ns(5), 9), Output::default());
    assert_eq!(snapshot(&waiting), before);

    let mut idle = Machine::new(cfg, COOKIE);
    let before = snapshot(&idle);
    assert_eq!(idle.demote_changed(T0, 9), Output::default());
    assert_eq!(snapshot(&idle), before);
}
