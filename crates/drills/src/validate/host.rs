//! The daemon's own footing: the config it runs on and the file behind it, the Docker
//! engine where something needs it, the control socket's permissions, the audit
//! chain, the deadman switches and systemd's watchdog.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::sync::Arc;

use drd_core::config::{Config, DriverKind, LoadedConfig, SourceConfig};
use drd_core::docker::{Client, Connect};
use drd_proto::{ReadinessCheck, SwitchInfo, SwitchState, WorkerState};

use super::{fail, pass, warn, within, worst, PROBE_TIMEOUT};
use crate::Drills;

/// `config`: the config in force loaded (the daemon would not run otherwise), and
/// the file on disk still loads to the same thing, so a restart or a SIGHUP keeps
/// the host as it is now.
pub(super) async fn config(drills: &Drills, config: &Arc<LoadedConfig>) -> ReadinessCheck {
    let path = config.path.clone();
    let loaded_at = drd_proto::text::time(
        drills
            .core
            .config_loaded()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    );
    let in_force = format!("{} in force since {loaded_at}", path.display());
    let reread = {
        let path = path.clone();
        within(move || Config::load(&path)).await
    };
    match reread {
        Err(why) => fail(
            "config",
            format!("{in_force}; reading the file again: {why}"),
        ),
        Ok(Err(err)) => fail(
            "config",
            format!(
                "{in_force}, but the file no longer loads, so a restart or reload would be \
                 refused: {err}; fix it (`drd check-config --config {}` lists every problem)",
                path.display()
            ),
        ),
        Ok(Ok(on_disk)) if same(config, &on_disk) => pass(
            "config",
            format!("{in_force}; the file on disk loads the same"),
        ),
        Ok(Ok(_)) => warn(
            "config",
            format!(
                "{in_force}; the file on disk has changed since and loads, but is not in force: \
                 `drctl reload` to apply it, or undo the edit"
            ),
        ),
    }
}

/// Whether two loads give the same config. The tree has no `PartialEq` (nor should
/// every config type carry one for this); its `Debug` form is complete and
/// deterministic (maps are ordered), and leaves the keys themselves out.
fn same(a: &LoadedConfig, b: &LoadedConfig) -> bool {
    format!("{:?}", (&a.config, &a.roles, a.socket_gid))
        == format!("{:?}", (&b.config, &b.roles, b.socket_gid))
}

/// `docker`: the engine answers, where a docker source, a docker or compose service,
/// or a docker health check needs it.
pub(super) async fn docker(config: &LoadedConfig) -> ReadinessCheck {
    let users = docker_users(&config.config);
    if users.is_empty() {
        return pass(
            "docker",
            "not used: no docker source, docker or compose service, or docker health check",
        );
    }
    let needed_by = format!("needed by {}", users.join(", "));
    // The one client drd talks to Docker with, bounded like every probe here.
    let how = Connect {
        answer_within: PROBE_TIMEOUT,
        ..Connect::default()
    };
    match Client::connect(&how).await {
        Ok(client) => pass(
            "docker",
            format!("the engine at {} answers ({needed_by})", client.address()),
        ),
        Err(err) => fail(
            "docker",
            format!("{err} ({needed_by}; `docker info` shows what the engine says)"),
        ),
    }
}

/// What needs the Docker engine: `job NAME`, `service NAME`.
fn docker_users(config: &Config) -> Vec<String> {
    let jobs = config
        .jobs
        .iter()
        .filter(|(_, job)| {
            job.sources
                .iter()
                .any(|s| matches!(s, SourceConfig::Docker(_)))
        })
        .map(|(name, _)| format!("job {name}"));
    let services = config
        .services
        .iter()
        .filter(|(_, s)| {
            matches!(s.driver, DriverKind::Docker | DriverKind::Compose)
                || s.health.as_ref().is_some_and(|h| h.docker.is_some())
        })
        .map(|(name, _)| format!("service {name}"));
    jobs.chain(services).collect()
}

/// The mode bits the control socket may have: read and write for its owner and its
/// group, as the daemon sets them at bind. Anything more lets other users connect.
const SOCKET_MODE: u32 = 0o660;

/// `socket`: the control socket is mode 0660 or stricter and has the configured group
/// (or the daemon's own), so exactly the intended users can reach drd.
pub(super) fn socket(config: &LoadedConfig) -> ReadinessCheck {
    let path = &config.config.daemon.socket;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => meta,
        Ok(_) => {
            return fail(
                "socket",
                format!(
                    "{} is not a socket: something replaced it; restart drd to bind it again",
                    path.display()
                ),
            )
        }
        Err(err) => {
            return fail(
                "socket",
                format!(
                    "{}: {err}; drd answers on a socket it bound elsewhere (a changed \
                     daemon.socket takes effect at the next start), or the file was removed: \
                     restart drd",
                    path.display()
                ),
            )
        }
    };
    let mode = meta.mode() & 0o7777;
    let gid = meta.gid();
    let want_gid = config
        .socket_gid
        .unwrap_or_else(|| nix::unistd::getegid().as_raw());
    let evidence = format!(
        "{} mode {mode:04o}, group {}",
        path.display(),
        group_name(gid)
    );
    if mode & !SOCKET_MODE != 0 {
        return fail(
            "socket",
            format!(
                "{evidence}: users outside the owner and group can connect; \
                 `chmod {SOCKET_MODE:o} {}` (drd sets {SOCKET_MODE:04o} when it binds)",
                path.display()
            ),
        );
    }
    if gid != want_gid {
        let source = if config.socket_gid.is_some() {
            "daemon.socket_group"
        } else {
            "drd's own group (no daemon.socket_group)"
        };
        return fail(
            "socket",
            format!(
                "{evidence}, but {source} is {}: the intended users cannot connect; \
                 `chgrp {} {}`, or restart drd",
                group_name(want_gid),
                group_name(want_gid),
                path.display()
            ),
        );
    }
    pass("socket", evidence)
}

