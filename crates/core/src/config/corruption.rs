//! `[monitors.corruption]`: what the corruption monitor checks and how often.
//!
//! Three kinds of check share one worker that wakes every `interval`; each kind has
//! its own cadence, because their costs differ by orders of magnitude: SQLite's
//! `quick_check` (hourly) and `integrity_check` (daily) per database, a BLAKE3 manifest
//! of the protected paths (hourly), and the rolling read of every repository pack,
//! which spends at most `verify_budget` bytes per wake.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::hook::HookConfig;
use super::humantime_serde_compat;
use super::policy::{check_actions, ActionConfig};
use super::Config;

/// How often the corruption monitor wakes by default.
pub const DEFAULT_CORRUPTION_INTERVAL: Duration = Duration::from_secs(60);
/// How long an `expected_change` hook may run when it names no timeout.
pub const EXPECTED_CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The `[monitors.corruption]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorruptionConfig {
    /// How often the worker wakes; the cadences below decide what runs.
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    /// SQLite databases to check.
    pub sqlite: Vec<SqliteCheckConfig>,
    /// How often each database gets `PRAGMA quick_check` (unless it names its own).
    #[serde(with = "humantime_serde_compat")]
    pub quick_check_every: Duration,
    /// How often each database gets the slower `PRAGMA integrity_check`.
    #[serde(with = "humantime_serde_compat")]
    pub integrity_check_every: Duration,
    /// Files and folders (every file below them) whose content must not change
    /// unexpectedly.
    pub protected: Vec<PathBuf>,
    /// How often the protected files are hashed.
    #[serde(with = "humantime_serde_compat")]
    pub protected_every: Duration,
    /// The command that says whether changed protected files were expected (exit 0);
    /// the changed paths go to its stdin, one per line.
    pub expected_change: Option<HookConfig>,
    /// Read every pack of every tier a job writes to, a budget at a time.
    pub verify: bool,
    /// Every pack is read at least once within this time.
    #[serde(with = "humantime_serde_compat")]
    pub verify_within: Duration,
    /// The most pack bytes read per wake, like `"256MiB"`.
    pub verify_budget: ByteSize,
    /// What a firing check does unless it names its own `on_fire`.
    pub on_fire: Vec<ActionConfig>,
}

impl Default for CorruptionConfig {
    fn default() -> Self {
        CorruptionConfig {
            interval: DEFAULT_CORRUPTION_INTERVAL,
            sqlite: Vec::new(),
            quick_check_every: HOUR,
            integrity_check_every: DAY,
            protected: Vec::new(),
            protected_every: HOUR,
            expected_change: None,
            verify: false,
            verify_within: 30 * DAY,
            verify_budget: ByteSize(256 << 20),
            on_fire: Vec::new(),
        }
    }
}

/// One database of `sqlite = [...]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteCheckConfig {
    /// The database file.
    pub path: PathBuf,
    /// Its own `quick_check` cadence.
    #[serde(default, with = "super::jobs::optional_duration")]
    pub quick_check_every: Option<Duration>,
    /// Its own `integrity_check` cadence.
    #[serde(default, with = "super::jobs::optional_duration")]
    pub integrity_check_every: Option<Duration>,
    /// Its own actions.
    pub on_fire: Option<Vec<ActionConfig>>,
}

impl CorruptionConfig {
    /// Makes relative paths absolute against `base` (the config file's folder).
    pub(super) fn resolve(&mut self, base: &std::path::Path) {
        for db in &mut self.sqlite {
            db.path = base.join(&db.path);
        }
        for path in &mut self.protected {
            *path = base.join(&*path);
        }
    }

    /// Whether the table asks for anything at all.
    pub fn is_empty(&self) -> bool {
        self.sqlite.is_empty() && self.protected.is_empty() && !self.verify
    }

    /// The `quick_check` and `integrity_check` cadences of `db`.
    pub fn cadences(&self, db: &SqliteCheckConfig) -> (Duration, Duration) {
        (
            db.quick_check_every.unwrap_or(self.quick_check_every),
            db.integrity_check_every
                .unwrap_or(self.integrity_check_every),
        )
    }

    /// What a finding about `db` does.
    pub fn sqlite_actions<'a>(&'a self, db: &'a SqliteCheckConfig) -> &'a [ActionConfig] {
        db.on_fire.as_deref().unwrap_or(&self.on_fire)
    }
}

