//! Control-socket requests: what `carpctl` can ask and change, like
//! OpenBSD's `ifconfig carpN ...` and `ifconfig -g GROUP carpdemote N`.

use tracing::info;

use super::Agent;
use crate::api::{Request, Response};
use crate::clock;
use crate::fsm::{self, State};

fn error(message: impl Into<String>) -> Response {
    Response::Error {
        message: message.into(),
    }
}

fn no_such_interface(interface: &str) -> Response {
    error(format!("no carp interface {interface}"))
}

fn done(message: impl Into<String>) -> Response {
    Response::Done {
        message: message.into(),
    }
}

impl Agent {
    pub(super) async fn handle_request(&mut self, request: Request) -> Response {
        match request {
            Request::Status => Response::Status(self.status()),
            Request::Groups => Response::Groups {
                groups: self.groups_status(),
            },
            Request::Demote { group, by } => self.demote_group(&group, by).await,
            Request::SetAdvskew { interface, advskew } => {
                self.set_advskew(&interface, advskew).await
            }
            Request::SetState { interface, state } => self.set_state(&interface, &state).await,
            Request::Down { interface } => self.admin_down(&interface).await,
            Request::Up { interface } => self.admin_up(&interface).await,
            Request::Detach => {
                info!("carpctl detach: exiting with the dataplane pinned for the next carpd");
                self.detach_requested = true;
                done(
                    "detaching: the dataplane stays pinned; start carpd within the master-down time to resume",
                )
            }
        }
    }

    /// The vhids of a carp interface: one, or a balanced interface's nodes.
    fn vhid_indices(&self, interface: &str) -> Vec<usize> {
        (0..self.vhids.len())
            .filter(|&index| self.vhids[index].name() == interface)
            .collect()
    }

    async fn demote_group(&mut self, group: &str, by: i64) -> Response {
        let before = self.groups.counters();
        match self.groups.adjust_admin(group, by, clock::now()) {
            Ok(admin) => {
                info!("group {group}: admin contribution now {admin} (carpctl)");
                self.after_demote_change(&before).await;
                done(format!(
                    "group {group}: demote {} (admin {admin})",
                    self.groups.demote(group)
                ))
            }
            Err(problem) => error(format!("group {group}: {problem}")),
        }
    }

    async fn set_advskew(&mut self, interface: &str, advskew: u8) -> Response {
        let index = match self.vhid_indices(interface)[..] {
            [] => return no_such_interface(interface),
            [index] => index,
            _ => {
                return error(format!(
                    "{interface} is balanced: each node has its own advskew (set them in the configuration)"
                ));
            }
        };
        if advskew > 254 {
            return error(format!(
                "{interface}: advskew {advskew} out of range 0..254"
            ));
        }
        let vhid = &mut self.vhids[index];
        let config = fsm::Config {
            interval: fsm::Interval {
                advbase: vhid.config.advbase,
                advskew,
            },
            preempt: vhid.machine.config().preempt,
        };
        vhid.config.advskew = advskew;
        let output = vhid.machine.set_config(clock::now(), config);
        info!("{interface}: advskew {advskew} (carpctl)");
        self.apply(index, output).await;
        done(format!("{interface}: advskew {advskew}"))
    }

    /// On a balanced interface, every node.
    async fn set_state(&mut self, interface: &str, state: &str) -> Response {
        let indices = self.vhid_indices(interface);
        if indices.is_empty() {
            return no_such_interface(interface);
        }
        let to = match state {
            "master" | "MASTER" => State::Master,
            "backup" | "BACKUP" => State::Backup,
            other => return error(format!("state {other}: use master or backup")),
        };
        if indices
            .iter()
            .any(|&i| self.vhids[i].admin_down || !self.vhids[i].carpdev_carrier)
        {
            return error(format!(
                "{interface}: is down (carpctl up, or its carpdev has no carrier)"
            ));
        }
        for index in indices {
            let demote = self.demote_of(index);
            let output = self.vhids[index].machine.force(clock::now(), to, demote);
            self.apply(index, output).await;
        }
        done(format!("{interface}: {to}"))
    }

    /// Like `ifconfig carp0 down`: bow out so the backup takes over at once,
    /// then stay in INIT.
    async fn admin_down(&mut self, interface: &str) -> Response {
        let indices = self.vhid_indices(interface);
        if indices.is_empty() {
            return no_such_interface(interface);
        }
        for index in indices {
            self.vhids[index].admin_down = true;
            let demote = self.demote_of(index);
            let output = self.vhids[index].machine.bow_out(demote);
            self.apply(index, output).await;
        }
        done(format!("{interface}: down"))
    }

    async fn admin_up(&mut self, interface: &str) -> Response {
        let indices = self.vhid_indices(interface);
        let Some(&first) = indices.first() else {
            return no_such_interface(interface);
        };
        for &index in &indices {
            self.vhids[index].admin_down = false;
        }
        if !self.vhids[first].carpdev_carrier {
            return done(format!(
                "{interface}: up, waiting for a carrier on {}",
                self.vhids[first].config.carpdev
            ));
        }
        for index in indices {
            let output = self.vhids[index].machine.start(clock::now());
            self.apply(index, output).await;
        }
        done(format!("{interface}: up"))
    }
}
