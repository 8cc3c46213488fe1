//! `[monitors.network]`: the targets the network monitor probes (TCP connect, HTTP
//! GET, DNS lookup) and the quorum that turns failing targets into a partition.
//!
//! A partition is declared when at least `quorum` targets fail for `hold`, and
//! cleared when at least `quorum` answer again for `clear_hold`. One failing target
//! is a finding about that target (its own check), never a partition.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::jobs::optional_duration;
use super::policy::{check_actions, ActionConfig};
use super::threshold::{Confirm, Direction, Rule};
use super::{humantime_serde_compat, Config};
use crate::probe::Probe;

/// The `[monitors.network]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// What to probe.
    pub targets: Vec<TargetConfig>,
    /// How many targets must fail for a partition (and answer again to end it).
    pub quorum: Quorum,
    /// How long a quorum must fail before a partition is declared (and a target
    /// must fail before its own check fires).
    #[serde(with = "humantime_serde_compat")]
    pub hold: Duration,
    /// How long a quorum must answer again before the partition is cleared; default
    /// `hold`.
    #[serde(default, with = "optional_duration")]
    pub clear_hold: Option<Duration>,
    /// How often targets are probed unless a target names its own.
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    /// How long a probe may take unless a target names its own.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// What a partition does.
    pub on_fire: Vec<ActionConfig>,
    /// What a single failing target does; nothing by default (the finding is in the
    /// audit log and `drctl monitors`).
    pub on_target_fire: Vec<ActionConfig>,
}

/// The default `hold`.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(60);
/// The default probe `timeout`.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            targets: Vec::new(),
            quorum: Quorum::Majority,
            hold: DEFAULT_HOLD,
            clear_hold: None,
            interval: super::monitors::DEFAULT_MONITOR_INTERVAL,
            timeout: DEFAULT_PROBE_TIMEOUT,
            on_fire: Vec::new(),
            on_target_fire: Vec::new(),
        }
    }
}

/// `quorum = "majority"` or a number of targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quorum {
    /// More than half of the targets.
    #[default]
    Majority,
    /// This many targets.
    Count(usize),
}