/// A group's name, or its number when it has none.
fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(group)) => group.name,
        _ => gid.to_string(),
    }
}

/// `audit`: the hash chain verifies, as `drctl audit verify` checks it.
pub(super) async fn audit(drills: &Drills) -> ReadinessCheck {
    match drills.core.audit.verify(|_, _| {}).await {
        Ok(report) => match report.first_mismatch {
            Some(bad) => fail(
                "audit",
                format!(
                    "chain broken at entry {}: {}; entries from {} on cannot be trusted: find out \
                     who wrote to the catalog (`drctl audit verify` shows the same)",
                    bad.id, bad.reason, bad.id
                ),
            ),
            None => pass("audit", format!("chain intact: {} entries", report.entries)),
        },
        Err(err) => fail("audit", format!("cannot read the audit log: {err}")),
    }
}

/// `deadman`: every switch up. A down switch fails; one late, new (never pinged) or
/// paused is a warn: nothing has gone wrong yet, but it is not watching as set up.
pub(super) fn deadman(switches: &[SwitchInfo]) -> ReadinessCheck {
    if switches.is_empty() {
        return pass("deadman", "no deadman switches configured");
    }
    let odd: Vec<&SwitchInfo> = switches
        .iter()
        .filter(|s| s.state != SwitchState::Up)
        .collect();
    if odd.is_empty() {
        return pass("deadman", format!("all {} switches up", switches.len()));
    }
    let status = worst(odd.iter().map(|s| match s.state {
        SwitchState::Down => drd_proto::CheckStatus::Fail,
        _ => drd_proto::CheckStatus::Warn,
    }));
    let listed: Vec<String> = odd
        .iter()
        .map(|s| format!("{} {}", s.name, s.state.as_str()))
        .collect();
    super::check(
        "deadman",
        status,
        format!(
            "{} of {} switches not up: {}; see `drctl deadman` (a down one means its job has \
             not checked in: find out why, then `drctl heartbeat NAME`; a paused one, \
             `drctl deadman resume NAME`)",
            odd.len(),
            switches.len(),
            listed.join(", ")
        ),
    )
}

/// `watchdog`: under a systemd watchdog (`WatchdogSec=`), drd pets it.
///
/// Not under systemd at all is a pass, not a warn: running drd by hand, in a
/// container or from the quickstart is supported, and a warn there would be a line
/// nobody can clear without changing how they run it. Under systemd without
/// `WatchdogSec=` is a warn: the unit drd ships sets it, so a unit without it was
/// changed, and a hung daemon would not be restarted.
pub(super) fn watchdog(drills: &Drills) -> ReadinessCheck {
    // The daemon starts the worker exactly when systemd asked for a watchdog.
    let worker = drills
        .core
        .workers
        .statuses()
        .into_iter()
        .find(|w| w.name == "watchdog");
    match worker {
        Some(w) if w.state == WorkerState::Failing => fail(
            "watchdog",
            format!(
                "systemd's watchdog is not being petted: {}; systemd will restart drd: \
                 see `drctl status` and the journal",
                w.last_error.unwrap_or_default()
            ),
        ),
        Some(w) if w.state == WorkerState::Stopped => fail(
            "watchdog",
            "the watchdog worker has stopped; systemd will restart drd",
        ),
        Some(w) => pass("watchdog", format!("systemd watchdog: {}", w.detail)),
        None if std::env::var_os("NOTIFY_SOCKET").is_some() => warn(
            "watchdog",
            "under systemd without a watchdog: a hung drd would not be restarted; set \
             WatchdogSec= in the unit (the shipped drd.service sets 30s)",
        ),
        None => pass("watchdog", "not under systemd: no watchdog to keep"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drd_proto::CheckStatus;

    fn switch(name: &str, state: SwitchState) -> SwitchInfo {
        SwitchInfo {
            name: name.to_owned(),
            state,
            last_ping: None,
            last_exit_code: None,
            next_deadline_unix_ms: None,
            down_at_unix_ms: None,
            running: None,
            expects: "every 5m, grace 1m".to_owned(),
            since_unix_ms: None,
            actions: Vec::new(),
        }
    }

    #[test]
    fn a_down_switch_fails_and_a_late_or_paused_one_warns() {
        assert_eq!(deadman(&[]).status, CheckStatus::Pass);
        let up = switch("nightly", SwitchState::Up);
        assert_eq!(deadman(std::slice::from_ref(&up)).status, CheckStatus::Pass);
        let paused = switch("export", SwitchState::Paused);
        let line = deadman(&[up.clone(), paused.clone()]);
        assert_eq!(line.status, CheckStatus::Warn);
        assert!(line.detail.contains("export paused"), "{}", line.detail);
        let line = deadman(&[up, paused, switch("sync", SwitchState::Down)]);
        assert_eq!(line.status, CheckStatus::Fail);
        assert!(
            line.detail.starts_with("2 of 3 switches not up"),
            "{}",
            line.detail
        );
    }
}
