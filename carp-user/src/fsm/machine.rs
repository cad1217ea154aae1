//! One vhid's state machine.

use std::fmt;

use super::Interval;
use crate::clock::Mono;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Init,
    Backup,
    Master,
}

impl State {
    /// The `carp_state` metric encoding.
    pub const fn as_metric(self) -> i64 {
        match self {
            State::Init => 0,
            State::Backup => 1,
            State::Master => 2,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
        })
    }
}

/// The local settings the election uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub interval: Interval,
    pub preempt: bool,
}

/// What a received, authenticated advertisement says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAdvert {
    pub interval: Interval,
    pub demote: u8,
    pub counter: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub reason: &'static str,
}

/// An advertisement the caller must send now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdvertToSend {
    pub interval: Interval,
    pub demote: u8,
}

/// What the caller must do, in this order: transition, advertise, announce
/// (gratuitous ARP / unsolicited NA).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub transition: Option<Transition>,
    pub send_advert: Option<AdvertToSend>,
    pub announce: bool,
}

/// Why an advertisement changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// It carries our own counter cookie: our advertisement came back.
    Loop,
    /// We are in INIT and not taking part.
    NotRunning,
}

/// Adverts after a takeover until the second announcement, as OpenBSD's
/// `sc_delayed_arp = 2` ("some L3 switches" miss the first one).
const DELAYED_ANNOUNCE_ADVERTS: u8 = 2;

#[derive(Clone, Debug)]
pub struct Machine {
    config: Config,
    cookie: u64,
    state: State,
    /// MASTER: when the next advertisement is due.
    advert_at: Option<Mono>,
    /// BACKUP: when the master is declared down.
    master_down_at: Option<Mono>,
    /// MASTER: adverts still to send before the delayed announcement.
    delayed_announce: Option<u8>,
}