impl<'de> Deserialize<'de> for Quorum {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Quorum, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Quorum;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"majority\" or a number of targets")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quorum, E> {
                match v {
                    "majority" => Ok(Quorum::Majority),
                    _ => Err(E::custom(format!(
                        "{v:?} is not a quorum; write \"majority\" or a number like 2"
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quorum, E> {
                usize::try_from(v)
                    .map(Quorum::Count)
                    .map_err(|_| E::custom(format!("{v} is not a number of targets")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quorum, E> {
                usize::try_from(v)
                    .map(Quorum::Count)
                    .map_err(|_| E::custom(format!("{v} is not a number of targets")))
            }
        }
        de.deserialize_any(V)
    }
}

/// One target: `"tcp://10.0.0.1:22"`, or a table with a `name` and its own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    /// Its name in check names (`target NAME`); default its URL.
    pub name: Option<String>,
    /// `tcp://host:port`, `http://...`, `https://...` or `dns://host`.
    pub url: String,
    /// Its own probe timeout.
    pub timeout: Option<Duration>,
    /// Its own interval.
    pub interval: Option<Duration>,
    /// http: the status that counts as an answer (any 2xx when not given).
    pub expect_status: Option<u16>,
}

/// The table form of a target.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetTable {
    name: Option<String>,
    url: String,
    #[serde(default, with = "optional_duration")]
    timeout: Option<Duration>,
    #[serde(default, with = "optional_duration")]
    interval: Option<Duration>,
    expect_status: Option<u16>,
}

impl<'de> Deserialize<'de> for TargetConfig {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<TargetConfig, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TargetConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a URL like \"tcp://10.0.0.1:22\" or a table with name and url")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TargetConfig, E> {
                Ok(TargetConfig {
                    name: None,
                    url: v.to_owned(),
                    timeout: None,
                    interval: None,
                    expect_status: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TargetConfig, A::Error> {
                let t = TargetTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(TargetConfig {
                    name: t.name,
                    url: t.url,
                    timeout: t.timeout,
                    interval: t.interval,
                    expect_status: t.expect_status,
                })
            }
        }
        de.deserialize_any(V)
    }
}

impl TargetConfig {
    /// Its name: the configured one, or its URL.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.url)
    }

    /// What to probe, or what is wrong with the URL.
    pub fn probe(&self) -> Result<Probe, String> {
        match (Probe::parse_target(&self.url)?, self.expect_status) {
            (Probe::Http { url, .. }, expect_status) => Ok(Probe::Http { url, expect_status }),
            (_, Some(_)) => {
                Err("expect_status is read only by http:// and https:// targets".to_owned())
            }
            (probe, None) => Ok(probe),
        }
    }
}

impl NetworkConfig {
    /// How many failing targets make a partition.
    pub fn quorum(&self) -> usize {
        match self.quorum {
            Quorum::Majority => self.targets.len() / 2 + 1,
            Quorum::Count(n) => n,
        }
    }

    /// The `partition` check's rule over the number of failing targets: fires at
    /// `quorum` failing for `hold`, clears once `quorum` answer (`n - quorum` or
    /// fewer failing) for `clear_hold`.
    pub fn partition_rule(&self) -> Rule {
        let quorum = self.quorum();
        Rule {
            direction: Direction::Above,
            fire: quorum as f64,
            clear: self.targets.len().saturating_sub(quorum) as f64,
            confirm: Confirm::For(millis(self.hold)),
            clear_confirm: Some(Confirm::For(millis(self.clear_hold()))),
        }
    }

    /// A `target NAME` check's rule: fires when it fails for `hold`, clears when it
    /// answers for `clear_hold`.
    pub fn target_rule(&self) -> Rule {
        Rule {
            direction: Direction::Above,
            fire: 1.0,
            clear: 0.0,
            confirm: Confirm::For(millis(self.hold)),
            clear_confirm: Some(Confirm::For(millis(self.clear_hold()))),
        }
    }

    /// The clear hold in force.
    pub fn clear_hold(&self) -> Duration {
        self.clear_hold.unwrap_or(self.hold)
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn problems(config: &Config, problem: &mut dyn FnMut(&str, String)) {
    let network = &config.monitors.network;
    let at = |rest: &str| format!("monitors.network.{rest}");
    for (key, value) in [("interval", network.interval), ("timeout", network.timeout)] {
        if value.is_zero() {
            problem(&at(key), "must be longer than zero".to_owned());
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, target) in network.targets.iter().enumerate() {
        let field = at(&format!("targets[{i}]"));
        if let Err(message) = target.probe() {
            problem(&field, message);
        }
        if let Some(status) = target.expect_status {
            if !(100..=599).contains(&status) {
                problem(
                    &field,
                    format!("expect_status {status} is not an HTTP status; use 100 to 599"),
                );
            }
        }
        if [target.timeout, target.interval]
            .iter()
            .any(|d| d.is_some_and(|d| d.is_zero()))
        {
            problem(
                &field,
                "timeout and interval must be longer than zero".to_owned(),
            );
        }
        if target.name.as_deref() == Some("") {
            problem(&field, "name must not be empty".to_owned());
        }
        if !names.insert(target.name()) {
            problem(
                &field,
                format!(
                    "a second target named {:?}; give each its own name",
                    target.name()
                ),
            );
        }
    }
    let n = network.targets.len();
    if let Quorum::Count(q) = network.quorum {
        if q == 0 {
            problem(&at("quorum"), "must be at least 1".to_owned());
        } else if q > n {
            problem(
                &at("quorum"),
                format!("{q} is bigger than the {n} targets; a partition could never be declared"),
            );
        } else if q * 2 <= n {
            problem(
                &at("quorum"),
                format!(
                    "{q} of {n} is not more than half: a partition and a quorum answering could hold at once; use \"majority\" or a number above {}",
                    n / 2
                ),
            );
        }
    }
    if n == 0 && !network.on_fire.is_empty() {
        problem(
            &at("targets"),
            "on_fire is set but there are no targets to probe".to_owned(),
        );
    }
    check_actions(config, &at("on_fire"), &network.on_fire, problem);
    check_actions(
        config,
        &at("on_target_fire"),
        &network.on_target_fire,
        problem,
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    use crate::config::problems_in as problems;

    #[test]
    fn strings_and_tables_load_and_the_rule_follows_the_quorum() {
        let text = r#"
            [monitors.network]
            targets = [
                "tcp://10.0.0.1:22",
                { name = "s3", url = "https://s3.example.net", expect_status = 403, timeout = "2s" },
                "dns://example.net",
            ]
            hold = "1m"
            clear_hold = "5m"
            on_fire = [{ alert = "critical" }]
        "#;
        assert_eq!(problems(text), Vec::<String>::new());
        let loaded = Config::load_str(Path::new("/etc/drd/drd.toml"), text).unwrap();
        let network = &loaded.config.monitors.network;
        assert_eq!(network.targets[1].name(), "s3");
        assert_eq!(network.targets[0].name(), "tcp://10.0.0.1:22");
        let rule = network.partition_rule();
        assert_eq!((rule.fire, rule.clear), (2.0, 1.0));
        assert_eq!(rule.confirm, Confirm::For(60_000));
        assert_eq!(rule.clear_confirm, Some(Confirm::For(300_000)));
        assert!(rule.validate().is_ok());
    }

    #[test]
    fn every_mistake_is_named() {
        let found = problems(
            r#"
            [monitors.network]
            targets = ["tcp://10.0.0.1", "ftp://x", { url = "dns://a.example", expect_status = 200 }, "dns://a.example"]
            quorum = 5
            interval = "0s"
            on_target_fire = [{ backup = ["ghost"] }]
        "#,
        );
        let has = |needle: &str| found.iter().any(|p| p.contains(needle));
        assert!(
            has("monitors.network.targets[0]: \"tcp://10.0.0.1\" names no port"),
            "{found:#?}"
        );
        assert!(
            has("monitors.network.targets[1]: \"ftp://x\": unknown scheme"),
            "{found:#?}"
        );
        assert!(
            has("monitors.network.targets[2]: expect_status is read only"),
            "{found:#?}"
        );
        assert!(
            has("monitors.network.targets[3]: a second target named"),
            "{found:#?}"
        );
        assert!(
            has("monitors.network.quorum: 5 is bigger than the 4 targets"),
            "{found:#?}"
        );
        assert!(
            has("monitors.network.interval: must be longer"),
            "{found:#?}"
        );
        assert!(
            has("monitors.network.on_target_fire[0].backup"),
            "{found:#?}"
        );

        let found =
            problems("[monitors.network]\ntargets = [\"dns://a\", \"dns://b\"]\nquorum = 1\n");
        assert!(found[0].contains("not more than half"), "{found:#?}");
        let found = problems("[monitors.network]\nquorum = \"most\"\n");
        assert!(found[0].contains("is not a quorum"), "{found:#?}");
    }
}
