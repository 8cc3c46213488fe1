//! The daemon's configuration: one TOML file, one struct tree, validated up front.
//!
//! `Config::load` reads and parses the file, resolves relative paths against the file's
//! folder, and runs every check it can before the daemon touches anything, so that
//! `drd check-config` and a SIGHUP reload see the same problems a start would.

pub mod alerts;
pub mod corruption;
pub mod deadman;
pub mod drills;
pub mod health;
mod hook;
mod jobs;
mod locate;
pub mod metrics;
pub mod monitors;
pub mod network;
pub mod policy;
mod restore;
pub mod schedule;
mod services;
pub mod threshold;
mod tiers;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use hook::{HookConfig, JOB_HOOK_TIMEOUT, SERVICE_HOOK_TIMEOUT};
pub use jobs::{DockerConsistency, DockerSource};
pub use jobs::{JobConfig, KeysConfig, RetentionConfig, SourceConfig};
pub use restore::RestoreConfig;
pub use services::{find_cycle, DriverKind, ServiceConfig, ShutdownConfig};
pub use tiers::{replication_pairs, TierConfig, TierKind};
pub use validate::Problem;

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How the daemon itself runs.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// Who may do what over the socket.
    #[serde(default)]
    pub roles: RolesConfig,
    /// Encryption keys for the repositories.
    #[serde(default)]
    pub keys: KeysConfig,
    /// Where backups are stored, by name.
    #[serde(default)]
    pub tiers: BTreeMap<String, TierConfig>,
    /// Backup jobs, by name.
    #[serde(default)]
    pub jobs: BTreeMap<String, JobConfig>,
    /// Services the emergency shutdown stops, by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// Emergency shutdown settings.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// Where callers other than root may restore to.
    #[serde(default)]
    pub restore: RestoreConfig,
    /// What the monitors sample and when their checks fire.
    #[serde(default)]
    pub monitors: monitors::MonitorsConfig,
    /// What monitors and deadman switches may do on their own.
    #[serde(default)]
    pub policy: policy::PolicyConfig,
    /// Prometheus metrics: the `/metrics` listener and the node_exporter textfile.
    #[serde(default)]
    pub metrics: metrics::MetricsConfig,
    /// Deadman switches, by name: each expects a ping (`drctl heartbeat NAME`) on time.
    #[serde(default)]
    pub deadman: BTreeMap<String, deadman::DeadmanConfig>,
    /// Where alerts go: receivers, routes with escalation, retries.
    #[serde(default)]
    pub alerts: alerts::AlertsConfig,
    /// Recovery drills: how often, where they restore, and the targets they are held to.
    #[serde(default)]
    pub drills: drills::DrillsConfig,
}

/// The `[daemon]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Catalog, checkpoints and scratch space. Relative paths are taken from the config
    /// file's folder.
    pub state_dir: PathBuf,
    /// The control socket. Relative paths are taken from the config file's folder.
    pub socket: PathBuf,
    /// The group that owns the socket (name or gid); members can connect, and the
    /// roles below decide what they may ask. Unset: the daemon's own group.
    pub socket_group: Option<GroupRef>,
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter such as
    /// `info,drd::control=debug`. `RUST_LOG` overrides it.
    pub log_level: String,
    /// Connections of peers with a role served at once; more are told the daemon is
    /// busy (responders may still use `reserved_connections`).
    pub max_connections: usize,
    /// A client that sends nothing for this long is disconnected.
    #[serde(with = "humantime_serde_compat")]
    pub idle_timeout: Duration,
    /// A client must finish the handshake within this time.
    #[serde(with = "humantime_serde_compat")]
    pub handshake_timeout: Duration,
    /// On SIGTERM, in-flight requests get this long to finish.
    #[serde(with = "humantime_serde_compat")]
    pub stop_timeout: Duration,
    /// Threads that compress and encrypt during a backup, and as many that read files;
    /// 0 means one per core.
    pub backup_threads: usize,
    /// Chunk data a backup may hold in memory between reading and packing, in MiB;
    /// with the pack being written and the index, this bounds a backup's memory.
    pub backup_buffer_mib: usize,
    /// zstd level for new data, 1 (fastest) to 19 (smallest).
    pub compression_level: i32,
    /// Threads that write files during a restore; 0 means the default (see
    /// `drd_repo::RestoreOptions::default_threads`).
    pub restore_threads: usize,
    /// An offsite copy that fails is retried after 5 s, then after twice as long each
    /// time, up to this long between tries.
    #[serde(with = "humantime_serde_compat")]
    pub replication_retry_max: Duration,
    /// Connections one uid may hold at once; root and the daemon's own uid are not
    /// limited per uid.
    pub max_connections_per_uid: usize,
    /// Slots beyond `max_connections` that only responders (root among them) may use,
    /// so the on-call engineer gets in while others hold every shared slot.
    pub reserved_connections: usize,
    /// A healthchecks.io-style URL drd pings every `ping_every` while it runs, so an
    /// outside deadman notices when the host or drd goes silent.
    pub ping_url: Option<String>,
    /// How often drd pings `ping_url`.
    #[serde(with = "humantime_serde_compat")]
    pub ping_every: Duration,
}

