//! The coherence tracker: the carp interfaces of one group must not be split
//! between MASTER and BACKUP. A split group (some vhids here, some on the peer)
//! blackholes traffic that enters on one segment and leaves on another, the
//! field story OpenBSD's interface-group demotion exists for. Pure.

use std::fmt;

use crate::fsm::State;

/// How many carp interfaces of a group are in each role that counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles {
    pub masters: usize,
    pub backups: usize,
}

impl Roles {
    /// Counts the roles; INIT interfaces (link down, starting) take no side
    /// and are left out.
    pub fn count(roles: impl IntoIterator<Item = State>) -> Self {
        roles
            .into_iter()
            .fold(Self::default(), |mut counted, role| {
                match role {
                    State::Master => counted.masters += 1,
                    State::Backup => counted.backups += 1,
                    State::Init => {}
                }
                counted
            })
    }

    /// Not split: no MASTER and BACKUP at the same time.
    pub fn is_coherent(self) -> bool {
        self.masters == 0 || self.backups == 0
    }
}

/// A short reason for the log: "2 MASTER, 1 BACKUP".
impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} MASTER, {} BACKUP", self.masters, self.backups)
    }
}

/// Whether the roles of one group's carp interfaces are coherent.
pub fn is_coherent(roles: impl IntoIterator<Item = State>) -> bool {
    Roles::count(roles).is_coherent()
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::{Backup, Init, Master};

    #[test]
    fn table() {
        let cases: [(&[State], bool); 10] = [
            (&[], true),
            (&[Init], true),
            (&[Master], true),
            (&[Backup], true),
            (&[Master, Master, Init], true),
            (&[Backup, Init, Backup], true),
            (&[Master, Backup], false),
            (&[Init, Backup, Init, Master], false),
            (&[Master, Master, Master, Backup], false),
            (&[Init, Init], true),
        ];
        for (roles, coherent) in cases {
            assert_eq!(is_coherent(roles.iter().copied()), coherent, "{roles:?}");
        }
    }

    #[test]
    fn every_group_of_up_to_five_interfaces() {
        let all = [Init, Backup, Master];
        for size in 0..=5u32 {
            for mut code in 0..3usize.pow(size) {
                let roles: Vec<State> = (0..size)
                    .map(|_| {
                        let role = all[code % 3];
                        code /= 3;
                        role
                    })
                    .collect();
                let split = roles.contains(&Master) && roles.contains(&Backup);
                assert_eq!(is_coherent(roles.iter().copied()), !split, "{roles:?}");
            }
        }
    }

    #[test]
    fn counts_for_the_log() {
        let roles = Roles::count([Master, Init, Backup, Master]);
        assert_eq!(
            roles,
            Roles {
                masters: 2,
                backups: 1
            }
        );
        assert_eq!(roles.to_string(), "2 MASTER, 1 BACKUP");
    }
}
