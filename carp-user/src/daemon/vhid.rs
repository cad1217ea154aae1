//! One configured vhid at run time: its election, its authenticator, its
//! sockets and counters. The agent owns every `Vhid`; nothing here awaits.

use std::net::{IpAddr, Ipv4Addr};

use tracing::{debug, info, warn};

use crate::api::{Counters, InterfaceStatus};
use crate::config::CarpConfig;
use crate::fsm::{self, AdvertToSend, Machine};
use crate::net::advert_socket::{AdvertSocketV4, AdvertSocketV6};
use crate::net::frames;
use crate::net::packet_socket::PacketSocket;
use crate::wire::{Advertisement, Authenticator};

/// Agent-side drop reasons (the XDP side has its own, see `carp_common::Verdict`).
pub const DROP_BADAUTH: &str = "badauth";
pub const DROP_LOOP: &str = "loop";

pub struct Vhid {
    pub config: CarpConfig,
    pub carpdev_index: u32,
    pub carp_index: u32,
    pub machine: Machine,
    pub auth: Authenticator,
    pub v4: Option<(AdvertSocketV4, Ipv4Addr)>,
    pub v6: Option<AdvertSocketV6>,
    pub announcer: PacketSocket,
    pub counters: Counters,
    /// Whether we forward IPv6 (sets the router flag on our NAs).
    pub ipv6_router: bool,
    /// `carpctl down`: stays in INIT until `carpctl up`.
    pub admin_down: bool,
    /// The carpdev has a carrier; without one the vhid stays in INIT.
    pub carpdev_carrier: bool,
    pub send_health: SendHealth,
    /// Adopted from a predecessor's pinned dataplane: whether it was MASTER.
    pub resume_master: Option<bool>,
    /// The MAC our announcements give for the VIPs: the virtual MAC, or a
    /// balanced interface's shared MAC.
    pub announced_mac: [u8; 6],
    /// The Ethernet source of announcements: the virtual MAC, or for a
    /// balanced interface the carpdev's own.
    pub announced_from: [u8; 6],
}

/// Consecutive failed sends that demote the interface's groups by one, and
/// consecutive good ones that undo it: OpenBSD's `CARP_SENDAD_MAX_ERRORS`
/// and `CARP_SENDAD_MIN_SUCCESS`, 3 x the vhids of the interface (one here).
const SEND_STREAK: u32 = 3;

/// FreeBSD clamps its advskew plus demotion to this (`CARP_MAXSKEW`).
const FREEBSD_MAX_SKEW: u8 = 240;

/// OpenBSD's send-error demotion for one carp interface. Pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendHealth {
    errors: u32,
    successes: u32,
    demoted: bool,
}

impl SendHealth {
    /// Records one send; returns the new demotion when it changes.
    pub fn record(&mut self, sent: bool) -> Option<bool> {
        if sent {
            self.errors = 0;
            self.successes = self.successes.saturating_add(1);
            if self.demoted && self.successes >= SEND_STREAK {
                self.demoted = false;
                return Some(false);
            }
        } else {
            self.successes = 0;
            self.errors = self.errors.saturating_add(1);
            if !self.demoted && self.errors >= SEND_STREAK {
                self.demoted = true;
                return Some(true);
            }
        }
        None
    }
}

/// The advskew we put on the wire: FreeBSD peers ignore the demote byte, so
/// in compat mode the demotion also goes into advskew, clamped like FreeBSD
/// does (but never below the configured advskew).
pub fn wire_advskew(advskew: u8, demote: u8, freebsd_compat: bool) -> u8 {
    if !freebsd_compat || demote == 0 {
        return advskew;
    }
    advskew
        .saturating_add(demote)
        .min(FREEBSD_MAX_SKEW)
        .max(advskew)
}

/// Logs at warn only when a counter reaches a power of two, so a flood of bad
/// packets costs a handful of log lines, not one per packet.
pub fn worth_logging(count: u64) -> bool {
    count.is_power_of_two()
}

impl Vhid {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn count_drop(&mut self, reason: &'static str) -> u64 {
        let count = self.counters.drops.entry(reason.to_owned()).or_insert(0);
        *count += 1;
        *count
    }

    pub fn note_badauth(&mut self, source: IpAddr) {
        let count = self.count_drop(DROP_BADAUTH);
        if worth_logging(count) {
            warn!(
                "{}: incorrect hash from {source} (wrong pass or addresses?), {count} so far",
                self.config.name
            );
        }
    }

