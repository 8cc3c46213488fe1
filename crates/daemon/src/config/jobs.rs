//! Keys, tiers and backup jobs: what to back up, where to, and with which key.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::humantime_serde_compat;

/// The `[keys]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// Fernet key files: the first encrypts new data, any of them decrypts.
    #[serde(default)]
    pub files: Vec<PathBuf>,
}

/// A `[tiers.NAME]` table: one repository location.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// The kind of storage.
    pub kind: TierKind,
    /// For `dir`: the repository directory (created and initialized on first use).
    pub path: PathBuf,
}

/// Kinds of tier built so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TierKind {
    /// A directory on a local disk or a mount.
    Dir,
}

/// A `[jobs.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Tiers the job writes to, by name; the first is where backups land.
    pub tiers: Vec<String>,
    /// What to back up.
    pub sources: Vec<SourceConfig>,
}

/// One source of a job.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// Files and directories, stored under their absolute paths.
    Path {
        /// The file or directory.
        path: PathBuf,
        /// Glob patterns to leave out (matched against the absolute path, the path
        /// below `path`, and the bare name).
        #[serde(default)]
        exclude: Vec<String>,
    },
    /// A SQLite database, copied consistently with SQLite's online backup API while
    /// it stays in use; stored under its absolute path.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// The standard output of a command (pg_dump, mysqldump, ...), stored as
    /// `commands/NAME`. A non-zero exit or a timeout fails the backup.
    Command {
        /// The name it is stored under.
        name: String,
        /// The program and its arguments (no shell).
        run: Vec<String>,
        /// How long the command may run.
        #[serde(default = "default_command_timeout", with = "humantime_serde_compat")]
        timeout: Duration,
    },
}

fn default_command_timeout() -> Duration {
    Duration::from_secs(600)
}

impl SourceConfig {
    /// Makes relative paths absolute against `base`.
    pub(super) fn resolve(&mut self, base: &Path) {
        match self {
            SourceConfig::Path { path, .. } | SourceConfig::Sqlite { path } => {
                *path = base.join(&*path);
            }
            SourceConfig::Command { .. } => {}
        }
    }
}

/// Checks keys, tiers and jobs; `problem(field, message)` collects what is wrong.
pub(super) fn check(
    keys: &KeysConfig,
    tiers: &BTreeMap<String, TierConfig>,
    jobs: &BTreeMap<String, JobConfig>,
    problem: &mut dyn FnMut(&str, String),
) {
    if !jobs.is_empty() && keys.files.is_empty() {
        problem(
            "keys.files",
            "jobs need at least one key file; make one with `drd key generate --out /etc/drd/keys/main.key`".to_owned(),
        );
    }
    for (i, file) in keys.files.iter().enumerate() {
        if let Err(err) = drd_repo::KeySet::load(std::slice::from_ref(file)) {
            problem(&format!("keys.files[{i}]"), err.to_string());
        }
    }
    for (name, tier) in tiers {
        if !valid_name(name) {
            problem(&format!("tiers.{name}"), NAME_RULE.to_owned());
        }
        if tier.path.as_os_str().is_empty() {
            problem(
                &format!("tiers.{name}.path"),
                "must not be empty".to_owned(),
            );
        }
    }
    for (name, job) in jobs {
        let field = |rest: &str| format!("jobs.{name}.{rest}");
        if !valid_name(name) {
            problem(&format!("jobs.{name}"), NAME_RULE.to_owned());
        }
        match job.tiers.as_slice() {
            [] => problem(
                &field("tiers"),
                "name at least one tier to back up to".to_owned(),
            ),
            [_] => {}
            _ => problem(
                &field("tiers"),
                "this drd writes to one tier per job; replication to more tiers is not built yet"
                    .to_owned(),
            ),
        }
        for (i, tier) in job.tiers.iter().enumerate() {
            if !tiers.contains_key(tier) {
                problem(
                    &field(&format!("tiers[{i}]")),
                    format!("no tier named {tier:?}; define it as [tiers.{tier}]"),
                );
            }
        }
        if job.sources.is_empty() {
            problem(&field("sources"), "name at least one source".to_owned());
        }
        let mut names = HashSet::new();
        for (i, source) in job.sources.iter().enumerate() {
            let here = field(&format!("sources[{i}]"));
            check_source(source, &here, &mut names, problem);
        }
    }
}

fn check_source(
    source: &SourceConfig,
    field: &str,
    stored: &mut HashSet<String>,
    problem: &mut dyn FnMut(&str, String),
) {
    match source {
        SourceConfig::Path { exclude, path } => {
            for pattern in exclude {
                if let Err(err) = globset::Glob::new(pattern) {
                    problem(field, format!("exclude pattern {pattern:?}: {err}"));
                }
            }
            if !stored.insert(path.display().to_string()) {
                problem(field, format!("{} is listed twice", path.display()));
            }
        }
        SourceConfig::Sqlite { path } => {
            if !stored.insert(path.display().to_string()) {
                problem(field, format!("{} is listed twice", path.display()));
            }
        }
        SourceConfig::Command { name, run, timeout } => {
            if !valid_name(name) {
                problem(field, format!("name {name:?}: {NAME_RULE}"));
            }
            if !stored.insert(format!("commands/{name}")) {
                problem(field, format!("two command sources are named {name:?}"));
            }
            if run.is_empty() || run[0].is_empty() {
                problem(
                    field,
                    "run must name a program, like [\"pg_dump\", \"-Fc\", \"app\"]".to_owned(),
                );
            }
            if timeout.is_zero() {
                problem(field, "timeout must be longer than zero".to_owned());
            }
        }
    }
}

const NAME_RULE: &str = "names may hold letters, digits, '.', '_' and '-' only";

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
