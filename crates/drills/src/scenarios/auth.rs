//! auth_outage: is the door shut to those without a role, and do the keys still open
//! every tier?
//!
//! `socket`: a client with no role connects to the daemon's real control socket and
//! must be refused, with the refusal in the audit log. Inside the daemon every
//! connection would carry drd's own uid, which holds every role, so the client is a
//! separate process: `drctl` (the one client that speaks the protocol), run as
//! `nobody`. Only root can start a process as another user, so when drd is not root
//! the subject is left out, and the `keys` evidence says why: an unmeasured check is
//! never reported as a pass.
//!
//! `keys`: every configured key file exists, is private (mode 0600 or stricter) and
//! owned by drd's user, and the keys read from disk now open every tier's repository.
//!
//! RTO is the time to confirm; no data is at stake, so RPO is zero.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drd_core::command::Command;
use drd_core::config::LoadedConfig;
use drd_proto::Category;
use nix::unistd::{geteuid, User};

use super::{Drill, Finding};

/// How long the role-less client may take to be refused.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The user the role-less client runs as.
const NOBODY: &str = "nobody";

pub(super) async fn run(drill: &Drill) -> Vec<Finding> {
    let mut found = Vec::new();
    drill.step("auth_outage", "socket".to_owned());
    let not_run = if geteuid().is_root() {
        found.push(socket(drill).await);
        None
    } else {
        Some(format!(
            "socket not checked: drd runs as uid {}, not root, so it cannot start a client \
             under another uid, and its own uid holds every role",
            geteuid()
        ))
    };
    if drill.cancelled() {
        return found;
    }
    drill.step("auth_outage", "keys".to_owned());
    found.push(keys(drill, not_run).await);
    found
}

/// Connects as `nobody` and checks the refusal and its audit entry.
async fn socket(drill: &Drill) -> Finding {
    let started = Instant::now();
    let failed =
        |why: String| Finding::failed(Category::Authentication, "socket".to_owned(), started, why);
    let config = &drill.config;
    let socket = &config.config.daemon.socket;
    let nobody = match User::from_name(NOBODY) {
        Ok(Some(user)) => user,
        Ok(None) => {
            return failed(format!(
                "there is no user {NOBODY:?} to connect as without a role"
            ))
        }
        Err(err) => return failed(format!("cannot look up the user {NOBODY:?}: {err}")),
    };
    let uid = nobody.uid.as_raw();
    if let Some(role) = role_of(config, uid, &[]) {
        return failed(format!(
            "uid {uid} ({NOBODY}) holds the role {role} in [roles], so the drill has no \
             role-less user to connect as; nobody should hold a role: take it out"
        ));
    }
    let socket_gid = match std::fs::metadata(socket) {
        Ok(meta) => meta.gid(),
        Err(err) => {
            return failed(format!(
                "cannot read the socket {}: {err}",
                socket.display()
            ))
        }
    };
    // In the socket's group the client reaches drd and meets its role check. If that
    // group holds a role, a role-less peer cannot reach drd at all: the socket's mode
    // (owner and group only) is then what refuses it, and drd has nothing to audit.
    let group_role = role_of(config, u32::MAX, &[socket_gid]);
    let gid = if group_role.is_none() {
        socket_gid
    } else {
        nobody.gid.as_raw()
    };
    let Some(drctl) = drctl() else {
        return failed(
            "cannot find drctl next to drd or on PATH: the drill connects through it; \
             install drctl with drd"
                .to_owned(),
        );
    };
    let since = drd_core::util::unix_ms_now();
    let t0 = Instant::now();
    let argv = [
        drctl.display().to_string(),
        "--socket".to_owned(),
        socket.display().to_string(),
        "status".to_owned(),
    ];
    let command = Command::new(&argv, CLIENT_TIMEOUT)
        .run_as(uid, gid)
        .cancel_on(drill.token.clone());
    let mut running = match command.spawn() {
        Ok(running) => running,
        Err(err) => return failed(format!("cannot run drctl as uid {uid}: {err}")),
    };
    let pid = running.id();
    let ran = match running.wait().await {
        Ok(ran) => ran,
        Err(err) => return failed(format!("drctl as uid {uid}: {err}")),
    };
    let said = ran.said();
    if ran.success() {
        return failed(format!(
            "uid {uid} (no role) was served: `drctl status` succeeded over {}; check \
             [roles] and the socket's group",
            socket.display()
        ));
    }
    if let Some(role) = group_role {
        let refused = said.to_lowercase().contains("permission denied");
        if !refused {
            return failed(format!(
                "drctl as uid {uid} failed, but not for want of permission: {ran}"
            ));
        }
        return Finding::measured(
            Category::Authentication,
            "socket".to_owned(),
            started,
            (Some(t0.elapsed()), Some(Duration::ZERO)),
            drill.target(Category::Authentication),
            format!(
                "uid {uid} gid {gid} (no role) cannot open the socket: its group {socket_gid} \
                 holds the role {role}, and its mode admits only owner and group, so the \
                 refusal comes before drd (nothing to audit): {said}"
            ),
        );
    }
    if !said.contains("holds no role") {
        return failed(format!(
            "drctl as uid {uid} was not refused for want of a role: {ran}"
        ));
    }
    let actor = format!("uid={uid} gid={gid} pid={pid}");
    let audited = match drill.drills.core.audit.list(Some(since), 0).await {
        Ok(entries) => entries
            .into_iter()
            .find(|e| e.actor == actor && e.action == "connect" && e.outcome == "refused"),
        Err(err) => return failed(format!("cannot read the audit log: {err}")),
    };
    let rto = t0.elapsed();
    match audited {
        Some(entry) => Finding::measured(
            Category::Authentication,
            "socket".to_owned(),
            started,
            (Some(rto), Some(Duration::ZERO)),
            drill.target(Category::Authentication),
            format!(
                "uid {uid} gid {gid} (no role) was refused over {} and the refusal is \
                 audited (entry {}): {}",
                socket.display(),
                entry.id,
                entry.detail
            ),
        ),
        None => failed(format!(
            "uid {uid} was refused ({said}), but the audit log has no refused connect by \
             {actor}; refusals must be audited"
        )),
    }
}