    pub fn note_loop(&mut self, source: IpAddr) {
        let count = self.count_drop(DROP_LOOP);
        if worth_logging(count) {
            warn!(
                "{}: our own advertisement came back from {source}: replay or network loop, {count} so far",
                self.config.name
            );
        }
    }

    pub fn log_transition(&mut self, transition: &fsm::Transition) {
        self.counters.transitions += 1;
        info!(
            "{}: state transition: {} -> {} ({})",
            self.config.name, transition.from, transition.to, transition.reason
        );
    }

    /// Sends one advertisement on every address family the vhid has;
    /// returns whether it went out.
    pub fn send_advert(&mut self, advert: AdvertToSend) -> bool {
        let counter = self.machine.cookie();
        // The bow-out (255/255) goes out as it is.
        let advskew = if advert.interval == crate::fsm::Interval::BOW_OUT {
            advert.interval.advskew
        } else {
            wire_advskew(
                advert.interval.advskew,
                advert.demote,
                self.config.freebsd_compat,
            )
        };
        let header = Advertisement {
            vhid: self.config.vhid,
            advskew,
            demote: advert.demote,
            advbase: advert.interval.advbase,
            counter,
            digest: self.auth.sign(counter),
        }
        .encode();
        let mut failed = false;
        if let Some((socket, source)) = &self.v4
            && let Err(error) = socket.send(*source, &header)
        {
            debug!(
                "{}: advertisement not sent (IPv4): {error}",
                self.config.name
            );
            failed = true;
        }
        if let Some(socket) = &self.v6
            && let Err(error) = socket.send(&header)
        {
            debug!(
                "{}: advertisement not sent (IPv6): {error}",
                self.config.name
            );
            failed = true;
        }
        if failed {
            self.counters.send_errors += 1;
            if worth_logging(self.counters.send_errors) {
                warn!(
                    "{}: cannot send advertisements, {} errors so far",
                    self.config.name, self.counters.send_errors
                );
            }
        } else {
            self.counters.adverts_sent += 1;
        }
        !failed
    }

    /// Gratuitous ARP for every IPv4 VIP, unsolicited NA for every IPv6 VIP.
    pub fn announce(&mut self) {
        let mac = self.announced_mac;
        for net in &self.config.addresses {
            let sent = match net.addr() {
                IpAddr::V4(vip) => {
                    self.announcer
                        .send(&frames::gratuitous_arp(self.announced_from, mac, vip))
                }
                IpAddr::V6(vip) => {
                    self.announcer
                        .send(&frames::unsolicited_na(mac, vip, self.ipv6_router))
                }
            };
            if let Err(error) = sent {
                warn!(
                    "{}: cannot announce {}: {error}",
                    self.config.name,
                    net.addr()
                );
            }
        }
    }

    pub fn status(&self, demote: u8) -> InterfaceStatus {
        let config = self.machine.config();
        InterfaceStatus {
            name: self.config.name.clone(),
            vhid: self.config.vhid,
            carpdev: self.config.carpdev.clone(),
            state: self.machine.state().to_string(),
            advbase: config.interval.advbase,
            advskew: config.interval.advskew,
            demote,
            addresses: self
                .config
                .addresses
                .iter()
                .map(ToString::to_string)
                .collect(),
            groups: self.config.groups.clone(),
            admin_down: self.admin_down,
            counters: self.counters.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{SendHealth, wire_advskew, worth_logging};

    #[test]
    fn three_failed_sends_demote_and_three_good_ones_undo_it() {
        let mut health = SendHealth::default();
        assert_eq!(health.record(false), None);
        assert_eq!(health.record(false), None);
        assert_eq!(health.record(true), None, "a success resets the streak");
        assert_eq!(health.record(false), None);
        assert_eq!(health.record(false), None);
        assert_eq!(health.record(false), Some(true));
        assert_eq!(health.record(false), None, "demoted once");
        assert_eq!(health.record(true), None);
        assert_eq!(health.record(true), None);
        assert_eq!(health.record(true), Some(false));
        assert_eq!(health.record(true), None);
    }

    #[test]
    fn freebsd_compat_folds_demote_into_advskew() {
        assert_eq!(wire_advskew(100, 20, false), 100);
        assert_eq!(wire_advskew(100, 0, true), 100);
        assert_eq!(wire_advskew(100, 20, true), 120);
        assert_eq!(wire_advskew(100, 200, true), 240);
        assert_eq!(
            wire_advskew(250, 1, true),
            250,
            "never below the configured advskew"
        );
    }

    #[test]
    fn log_lines_thin_out_as_a_flood_grows() {
        let logged = (1..=1_000_000u64).filter(|n| worth_logging(*n)).count();
        assert_eq!(logged, 20);
    }
}
