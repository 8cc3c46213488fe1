//! Keys, tiers and backup jobs: what to back up, where to, and with which key.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::humantime_serde_compat;
use super::{HookConfig, TierConfig};

/// The `[keys]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// Fernet key files: the first encrypts new data, any of them decrypts.
    #[serde(default)]
    pub files: Vec<PathBuf>,
}

/// A `[jobs.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Tiers the job writes to, by name: the first is where backups land, the others
    /// are offsite copies kept in step by the replication worker.
    pub tiers: Vec<String>,
    /// What to back up.
    pub sources: Vec<SourceConfig>,
    /// When the scheduler runs the job: `hourly`, `daily`, `weekly`, `monthly` or a
    /// 5-field cron expression, in the host's local time. None: only on request.
    #[serde(default)]
    pub schedule: Option<String>,
    /// How far the scheduler may shift the job's start past the scheduled time, to
    /// spread jobs out; the shift is fixed per job name. Default: 2% of the period,
    /// at most 5 minutes. `"0s"` starts exactly on time.
    #[serde(default, with = "optional_duration")]
    pub jitter: Option<Duration>,
    /// Which snapshots to keep after each run and on `drctl prune`.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Shorthand for `retention.keep_within = "Nd"`: keep every snapshot of the last
    /// N days.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Run by `drctl backup emergency`.
    #[serde(default)]
    pub critical: bool,
    /// Order among jobs due at once and in an emergency backup: lower runs first.
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// Recovery point objective: the most data, in time, the job may lose. `drctl
    /// jobs` marks the job when its last good snapshot is older.
    #[serde(default, with = "optional_duration")]
    pub rpo: Option<Duration>,
    /// Commands run before the backup; one that fails or times out skips the run.
    #[serde(default)]
    pub before: Vec<HookConfig>,
    /// Commands run after the backup, whether it succeeded or failed (so they can
    /// undo what a `before` hook did).
    #[serde(default)]
    pub after: Vec<HookConfig>,
    /// A healthchecks.io-style URL: `URL/start` when a run begins, `URL` when it
    /// succeeds, `URL/fail` when it fails.
    pub ping_url: Option<String>,
}

/// The priority of a job that names none.
pub const DEFAULT_PRIORITY: i32 = 100;

fn default_priority() -> i32 {
    DEFAULT_PRIORITY
}

/// A job's `retention` table: which snapshots to keep. Rules are ORed; with none set
/// (and no `retention_days`) every snapshot is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// The newest n snapshots.
    #[serde(default)]
    pub keep_last: u32,
    /// The newest snapshot of each of the last n hours that have one.
    #[serde(default)]
    pub keep_hourly: u32,
    /// ... of each of the last n days.
    #[serde(default)]
    pub keep_daily: u32,
    /// ... of each of the last n weeks (Monday to Sunday).
    #[serde(default)]
    pub keep_weekly: u32,
    /// ... of each of the last n months.
    #[serde(default)]
    pub keep_monthly: u32,
    /// ... of each of the last n years.
    #[serde(default)]
    pub keep_yearly: u32,
    /// Every snapshot younger than this, like `"30d"`.
    #[serde(default, with = "optional_duration")]
    pub keep_within: Option<Duration>,
}

impl JobConfig {
    /// The retention policy in force: the `retention` table with `retention_days`
    /// folded in as `keep_within`.
    pub fn retention_policy(&self) -> drd_repo::Retention {
        let r = &self.retention;
        let days = self
            .retention_days
            .map(|d| Duration::from_secs(u64::from(d) * 86_400));
        drd_repo::Retention {
            keep_last: r.keep_last,
            keep_hourly: r.keep_hourly,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
            keep_within: r.keep_within.or(days),
        }
    }
}

/// Optional durations written like `"30s"`, or left out.
pub(super) mod optional_duration {
    use std::time::Duration;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        de: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::humantime_serde_compat::deserialize(de).map(Some)
    }
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
        /// What a database drill runs on the restored output to check it (no shell),
        /// such as `["pg_restore", "--list", "{file}"]`: `{file}` becomes the restored
        /// file's path; without it, the file is the command's standard input. Exit 0
        /// passes. Unset, the drill checks only that the output restores.
        #[serde(default)]
        drill_check: Vec<String>,
    },
    /// Docker containers, chosen by name or label: each one's `inspect` document
    /// (stored as `docker/NAME/inspect.json`) and the contents of its volumes and bind
    /// mounts (stored under their host paths), optionally paused or stopped meanwhile.
    Docker(DockerSource),
}

