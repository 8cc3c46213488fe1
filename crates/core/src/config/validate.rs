//! Checks that need more than the types: names that must exist, numbers in range,
//! paths the kernel accepts. Every problem is collected, not just the first.

use std::fmt;
use std::path::Path;

use nix::unistd::{Group, User};

use super::{jobs, locate, Config, GroupRef, ResolvedRoles, RoleMembers, UserRef};

/// One thing wrong with a config, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field, as a dotted path (`roles.viewer.users[0]`); empty when the problem is
    /// with the file as a whole.
    pub field: String,
    /// The line in the file, where it could be found.
    pub line: Option<usize>,
    /// What is wrong and what would be right.
    pub message: String,
}

impl Problem {
    pub(super) fn at(text: &str, field: String, message: String) -> Problem {
        let line = locate::line_of(text, &field);
        Problem {
            field,
            line,
            message,
        }
    }

    /// A parse or type error from the toml crate, which knows the span.
    pub(super) fn from_toml(text: &str, err: &toml::de::Error) -> Problem {
        let line = err
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        let message = err.message().trim().to_owned();
        let field = locate::field_at(text, err.span().map(|s| s.start), &message);
        Problem {
            field,
            line,
            message,
        }
    }

    /// `FILE:LINE: FIELD: MESSAGE`, leaving out the parts that are unknown.
    pub fn display_in<'a>(&'a self, path: &'a Path) -> impl fmt::Display + 'a {
        struct Shown<'a>(&'a Problem, &'a Path);
        impl fmt::Display for Shown<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let Shown(problem, path) = self;
                write!(f, "{}", path.display())?;
                if let Some(line) = problem.line {
                    write!(f, ":{line}")?;
                }
                if !problem.field.is_empty() {
                    write!(f, ": {}", problem.field)?;
                }
                write!(f, ": {}", problem.message)
            }
        }
        Shown(self, path)
    }
}

/// Longest socket path the kernel takes (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

pub(super) fn check(config: &Config, text: &str) -> (ResolvedRoles, Option<u32>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| {
        problems.push(Problem::at(text, field.to_owned(), message));
    };
    let daemon = &config.daemon;

    if let Err(err) = check_log_level(&daemon.log_level) {
        problem(
            "daemon.log_level",
            format!(
                "{:?} is not a log level or filter ({err}); use error, warn, info, debug or trace",
                daemon.log_level
            ),
        );
    }
    if daemon.max_connections == 0 {
        problem(
            "daemon.max_connections",
            "must be at least 1 (64 is the default)".to_owned(),
        );
    }
    for (field, value, default) in [
        (
            "daemon.max_connections_per_uid",
            daemon.max_connections_per_uid,
            16,
        ),
        (
            "daemon.reserved_connections",
            daemon.reserved_connections,
            8,
        ),
    ] {
        if value == 0 {
            problem(
                field,
                format!("must be at least 1 ({default} is the default)"),
            );
        }
    }
    for (field, value) in [
        ("daemon.idle_timeout", daemon.idle_timeout),
        ("daemon.handshake_timeout", daemon.handshake_timeout),
        ("daemon.stop_timeout", daemon.stop_timeout),
    ] {
        if value.is_zero() {
            problem(field, "must be longer than zero".to_owned());
        }
    }
    if !(4..=4096).contains(&daemon.backup_buffer_mib) {
        problem(
            "daemon.backup_buffer_mib",
            format!(
                "{} is out of range; use 4 to 4096 (64 is the default)",
                daemon.backup_buffer_mib
            ),
        );
    }
    if !(1..=19).contains(&daemon.compression_level) {
        problem(
            "daemon.compression_level",
            format!(
                "{} is not a zstd level; use 1 (fastest) to 19 (smallest)",
                daemon.compression_level
            ),
        );
    }
    let socket_len = daemon.socket.as_os_str().len();
    if socket_len > MAX_SOCKET_PATH {
        problem(
            "daemon.socket",
            format!(
                "{} is {socket_len} bytes; a Unix socket path may have at most {MAX_SOCKET_PATH}: pick a shorter path",
                daemon.socket.display()
            ),
        );
    }
    let socket_gid = daemon.socket_group.as_ref().and_then(|group| {
        resolve_group(group)
            .map_err(|msg| problem("daemon.socket_group", msg))
            .ok()
    });

    let mut resolve = |role: &str, members: &RoleMembers| {
        let mut uids = Vec::new();
        let mut gids = Vec::new();
        for (i, user) in members.users.iter().enumerate() {
            match resolve_user(user) {
                Ok(uid) => uids.push(uid),
                Err(msg) => problem(&format!("roles.{role}.users[{i}]"), msg),
            }
        }
        for (i, group) in members.groups.iter().enumerate() {
            match resolve_group(group) {
                Ok(gid) => gids.push(gid),
                Err(msg) => problem(&format!("roles.{role}.groups[{i}]"), msg),
            }
        }
        (uids, gids)
    };
    let roles = ResolvedRoles {
        viewer: resolve("viewer", &config.roles.viewer),
        operator: resolve("operator", &config.roles.operator),
        responder: resolve("responder", &config.roles.responder),
    };
    jobs::check(&config.keys, &config.tiers, &config.jobs, &mut problem);
    (roles, socket_gid, problems)
}

/// A tracing filter whose bare words are levels. (tracing itself reads a bare `loud`
/// as "everything from the target `loud`", which is never what a config meant.)
fn check_log_level(level: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    for directive in level.split(',').map(str::trim) {
        if !directive.contains('=') && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(format!("{directive:?} is not a level"));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map(drop)
        .map_err(|err| err.to_string())
}

pub(super) fn resolve_user(user: &UserRef) -> Result<u32, String> {
    match user {
        UserRef::Id(uid) => Ok(*uid),
        UserRef::Name(name) => match User::from_name(name) {
            Ok(Some(user)) => Ok(user.uid.as_raw()),
            Ok(None) => Err(format!(
                "no user named {name:?} on this host; create it or give a numeric uid"
            )),
            Err(err) => Err(format!("cannot look up user {name:?}: {err}")),
        },
    }
}

pub(super) fn resolve_group(group: &GroupRef) -> Result<u32, String> {
    match group {
        GroupRef::Id(gid) => Ok(*gid),
        GroupRef::Name(name) => match Group::from_name(name) {
            Ok(Some(group)) => Ok(group.gid.as_raw()),
            Ok(None) => Err(format!(
                "no group named {name:?} on this host; create it (systemd-sysusers does for \"drd\") or give a numeric gid"
            )),
            Err(err) => Err(format!("cannot look up group {name:?}: {err}")),
        },
    }
}