/// A size in bytes, written `"256MiB"`, `"1GiB"`, `"500MB"` or as a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `text`; the message says how to write it.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            _ => return Err(format!("{text:?} is not a size; write it like \"256MiB\"")),
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a size; write it like \"256MiB\""))?;
        Ok(ByteSize((value * factor as f64) as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(de)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(text) => ByteSize::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// Every mistake in `[monitors.corruption]`, each with its field.
pub(super) fn problems(config: &Config, problem: &mut dyn FnMut(&str, String)) {
    let corruption = &config.monitors.corruption;
    for (field, value, default) in [
        ("interval", corruption.interval, "1m"),
        ("quick_check_every", corruption.quick_check_every, "1h"),
        (
            "integrity_check_every",
            corruption.integrity_check_every,
            "1d",
        ),
        ("protected_every", corruption.protected_every, "1h"),
        ("verify_within", corruption.verify_within, "30d"),
    ] {
        if value.is_zero() {
            problem(
                &format!("monitors.corruption.{field}"),
                format!("must be longer than zero ({default} is the default)"),
            );
        }
    }
    if corruption.verify_budget.0 == 0 {
        problem(
            "monitors.corruption.verify_budget",
            "must be more than zero bytes (256MiB is the default)".to_owned(),
        );
    }
    if corruption.verify && config.jobs.is_empty() {
        problem(
            "monitors.corruption.verify",
            "no job writes to any tier, so there is nothing to verify; add a job or leave \
             verify out"
                .to_owned(),
        );
    }
    check_actions(
        config,
        "monitors.corruption.on_fire",
        &corruption.on_fire,
        problem,
    );
    for (i, db) in corruption.sqlite.iter().enumerate() {
        // Relative paths were taken from the config file's folder by `resolve`.
        let field = format!("monitors.corruption.sqlite[{i}]");
        for (name, value) in [
            ("quick_check_every", db.quick_check_every),
            ("integrity_check_every", db.integrity_check_every),
        ] {
            if value.is_some_and(|v| v.is_zero()) {
                problem(
                    &format!("{field}.{name}"),
                    "must be longer than zero".to_owned(),
                );
            }
        }
        if let Some(actions) = &db.on_fire {
            check_actions(config, &format!("{field}.on_fire"), actions, problem);
        }
    }
    if let Some(hook) = &corruption.expected_change {
        hook.check(
            "monitors.corruption.expected_change",
            "run = [\"/usr/local/sbin/approve-change\"]",
            problem,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, ConfigError};

    fn load(text: &str) -> Result<Config, Vec<String>> {
        match Config::load_str(Path::new("/etc/drd/drd.toml"), text) {
            Ok(config) => Ok(config.config),
            Err(ConfigError::Invalid { problems, .. }) => Err(problems
                .into_iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect()),
            Err(err) => Err(vec![err.to_string()]),
        }
    }

    #[test]
    fn a_good_corruption_table_loads_with_its_defaults() {
        let text = r#"
            [monitors.corruption]
            sqlite = [{ path = "/var/lib/app/app.db" }, { path = "/var/lib/b.db", quick_check_every = "10m" }]
            protected = ["/usr/local/bin"]
            expected_change = { run = ["/usr/local/sbin/approve"] }
            on_fire = [{ alert = "critical" }]
        "#;
        let config = load(text).unwrap();
        let c = &config.monitors.corruption;
        assert_eq!(c.interval, Duration::from_secs(60));
        assert_eq!(c.cadences(&c.sqlite[0]), (HOUR, DAY));
        assert_eq!(c.cadences(&c.sqlite[1]).0, Duration::from_secs(600));
        assert_eq!(c.verify_within, 30 * DAY);
        assert_eq!(c.verify_budget, ByteSize(256 << 20));
        assert!(!c.verify);
        assert_eq!(c.sqlite_actions(&c.sqlite[0]).len(), 1);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(ByteSize::parse("256MiB"), Ok(ByteSize(256 << 20)));
        assert_eq!(ByteSize::parse("1 GiB"), Ok(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("500MB"), Ok(ByteSize(500_000_000)));
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        assert!(ByteSize::parse("lots").is_err());
        assert!(ByteSize::parse("5 parsecs").is_err());
    }

    #[test]
    fn every_mistake_is_named() {
        let text = r#"
            [monitors.corruption]
            interval = "0s"
            verify = true
            verify_budget = "0B"
            sqlite = [{ path = "app.db", on_fire = [{ backup = ["nope"] }] }]
            protected = ["etc/app"]
            expected_change = { run = [] }
        "#;
        let found = load(text).unwrap_err();
        let has = |needle: &str| found.iter().any(|p| p.contains(needle));
        for needle in [
            "monitors.corruption.interval: must be longer than zero",
            "monitors.corruption.verify: no job writes to any tier",
            "monitors.corruption.verify_budget: must be more than zero",
            "monitors.corruption.sqlite[0].on_fire[0].backup: no job named \"nope\"",
            "monitors.corruption.expected_change: run must name a program",
        ] {
            assert!(has(needle), "{needle} not in {found:#?}");
        }
    }
}