/// The zstd level when the config names none. Measured on five corpora (bench/README.md,
/// "Choosing the compression level"): level 6 made repositories 0-3.7 % smaller than 3
/// and first backups up to twice as slow, so 3 (restic's default too); incompressible
/// chunks are stored raw at any level.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            state_dir: PathBuf::from("/var/lib/drd"),
            socket: PathBuf::from(drd_proto::DEFAULT_SOCKET),
            socket_group: None,
            log_level: "info".to_owned(),
            max_connections: 64,
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(30),
            backup_threads: 0,
            backup_buffer_mib: 16,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            replication_retry_max: Duration::from_secs(15 * 60),
            restore_threads: 0,
            max_connections_per_uid: 16,
            reserved_connections: 8,
            ping_url: None,
            ping_every: Duration::from_secs(60),
        }
    }
}

/// The `[roles]` table: members of each role. root has every role.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesConfig {
    /// May read status, lists and reports.
    #[serde(default)]
    pub viewer: RoleMembers,
    /// May also run backups, verifies, drills, heartbeats and reloads.
    #[serde(default)]
    pub operator: RoleMembers,
    /// May also shut services down, abort and restore.
    #[serde(default)]
    pub responder: RoleMembers,
}

/// The users and groups that hold one role.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMembers {
    /// User names or uids.
    #[serde(default)]
    pub users: Vec<UserRef>,
    /// Group names or gids; a user holds the role if any of its groups is listed.
    #[serde(default)]
    pub groups: Vec<GroupRef>,
}

/// A user given by name or by uid.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum UserRef {
    /// A numeric uid.
    Id(u32),
    /// A user name, looked up when the config is loaded.
    Name(String),
}

/// A group given by name or by gid.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum GroupRef {
    /// A numeric gid.
    Id(u32),
    /// A group name, looked up when the config is loaded.
    Name(String),
}

/// A config that passed every check, with the names in it resolved.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// The parsed tree, relative paths made absolute.
    pub config: Config,
    /// Role members as numeric ids.
    pub roles: ResolvedRoles,
    /// The socket group as a gid, if one was configured.
    pub socket_gid: Option<u32>,
    /// The key files' keys, read once per load (a reload reads them again).
    pub keys: LoadedKeys,
}

/// The keys of `[keys] files`, read when the config was loaded; none when the config
/// names no key file (it has no jobs then).
#[derive(Clone, Default)]
pub struct LoadedKeys(Option<drd_repo::KeySet>);

impl fmt::Debug for LoadedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys themselves.
        f.write_str(if self.0.is_some() {
            "LoadedKeys(..)"
        } else {
            "LoadedKeys(none)"
        })
    }
}

impl LoadedConfig {
    /// The keys that open the repositories, or the engine's "no key files" error (which
    /// says how to make one) when the config names none.
    pub fn keys(&self) -> Result<&drd_repo::KeySet, drd_repo::Error> {
        self.keys.0.as_ref().ok_or(drd_repo::Error::NoKeys)
    }