/// The highest role `[roles]` gives `uid` or any of `gids`.
fn role_of(config: &LoadedConfig, uid: u32, gids: &[u32]) -> Option<&'static str> {
    let roles = &config.roles;
    [
        ("responder", &roles.responder),
        ("operator", &roles.operator),
        ("viewer", &roles.viewer),
    ]
    .into_iter()
    .find(|(_, (uids, role_gids))| {
        uids.contains(&uid) || gids.iter().any(|g| role_gids.contains(g))
    })
    .map(|(name, _)| name)
}

/// `drctl` next to the running drd (as packaged), or on PATH.
fn drctl() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("drctl")));
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("drctl"))
                .collect()
        })
        .unwrap_or_default();
    beside.into_iter().chain(on_path).find(|p| p.is_file())
}

/// Checks the key files and opens every tier with the keys read now.
async fn keys(drill: &Drill, not_run: Option<String>) -> Finding {
    let started = Instant::now();
    let config = drill.config.clone();
    let checked = tokio::task::spawn_blocking(move || check_keys(&config)).await;
    let rto = started.elapsed();
    let (lines, ok) = match checked {
        Ok(found) => found,
        Err(err) => (vec![format!("the key check stopped: {err}")], false),
    };
    let mut evidence = lines.join("; ");
    if let Some(why) = not_run {
        evidence.push_str(&format!("; {why}"));
    }
    if ok {
        Finding::measured(
            Category::Authentication,
            "keys".to_owned(),
            started,
            (Some(rto), Some(Duration::ZERO)),
            drill.target(Category::Authentication),
            evidence,
        )
    } else {
        Finding::failed(
            Category::Authentication,
            "keys".to_owned(),
            started,
            evidence,
        )
    }
}

/// One line per key file and per tier, and whether all of them are right.
fn check_keys(config: &LoadedConfig) -> (Vec<String>, bool) {
    let files = &config.config.keys.files;
    if files.is_empty() {
        return (
            vec![
                "no key files are configured ([keys] files): no repository can be opened"
                    .to_owned(),
            ],
            false,
        );
    }
    let me = geteuid().as_raw();
    let mut lines = Vec::new();
    let mut ok = true;
    for path in files {
        match key_file_problem(path, me) {
            None => lines.push(format!(
                "key {}: private, owned by uid {me}",
                path.display()
            )),
            Some(problem) => {
                ok = false;
                lines.push(format!("key {}: {problem}", path.display()));
            }
        }
    }
    let keys = match drd_repo::KeySet::load(files) {
        Ok(keys) => keys,
        Err(err) => {
            lines.push(format!("the keys cannot be read: {err}"));
            return (lines, false);
        }
    };
    if config.config.tiers.is_empty() {
        lines.push("no tiers are configured: nothing for the keys to open".to_owned());
    }
    for (name, tier) in &config.config.tiers {
        match drd_backup::tiers::open_uncached(tier, &keys) {
            Ok(_) => lines.push(format!("tier {name}: the keys open it")),
            Err(err) => {
                ok = false;
                lines.push(format!("tier {name}: {err}"));
            }
        }
    }
    (lines, ok)
}

/// What is wrong with one key file, if anything.
fn key_file_problem(path: &Path, owner: u32) -> Option<String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) => {
            return Some(format!(
                "cannot be read ({err}); restore it from your key escrow"
            ))
        }
    };
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Some(format!(
            "mode {mode:04o} lets others read it; run `chmod 600 {}`",
            path.display()
        ));
    }
    if meta.uid() != owner {
        return Some(format!(
            "owned by uid {}, not drd's uid {owner}; run `chown {owner} {}`",
            meta.uid(),
            path.display()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_key_file_readable_by_others_or_missing_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("main.key");
        std::fs::write(&key, "x").unwrap();
        let me = geteuid().as_raw();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(key_file_problem(&key, me), None);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(key_file_problem(&key, me), None, "stricter is fine");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let problem = key_file_problem(&key, me).unwrap();
        assert!(
            problem.starts_with("mode 0644 lets others read it"),
            "{problem}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let problem = key_file_problem(&key, me + 1).unwrap();
        assert!(
            problem.contains(&format!("not drd's uid {}", me + 1)),
            "{problem}"
        );
        let problem = key_file_problem(&dir.path().join("gone.key"), me).unwrap();
        assert!(problem.starts_with("cannot be read"), "{problem}");
    }
}