impl Machine {
    /// A machine in INIT. `cookie` is our fixed 64-bit counter (OpenBSD's
    /// replay cookie): sent in every advertisement, and a received one equal
    /// to it means a loop.
    pub fn new(config: Config, cookie: u64) -> Self {
        Self {
            config,
            cookie,
            state: State::Init,
            advert_at: None,
            master_down_at: None,
            delayed_announce: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> Config {
        self.config
    }

    pub fn cookie(&self) -> u64 {
        self.cookie
    }

    pub fn next_deadline(&self) -> Option<Mono> {
        match self.state {
            State::Init => None,
            State::Backup => self.master_down_at,
            State::Master => self.advert_at,
        }
    }

    fn transition(&mut self, to: State, reason: &'static str) -> Option<Transition> {
        let from = self.state;
        self.state = to;
        (from != to).then_some(Transition { from, to, reason })
    }

    fn become_backup(&mut self, now: Mono, reason: &'static str) -> Output {
        let transition = self.transition(State::Backup, reason);
        self.advert_at = None;
        self.delayed_announce = None;
        self.master_down_at = Some(now + self.config.interval.master_down());
        Output {
            transition,
            ..Output::default()
        }
    }

    fn become_master(&mut self, now: Mono, demote: u8, reason: &'static str) -> Output {
        let transition = self.transition(State::Master, reason);
        self.master_down_at = None;
        self.advert_at = Some(now + self.config.interval.duration());
        self.delayed_announce = Some(DELAYED_ANNOUNCE_ADVERTS);
        Output {
            transition,
            send_advert: Some(self.advert(demote)),
            announce: true,
        }
    }

    fn advert(&self, demote: u8) -> AdvertToSend {
        AdvertToSend {
            interval: self.config.interval,
            demote,
        }
    }

    /// INIT -> BACKUP, waiting for a master.
    pub fn start(&mut self, now: Mono) -> Output {
        if self.state == State::Init {
            self.become_backup(now, "start")
        } else {
            Output::default()
        }
    }

    /// INIT -> the role a predecessor held, without a transition: a
    /// restarted carpd adopting the pinned dataplane (hitless restart). A
    /// MASTER advertises at once, since its peer heard nothing while the
    /// agent restarted; a BACKUP waits a whole master-down from now.
    pub fn resume(&mut self, now: Mono, master: bool, our_demote: u8) -> Output {
        if self.state != State::Init {
            return Output::default();
        }
        self.delayed_announce = None;
        if master {
            self.state = State::Master;
            self.master_down_at = None;
            self.advert_at = Some(now + self.config.interval.duration());
            Output {
                send_advert: Some(self.advert(our_demote)),
                ..Output::default()
            }
        } else {
            self.state = State::Backup;
            self.advert_at = None;
            self.master_down_at = Some(now + self.config.interval.master_down());
            Output::default()
        }
    }

    /// Applies OpenBSD's election rules to an authenticated advertisement.
    pub fn advert_received(
        &mut self,
        now: Mono,
        peer: &PeerAdvert,
        our_demote: u8,
    ) -> Result<Output, Ignored> {
        if peer.counter == self.cookie {
            return Err(Ignored::Loop);
        }
        let ours = self.config.interval;
        let theirs = peer.interval;
        match self.state {
            State::Init => Err(Ignored::NotRunning),
            State::Master => {
                if peer.demote < our_demote {
                    Ok(self.become_backup(now, "less demoted master"))
                } else if ours >= theirs && peer.demote <= our_demote {
                    Ok(self.become_backup(now, "more frequent advertisement received"))
                } else {
                    Ok(Output::default())
                }
            }
            State::Backup => {
                if self.config.preempt && ours < theirs && peer.demote >= our_demote {
                    Ok(self.become_master(now, our_demote, "preempting a slower master"))
                } else if peer.demote > our_demote {
                    Ok(self.become_master(now, our_demote, "master is demoted"))
                } else if theirs.times_out_against(ours) {
                    Ok(self.become_master(now, our_demote, "master will time out"))
                } else {
                    self.master_down_at = Some(now + ours.master_down());
                    Ok(Output::default())
                }
            }
        }
    }

    /// Fires the due timer, if any: a MASTER's advertisement or a BACKUP's
    /// master-down. One step per call; call again while
    /// `next_deadline() <= now`.
    pub fn poll_timers(&mut self, now: Mono, our_demote: u8) -> Output {
        if self.next_deadline().is_none_or(|deadline| deadline > now) {
            return Output::default();
        }
        match self.state {
            State::Init => Output::default(),
            State::Backup => self.become_master(now, our_demote, "master-down timer expired"),
            State::Master => {
                // The next advert is due one interval after this one was
                // due, not after we got round to it: timers fire late (tokio
                // rounds up to whole milliseconds), and at advbase 0 that
                // drift stretched 3.9 ms intervals to 5.1 ms (the failover
                // benchmark). Later than a whole interval, start over from
                // now rather than send a burst.
                let interval = self.config.interval.duration();
                let next = self.advert_at.map_or(now, |due| due + interval);
                self.advert_at = Some(if next > now { next } else { now + interval });
                let announce = match self.delayed_announce {
                    Some(1) => {
                        self.delayed_announce = None;
                        true
                    }
                    Some(n) => {
                        self.delayed_announce = Some(n - 1);
                        false
                    }
                    None => false,
                };
                Output {
                    transition: None,
                    send_advert: Some(self.advert(our_demote)),
                    announce,
                }
            }
        }
    }

    /// A group counter changed: a MASTER advertises the new demote at once.
    pub fn demote_changed(&mut self, now: Mono, our_demote: u8) -> Output {
        if self.state != State::Master {
            return Output::default();
        }
        self.advert_at = Some(now + self.config.interval.duration());
        Output {
            send_advert: Some(self.advert(our_demote)),
            ..Output::default()
        }
    }

    /// New local settings at run time (e.g. advskew); running timers restart
    /// with the new interval, as OpenBSD's ioctl does through `carp_setrun`.
    pub fn set_config(&mut self, now: Mono, config: Config) -> Output {
        self.config = config;
        match self.state {
            State::Init => {}
            State::Backup => self.master_down_at = Some(now + config.interval.master_down()),
            State::Master => self.advert_at = Some(now + config.interval.duration()),
        }
        Output::default()
    }

    /// An administrator sets the state (`carpctl set ... state`). A MASTER
    /// forced to BACKUP bows out, as on shutdown: silent, it would leave the
    /// VIPs without an owner until a master-down timer ran out, and its own
    /// (restarted now, and shorter when it has the better interval) would
    /// run out first, so the peer would never take over at all. OpenBSD's
    /// ioctl sends nothing here; this removes that window.
    pub fn force(&mut self, now: Mono, to: State, our_demote: u8) -> Output {
        match (self.state, to) {
            (State::Master, State::Master) | (State::Init, State::Init) => Output::default(),
            (_, State::Master) => self.become_master(now, our_demote, "admin"),
            (State::Master, State::Backup) => Output {
                send_advert: Some(AdvertToSend {
                    interval: Interval::BOW_OUT,
                    demote: our_demote,
                }),
                ..self.become_backup(now, "admin")
            },
            (_, State::Backup) => self.become_backup(now, "admin"),
            (_, State::Init) => self.stop_with("admin"),
        }
    }

    /// Leaving on purpose: a MASTER sends one last advertisement with
    /// advbase 255 / advskew 255 so its backup takes over at once.
    pub fn bow_out(&mut self, our_demote: u8) -> Output {
        let send_advert = (self.state == State::Master).then_some(AdvertToSend {
            interval: Interval::BOW_OUT,
            demote: our_demote,
        });
        Output {
            send_advert,
            ..self.stop_with("bow-out")
        }
    }

    /// To INIT without a word (the carpdev went away).
    pub fn stop(&mut self) -> Output {
        self.stop_with("stopped")
    }

    fn stop_with(&mut self, reason: &'static str) -> Output {
        let transition = self.transition(State::Init, reason);
        self.advert_at = None;
        self.master_down_at = None;
        self.delayed_announce = None;
        Output {
            transition,
            ..Output::default()
        }
    }
}
