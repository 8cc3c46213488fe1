//! `[drills]`: the recovery drills the `drills` worker runs, how often, where it may
//! write, and the RTO and RPO targets each category is held to.
//!
//! Targets default to the seeds' table (database 120 s / 60 s, service mesh 60 s / 0 s,
//! agents 120 s / 60 s, network 180 s / 120 s, storage 180 s / 60 s, authentication
//! 60 s / 0 s); a host whose backups run hourly should say so here, or its database
//! drills fail on RPO, which is the point of a target.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drd_proto::{Category, Scenario};
use serde::{Deserialize, Deserializer};

use super::humantime_serde_compat;
use super::{Config, Problem};

/// How often the drill loop runs when the config names no `interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// The `[drills]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrillsConfig {
    /// Whether the drill loop runs (`drctl test run` works either way).
    pub enabled: bool,
    /// How often the loop runs; each wait is jittered by up to a tenth either way, so
    /// hosts started together do not drill together.
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    /// The scenarios the loop runs (all by default).
    #[serde(deserialize_with = "scenarios")]
    pub scenarios: Vec<Scenario>,
    /// Where drills restore to; a folder of its own is made below it for each drill
    /// and removed afterwards. Default `STATE_DIR/drills`. Relative paths are taken
    /// from the config file's folder.
    pub sandbox: Option<PathBuf>,
    /// Free space a drill leaves on the sandbox's filesystem, in MiB: a restore that
    /// would leave less is refused before it starts.
    pub headroom_mib: u64,
    /// backup_validation also restores one snapshot picked at random from this
    /// window (besides the newest).
    #[serde(with = "humantime_serde_compat")]
    pub random_within: Duration,
    /// backup_validation read-verifies this share of every tier's packs (percent).
    pub verify_percent: f64,
    /// RTO and RPO targets by category.
    #[serde(deserialize_with = "targets")]
    pub targets: BTreeMap<Category, Target>,
}

/// One category's targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Longest acceptable recovery time.
    pub rto: Duration,
    /// Longest acceptable data-loss window.
    pub rpo: Duration,
}

impl Default for DrillsConfig {
    fn default() -> Self {
        DrillsConfig {
            enabled: true,
            interval: DEFAULT_INTERVAL,
            scenarios: Scenario::ALL.to_vec(),
            sandbox: None,
            headroom_mib: 512,
            random_within: Duration::from_secs(30 * 86_400),
            verify_percent: 5.0,
            targets: default_targets(),
        }
    }
}

impl DrillsConfig {
    /// Makes a relative `sandbox` absolute against `base` (the config file's folder).
    pub(super) fn resolve(&mut self, base: &Path) {
        if let Some(dir) = &mut self.sandbox {
            *dir = base.join(&*dir);
        }
    }

    /// Where drills restore to: `sandbox`, or `STATE_DIR/drills`.
    pub fn sandbox_dir(&self, state_dir: &Path) -> PathBuf {
        self.sandbox
            .clone()
            .unwrap_or_else(|| state_dir.join("drills"))
    }

    /// The targets `category` is held to.
    pub fn target(&self, category: Category) -> Target {
        self.targets
            .get(&category)
            .copied()
            .unwrap_or_else(|| default_target(category))
    }
}

/// The seeds' table, which the issue asked to keep as the defaults.
fn default_target(category: Category) -> Target {
    let (rto, rpo) = match category {
        Category::Database => (120, 60),
        Category::ServiceMesh => (60, 0),
        Category::Agents => (120, 60),
        Category::Network => (180, 120),
        Category::Storage => (180, 60),
        Category::Authentication => (60, 0),
    };
    Target {
        rto: Duration::from_secs(rto),
        rpo: Duration::from_secs(rpo),
    }
}

fn default_targets() -> BTreeMap<Category, Target> {
    Category::ALL
        .iter()
        .map(|&c| (c, default_target(c)))
        .collect()
}

