//! Who is on the other end of a connection, and which role that gives them.

use std::io;

use drd_core::audit::Actor;
use drd_core::config::ResolvedRoles;
use drd_proto::Role;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{geteuid, getgrouplist, Gid, Uid, User};
use tokio::net::UnixStream;

/// A connected client, from the kernel's own record (SO_PEERCRED), not its say-so.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Its pid.
    pub pid: i32,
    /// Every group it is in (primary and supplementary), looked up once at connect.
    pub groups: Vec<u32>,
}

impl Peer {
    /// Reads the credentials of the process on the other end of `stream`.
    pub fn of(stream: &UnixStream) -> io::Result<Peer> {
        let cred = getsockopt(stream, PeerCredentials).map_err(io::Error::from)?;
        let (uid, gid) = (cred.uid(), cred.gid());
        let mut groups = vec![gid];
        if let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) {
            if let Ok(list) = getgrouplist(&user_cname(&user.name), Gid::from_raw(gid)) {
                groups.extend(list.into_iter().map(Gid::as_raw));
            }
        }
        groups.sort_unstable();
        groups.dedup();
        Ok(Peer {
            uid,
            gid,
            pid: cred.pid(),
            groups,
        })
    }

    /// The peer as an audit actor.
    pub fn actor(&self) -> Actor {
        Actor::Peer {
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
        }
    }

    /// Whether the peer holds every role whatever the config says: root, and the uid
    /// the daemon runs as (it can do anything the daemon can, socket or not).
    pub fn holds_every_role(&self) -> bool {
        self.uid == 0 || self.uid == geteuid().as_raw()
    }

    /// The highest role the peer holds, if any. root and the daemon's own uid hold
    /// every role; a role also grants the roles below it.
    pub fn role(&self, roles: &ResolvedRoles) -> Option<Role> {
        if self.holds_every_role() {
            return Some(Role::Responder);
        }
        let holds = |(uids, gids): &(Vec<u32>, Vec<u32>)| {
            uids.contains(&self.uid) || self.groups.iter().any(|g| gids.contains(g))
        };
        [
            (Role::Responder, &roles.responder),
            (Role::Operator, &roles.operator),
            (Role::Viewer, &roles.viewer),
        ]
        .into_iter()
        .find(|(_, members)| holds(members))
        .map(|(role, _)| role)
    }
}

fn user_cname(name: &str) -> std::ffi::CString {
    std::ffi::CString::new(name).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, groups: &[u32]) -> Peer {
        Peer {
            uid,
            gid: groups[0],
            pid: 1,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn roles_come_from_uids_and_groups_and_include_lower_ones() {
        let roles = ResolvedRoles {
            viewer: (vec![], vec![100]),
            operator: (vec![470_010], vec![]),
            responder: (vec![], vec![300]),
        };
        assert_eq!(peer(0, &[0]).role(&roles), Some(Role::Responder));
        assert_eq!(peer(470_000, &[100]).role(&roles), Some(Role::Viewer));
        assert_eq!(peer(470_010, &[5]).role(&roles), Some(Role::Operator));
        assert_eq!(peer(470_020, &[5, 300]).role(&roles), Some(Role::Responder));
        assert_eq!(peer(470_030, &[5]).role(&roles), None);
    }

    #[test]
    fn the_daemons_own_uid_holds_every_role() {
        let me = geteuid().as_raw();
        let peer = peer(me, &[me]);
        assert!(peer.holds_every_role());
        assert_eq!(peer.role(&ResolvedRoles::default()), Some(Role::Responder));
    }
}