/// A `{ kind = "docker", ... }` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSource {
    /// Containers by name or id; each must exist when the backup runs.
    #[serde(default)]
    pub containers: Vec<String>,
    /// Containers carrying every one of these labels (`key` or `key=value`).
    #[serde(default)]
    pub labels: Vec<String>,
    /// What is done to running containers while their data is read.
    #[serde(default)]
    pub consistency: DockerConsistency,
    /// With `consistency = "stop"`: how long a container may take to stop before
    /// Docker kills it (default 30s).
    #[serde(default, deserialize_with = "some_duration")]
    pub stop_timeout: Option<Duration>,
    /// Glob patterns for mount sources (host paths) to leave out, matched like a path
    /// source's `exclude`; a mount whose source matches is not stored at all.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// What a docker source does to running containers during the backup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DockerConsistency {
    /// Nothing: data is read while the container runs.
    #[default]
    None,
    /// `docker pause` (processes frozen, memory kept) until the backup ends.
    Pause,
    /// `docker stop` until the backup ends, then `docker start`.
    Stop,
}

fn some_duration<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    humantime_serde_compat::deserialize(de).map(Some)
}

impl DockerSource {
    /// How long a stop may take before Docker kills the container.
    pub fn stop_timeout(&self) -> Duration {
        self.stop_timeout.unwrap_or(Duration::from_secs(30))
    }
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
            SourceConfig::Command { .. } | SourceConfig::Docker(_) => {}
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
    super::tiers::check(tiers, jobs, problem);
    for (name, job) in jobs {
        let field = |rest: &str| format!("jobs.{name}.{rest}");
        if !valid_name(name) {
            problem(&format!("jobs.{name}"), NAME_RULE.to_owned());
        }
        if job.tiers.is_empty() {
            problem(
                &field("tiers"),
                "name at least one tier: the first is where backups land, the rest are \
                 offsite copies"
                    .to_owned(),
            );
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
        check_job_extras(job, &field, problem);
        let mut names = HashSet::new();
        for (i, source) in job.sources.iter().enumerate() {
            let here = field(&format!("sources[{i}]"));
            check_source(source, &here, &mut names, problem);
        }
    }
}

/// Checks schedule, retention and hooks.
fn check_job_extras(
    job: &JobConfig,
    field: &dyn Fn(&str) -> String,
    problem: &mut dyn FnMut(&str, String),
) {
    if let Some(schedule) = &job.schedule {
        if let Err(err) = super::schedule::Schedule::parse(schedule) {
            problem(&field("schedule"), err);
        }
    }
    if job.retention_days == Some(0) {
        problem(
            &field("retention_days"),
            "must be at least 1 (leave it out to keep every snapshot)".to_owned(),
        );
    }
    if job.retention_days.is_some() && job.retention.keep_within.is_some() {
        problem(
            &field("retention_days"),
            "retention_days is a shorthand for retention.keep_within; set one of them".to_owned(),
        );
    }
    if job.retention.keep_within.is_some_and(|d| d.is_zero()) {
        problem(
            &field("retention.keep_within"),
            "must be longer than zero".to_owned(),
        );
    }
    if job.rpo.is_some_and(|d| d.is_zero()) {
        problem(&field("rpo"), "must be longer than zero".to_owned());
    }
    for (kind, hooks) in [("before", &job.before), ("after", &job.after)] {
        for (i, hook) in hooks.iter().enumerate() {
            let example = r#"["systemctl", "stop", "app"]"#;
            hook.check(&field(&format!("{kind}[{i}]")), example, problem);
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
        SourceConfig::Command {
            name,
            run,
            timeout,
            drill_check,
        } => {
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
            if drill_check.first().is_some_and(String::is_empty) {
                problem(
                    field,
                    "drill_check must name a program, like [\"pg_restore\", \"--list\", \"{file}\"]"
                        .to_owned(),
                );
            }
        }
        SourceConfig::Docker(docker) => check_docker(docker, field, stored, problem),
    }
}

fn check_docker(
    docker: &DockerSource,
    field: &str,
    stored: &mut HashSet<String>,
    problem: &mut dyn FnMut(&str, String),
) {
    if docker.containers.is_empty() && docker.labels.is_empty() {
        problem(
            field,
            "name containers (containers = [\"web\"]) or labels (labels = \
             [\"com.example.backup=true\"]), or both"
                .to_owned(),
        );
    }
    for (i, name) in docker.containers.iter().enumerate() {
        let valid = name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            problem(
                &format!("{field}.containers[{i}]"),
                format!(
                    "{name:?} is not a Docker container name or id (letters, digits, \
                     '_', '.' and '-', starting with a letter or digit)"
                ),
            );
        } else if !stored.insert(format!("docker/{name}")) {
            problem(
                &format!("{field}.containers[{i}]"),
                format!("container {name:?} is named twice in this job"),
            );
        }
    }
    for (i, label) in docker.labels.iter().enumerate() {
        let key = label.split_once('=').map_or(label.as_str(), |(k, _)| k);
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            problem(
                &format!("{field}.labels[{i}]"),
                format!("{label:?} is not a label filter: write \"key\" or \"key=value\""),
            );
        }
    }
    match docker.stop_timeout {
        Some(_) if docker.consistency != DockerConsistency::Stop => {
            problem(
                &format!("{field}.stop_timeout"),
                "applies only with consistency = \"stop\"".to_owned(),
            );
        }
        Some(timeout) if timeout.is_zero() || timeout > Duration::from_secs(3600) => {
            problem(
                &format!("{field}.stop_timeout"),
                "must be longer than zero and at most 1h".to_owned(),
            );
        }
        _ => {}
    }
    for pattern in &docker.exclude {
        if let Err(err) = globset::Glob::new(pattern) {
            problem(field, format!("exclude pattern {pattern:?}: {err}"));
        }
    }
}

