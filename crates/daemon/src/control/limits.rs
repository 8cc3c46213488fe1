//! Who gets a connection slot, so that no one on the socket can lock out the on-call
//! engineer.
//!
//! Slots are counted per connection, after the peer's role is known (the kernel tells
//! us who is calling before a byte is read):
//!
//! - peers with no role never take a slot: they are refused right after the handshake
//!   (see `conn`), a few at a time;
//! - one uid may hold at most `daemon.max_connections_per_uid` connections; root and
//!   the daemon's own uid, who hold every role, are not limited per uid;
//! - everyone with a role shares `daemon.max_connections` slots;
//! - responders (root and the daemon's uid among them) may use
//!   `daemon.reserved_connections` more when those are all taken.
//!
//! The limits are read from the config in force at each connection, so a reload
//! changes them for the connections that come after it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use drd_proto::Role;

/// The numbers from `[daemon]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Slots shared by every peer with a role.
    pub shared: usize,
    /// Slots only responders may use, once the shared ones are taken.
    pub reserved: usize,
    /// Connections one uid may hold (not applied to peers that hold every role).
    pub per_uid: usize,
}

/// Why a peer with a role got no slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Full {
    /// This uid already holds its share.
    Uid {
        /// The uid.
        uid: u32,
        /// How many it may hold.
        limit: usize,
    },
    /// Every slot this peer may use is taken.
    All,
}

impl Full {
    /// What the client is told.
    pub fn message(&self) -> String {
        match self {
            Full::Uid { uid, limit } => format!(
                "uid {uid} already has {limit} connections open to drd, the most one user may \
                 hold (daemon.max_connections_per_uid); close some (a script that does not \
                 wait for its drctl?) and try again"
            ),
            Full::All => "drd is serving too many connections; try again in a moment".to_owned(),
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    shared: usize,
    reserved: usize,
    per_uid: HashMap<u32, usize>,
}

/// The slots in use; shared by the accept loop and every connection.
#[derive(Debug, Default)]
pub struct Admission {
    counts: Mutex<Counts>,
}

/// A slot held by one connection; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    uid: Option<u32>,
    reserved: bool,
}

impl Admission {
    /// Takes a slot for a peer with `uid` and `role`; `admin` is a peer that holds
    /// every role (root, the daemon's own uid), which no per-uid limit applies to.
    pub fn admit(
        self: &Arc<Self>,
        limits: Limits,
        uid: u32,
        role: Role,
        admin: bool,
    ) -> Result<Slot, Full> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let held = counts.per_uid.get(&uid).copied().unwrap_or(0);
        if !admin && held >= limits.per_uid {
            return Err(Full::Uid {
                uid,
                limit: limits.per_uid,
            });
        }
        let reserved = if counts.shared < limits.shared {
            counts.shared += 1;
            false
        } else if role == Role::Responder && counts.reserved < limits.reserved {
            counts.reserved += 1;
            true
        } else {
            return Err(Full::All);
        };
        let uid = (!admin).then(|| {
            *counts.per_uid.entry(uid).or_insert(0) += 1;
            uid
        });
        Ok(Slot {
            admission: self.clone(),
            uid,
            reserved,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .admission
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.reserved {
            counts.reserved -= 1;
        } else {
            counts.shared -= 1;
        }
        if let Some(uid) = self.uid {
            if let Some(n) = counts.per_uid.get_mut(&uid) {
                *n -= 1;
                if *n == 0 {
                    counts.per_uid.remove(&uid);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        shared: 4,
        reserved: 2,
        per_uid: 2,
    };

    #[test]
    fn one_uid_holds_at_most_its_share_and_gets_it_back() {
        let admission = Arc::new(Admission::default());
        let a = admission.admit(LIMITS, 1000, Role::Viewer, false).unwrap();
        let _b = admission.admit(LIMITS, 1000, Role::Viewer, false).unwrap();
        assert_eq!(
            admission
                .admit(LIMITS, 1000, Role::Viewer, false)
                .unwrap_err(),
            Full::Uid {
                uid: 1000,
                limit: 2
            }
        );
        // Another uid is not held back by the first.
        let _c = admission.admit(LIMITS, 1001, Role::Viewer, false).unwrap();
        drop(a);
        assert!(admission.admit(LIMITS, 1000, Role::Viewer, false).is_ok());
    }

    #[test]
    fn reserved_slots_are_for_responders_only() {
        let admission = Arc::new(Admission::default());
        let _shared: Vec<_> = (0..4)
            .map(|i| {
                admission
                    .admit(LIMITS, 1000 + i, Role::Operator, false)
                    .unwrap()
            })
            .collect();
        assert_eq!(
            admission
                .admit(LIMITS, 2000, Role::Operator, false)
                .unwrap_err(),
            Full::All
        );
        let responder = admission
            .admit(LIMITS, 2001, Role::Responder, false)
            .unwrap();
        let _root = admission.admit(LIMITS, 0, Role::Responder, true).unwrap();
        assert_eq!(
            admission
                .admit(LIMITS, 0, Role::Responder, true)
                .unwrap_err(),
            Full::All
        );
        // A freed reserved slot goes back to the reserve, not to the shared pool.
        drop(responder);
        assert_eq!(
            admission
                .admit(LIMITS, 2000, Role::Operator, false)
                .unwrap_err(),
            Full::All
        );
        assert!(admission.admit(LIMITS, 0, Role::Responder, true).is_ok());
    }

    #[test]
    fn admins_are_not_limited_per_uid() {
        let admission = Arc::new(Admission::default());
        let held: Vec<_> = (0..4)
            .map(|_| admission.admit(LIMITS, 0, Role::Responder, true).unwrap())
            .collect();
        assert_eq!(held.len(), 4);
        assert!(admission.counts.lock().unwrap().per_uid.is_empty());
    }
}