    /// Job `name`, or "no job named X; the config has a, b".
    pub fn job(&self, name: &str) -> Result<&JobConfig, String> {
        self.config
            .jobs
            .get(name)
            .ok_or_else(|| unknown("job", name, self.config.jobs.keys()))
    }

    /// Tier `name`, or "no tier named X; the config has a, b".
    pub fn tier(&self, name: &str) -> Result<&TierConfig, String> {
        self.config
            .tiers
            .get(name)
            .ok_or_else(|| unknown("tier", name, self.config.tiers.keys()))
    }
}

/// "no KIND named NAME; the config has a, b" (or "defines no KINDs").
fn unknown<'a>(kind: &str, name: &str, known: impl Iterator<Item = &'a String>) -> String {
    let known: Vec<&str> = known.map(String::as_str).collect();
    if known.is_empty() {
        format!("no {kind} named {name:?}: the config defines no {kind}s")
    } else {
        format!(
            "no {kind} named {name:?}; the config has {}",
            known.join(", ")
        )
    }
}

/// Role members with every name turned into a number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedRoles {
    /// `(uids, gids)` of viewers.
    pub viewer: (Vec<u32>, Vec<u32>),
    /// `(uids, gids)` of operators.
    pub operator: (Vec<u32>, Vec<u32>),
    /// `(uids, gids)` of responders.
    pub responder: (Vec<u32>, Vec<u32>),
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file was read but has problems; each names its field.
    #[error("{}", ProblemList { path, problems })]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

struct ProblemList<'a> {
    path: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "config {} has {n} problem{}:",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for problem in self.problems {
            write!(f, "\n  {}", problem.display_in(self.path))?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads, parses and validates the config at `path`.
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::load_str(path, &text)
    }

    /// Parses and validates `text` as if read from `path` (relative paths in it are
    /// taken from `path`'s folder).
    pub fn load_str(path: &Path, text: &str) -> Result<LoadedConfig, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        };
        let mut config: Config =
            toml::from_str(text).map_err(|err| invalid(vec![Problem::from_toml(text, &err)]))?;
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_owned))
            .unwrap_or_default();
        config.daemon.state_dir = base.join(&config.daemon.state_dir);
        config.daemon.socket = base.join(&config.daemon.socket);
        for file in &mut config.keys.files {
            *file = base.join(&*file);
        }
        for tier in config.tiers.values_mut() {
            tier.resolve(&base);
        }
        for job in config.jobs.values_mut() {
            for source in &mut job.sources {
                source.resolve(&base);
            }
        }
        for service in config.services.values_mut() {
            service.resolve(&base);
        }
        config.restore.resolve(&base);
        config.monitors.corruption.resolve(&base);
        config.metrics.resolve(&base);
        config.drills.resolve(&base);
        let (roles, socket_gid, mut problems) = validate::check(&config, text);
        problems.extend(services::problems(&config, text));
        problems.extend(restore::problems(&config, text));
        problems.extend(monitors::problems(&config, text));
        problems.extend(deadman::problems(&mut config, text));
        problems.extend(alerts::problems(&config, text));
        problems.extend(metrics::problems(&config, text));
        problems.extend(drills::problems(&config, text));
        // Each key file was read on its own by the checks above; the set is read once
        // here and shared by everything that opens a repository until the next load.
        let keys = match (problems.is_empty(), config.keys.files.is_empty()) {
            (true, false) => match drd_repo::KeySet::load(&config.keys.files) {
                Ok(keys) => Some(keys),
                Err(err) => {
                    problems.push(Problem {
                        field: "keys.files".to_owned(),
                        line: locate::line_of(text, "keys.files"),
                        message: err.to_string(),
                    });
                    None
                }
            },
            _ => None,
        };
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        Ok(LoadedConfig {
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
            config,
            roles,
            socket_gid,
            keys: LoadedKeys(keys),
        })
    }
}

/// Durations written as `"30s"`, `"5m"`, `"1h 30m"`.
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(de)?;
        humantime::parse_duration(&text).map_err(|err| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration ({err}); write it like \"30s\", \"5m\" or \"1h\""
            ))
        })
    }
}