pub(super) const NAME_RULE: &str = "names may hold letters, digits, '.', '_' and '-' only";

pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, DockerConsistency, SourceConfig};

    fn problems(sources: &str) -> String {
        let text = format!(
            "[tiers.local]\nkind = \"dir\"\npath = \"/tmp/r\"\n\
             [jobs.app]\ntiers = [\"local\"]\nsources = [\n{sources}\n]\n"
        );
        match Config::load_str(Path::new("/etc/drd/drd.toml"), &text) {
            Ok(_) => String::new(),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn a_docker_source_reads_with_defaults() {
        let text = "[jobs.app]\ntiers = []\nsources = [{ kind = \"docker\", containers = [\"web\"], consistency = \"stop\", stop_timeout = \"45s\" }]\n";
        let config: Config = toml::from_str(text).unwrap();
        let SourceConfig::Docker(docker) = &config.jobs["app"].sources[0] else {
            panic!("not a docker source");
        };
        assert_eq!(docker.containers, ["web"]);
        assert_eq!(docker.consistency, DockerConsistency::Stop);
        assert_eq!(docker.stop_timeout().as_secs(), 45);
        let text =
            "[jobs.app]\ntiers = []\nsources = [{ kind = \"docker\", labels = [\"a=b\"] }]\n";
        let config: Config = toml::from_str(text).unwrap();
        let SourceConfig::Docker(docker) = &config.jobs["app"].sources[0] else {
            panic!("not a docker source");
        };
        assert_eq!(docker.consistency, DockerConsistency::None);
        assert_eq!(docker.stop_timeout().as_secs(), 30);
    }

    #[test]
    fn docker_source_mistakes_are_named() {
        let text = problems("{ kind = \"docker\" }");
        assert!(text.contains("sources[0]"), "{text}");
        assert!(text.contains("name containers"), "{text}");

        let text = problems("{ kind = \"docker\", containers = [\"/web\", \"db\", \"db\"] }");
        assert!(text.contains("containers[0]"), "{text}");
        assert!(text.contains("is not a Docker container name"), "{text}");
        assert!(text.contains("named twice"), "{text}");

        let text = problems("{ kind = \"docker\", labels = [\"=x\"], stop_timeout = \"5s\" }");
        assert!(text.contains("labels[0]"), "{text}");
        assert!(text.contains("stop_timeout"), "{text}");
        assert!(text.contains("only with consistency"), "{text}");

        let text =
            problems("{ kind = \"docker\", containers = [\"web\"], consistency = \"freeze\" }");
        assert!(text.contains("freeze"), "{text}");

        let text = problems("{ kind = \"docker\", containers = [\"web\"], volumes = true }");
        assert!(text.contains("volumes"), "{text}");
    }
}