fn scenarios<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<Scenario>, D::Error> {
    Vec::<String>::deserialize(de)?
        .iter()
        .map(|name| {
            Scenario::parse(name).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown scenario {name:?}; the scenarios are {}",
                    names(Scenario::ALL.iter().map(|s| s.as_str()))
                ))
            })
        })
        .collect()
}

/// `[drills.targets.CATEGORY] rto = "2m", rpo = "1m"`: either key may be left out,
/// keeping the default for it.
fn targets<'de, D: Deserializer<'de>>(de: D) -> Result<BTreeMap<Category, Target>, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Written {
        #[serde(default, deserialize_with = "some_duration")]
        rto: Option<Duration>,
        #[serde(default, deserialize_with = "some_duration")]
        rpo: Option<Duration>,
    }
    let written = BTreeMap::<String, Written>::deserialize(de)?;
    let mut targets = default_targets();
    for (name, w) in written {
        let category = Category::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown drill category {name:?}; the categories are {}",
                names(Category::ALL.iter().map(|c| c.as_str()))
            ))
        })?;
        let target = targets.entry(category).or_insert(default_target(category));
        if let Some(rto) = w.rto {
            target.rto = rto;
        }
        if let Some(rpo) = w.rpo {
            target.rpo = rpo;
        }
    }
    Ok(targets)
}

fn some_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    humantime_serde_compat::deserialize(de).map(Some)
}

fn names<'a>(all: impl Iterator<Item = &'a str>) -> String {
    all.collect::<Vec<_>>().join(", ")
}

/// What is wrong with `[drills]`: an interval too short to be meant, a percent out of
/// range, a sandbox that is not a folder of its own.
pub(super) fn problems(config: &Config, text: &str) -> Vec<Problem> {
    let drills = &config.drills;
    let mut found = Vec::new();
    let mut problem = |field: &str, message: String| {
        found.push(Problem::at(text, field.to_owned(), message));
    };
    if drills.interval < Duration::from_secs(60) {
        problem(
            "drills.interval",
            format!(
                "{} is shorter than a minute; drills restore real data, write \"6h\" \
                 (the default) or at least \"1m\"",
                humantime::format_duration(drills.interval)
            ),
        );
    }
    if !(drills.verify_percent > 0.0 && drills.verify_percent <= 100.0) {
        problem(
            "drills.verify_percent",
            format!(
                "{} is not a share of the packs; write a number above 0 and at most 100",
                drills.verify_percent
            ),
        );
    }
    if let Some(dir) = &drills.sandbox {
        if dir.parent().is_none() {
            problem(
                "drills.sandbox",
                "must be a folder of its own, not /: drills remove what they restore \
                 there"
                    .to_owned(),
            );
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::problems_in;
    use super::*;

    #[test]
    fn defaults_are_the_seeds_table_and_a_written_target_overrides_one_key() {
        let config = Config::load_str(
            Path::new("/etc/drd/drd.toml"),
            "[drills.targets.database]\nrpo = \"1h\"\n",
        )
        .unwrap();
        let drills = &config.config.drills;
        assert_eq!(drills.interval, DEFAULT_INTERVAL);
        assert_eq!(drills.scenarios.len(), Scenario::ALL.len());
        let db = drills.target(Category::Database);
        assert_eq!(db.rpo, Duration::from_secs(3600));
        assert_eq!(db.rto, Duration::from_secs(120), "rto keeps its default");
        assert_eq!(
            drills.target(Category::ServiceMesh).rpo,
            Duration::ZERO,
            "service mesh loses nothing"
        );
    }

    #[test]
    fn unknown_names_and_bad_numbers_are_refused_with_the_choices() {
        let found = problems_in("[drills]\nscenarios = [\"backup_validaton\"]\n");
        assert!(
            found[0].contains("backup_validation, database_recovery"),
            "{found:?}"
        );
        let found = problems_in("[drills.targets.databse]\nrto = \"1m\"\n");
        assert!(found[0].contains("authentication"), "{found:?}");
        let found = problems_in("[drills]\ninterval = \"5s\"\nverify_percent = 0.0\n");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("drills.interval"), "{found:?}");
    }
}