/// The problems [`Config::load_str`] finds in `text`, as `FIELD: MESSAGE` (none when
/// it loads): what the config modules' tests assert on.
#[cfg(test)]
pub(crate) fn problems_in(text: &str) -> Vec<String> {
    match Config::load_str(Path::new("/etc/drd/drd.toml"), text) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { problems, .. }) => problems
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect(),
        Err(err) => vec![err.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<LoadedConfig, ConfigError> {
        Config::load_str(Path::new("/etc/drd/drd.toml"), text)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let loaded = load("").unwrap();
        assert_eq!(loaded.config.daemon.socket, Path::new("/run/drd/drd.sock"));
        assert_eq!(loaded.config.daemon.max_connections, 64);
    }

    #[test]
    fn relative_paths_are_taken_from_the_config_folder() {
        let loaded =
            load("[daemon]\nstate_dir = \"state\"\nsocket = \"state/drd.sock\"\n").unwrap();
        assert_eq!(loaded.config.daemon.state_dir, Path::new("/etc/drd/state"));
        assert_eq!(
            loaded.config.daemon.socket,
            Path::new("/etc/drd/state/drd.sock")
        );
        let loaded = load(
            "[monitors.corruption]\nsqlite = [{ path = \"state/app.db\" }]\nprotected = [\"bin\"]\n",
        )
        .unwrap();
        let corruption = &loaded.config.monitors.corruption;
        assert_eq!(
            corruption.sqlite[0].path,
            Path::new("/etc/drd/state/app.db")
        );
        assert_eq!(corruption.protected[0], Path::new("/etc/drd/bin"));
    }

    #[test]
    fn unknown_field_names_field_and_line() {
        let err = load("[daemon]\nlog_level = \"info\"\nsockett = \"/x\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("drd.toml:3"), "{text}");
        assert!(text.contains("sockett"), "{text}");
    }

    #[test]
    fn connection_limits_must_leave_room() {
        let err =
            load("[daemon]\nmax_connections_per_uid = 0\nreserved_connections = 0\n").unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected problems")
        };
        assert!(problems
            .iter()
            .any(|p| p.field == "daemon.max_connections_per_uid" && p.line == Some(2)));
        assert!(problems
            .iter()
            .any(|p| p.field == "daemon.reserved_connections" && p.line == Some(3)));
        let loaded = load("").unwrap();
        assert_eq!(loaded.config.daemon.max_connections_per_uid, 16);
        assert_eq!(loaded.config.daemon.reserved_connections, 8);
    }

    /// The keys are read when the config is loaded and held until the next load: a
    /// key file that goes away later does not stop what opens repositories, and a
    /// config without key files says so when keys are asked for.
    #[test]
    fn keys_are_read_once_per_load() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("main.key");
        drd_repo::generate_key_file(&key).unwrap();
        let loaded = load(&format!(
            "[keys]\nfiles = [{:?}]\n",
            key.display().to_string()
        ))
        .unwrap();
        std::fs::remove_file(&key).unwrap();
        assert!(loaded.keys().is_ok());
        assert!(
            format!("{:?}", loaded.keys).contains(".."),
            "never the keys themselves"
        );

        let err = load("").unwrap().keys().err().unwrap();
        assert!(matches!(err, drd_repo::Error::NoKeys), "{err}");
    }

    #[test]
    fn bad_duration_says_how_to_write_one() {
        let err = load("[daemon]\nidle_timeout = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("\"30s\""), "{err}");
    }

    #[test]
    fn every_semantic_problem_is_listed() {
        let err = load(
            "[daemon]\nmax_connections = 0\nlog_level = \"loud\"\n\
             [roles]\nviewer = { users = [\"no-such-user-drd\"] }\n",
        )
        .unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected problems")
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems
            .iter()
            .any(|p| p.field == "roles.viewer.users[0]" && p.line == Some(5)));
        assert!(problems
            .iter()
            .any(|p| p.field == "daemon.max_connections" && p.line == Some(2)));
    }
}
