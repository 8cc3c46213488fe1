//! `[monitors.*]`: what the monitors sample, the thresholds that fire and clear each
//! check, and the actions a firing check takes.
//!
//! Each monitor is its own table; a check without `on_fire` takes its monitor's.

use std::time::Duration;

use serde::Deserialize;

use super::humantime_serde_compat;
use super::policy::{check_actions, ActionConfig};
use super::threshold::{Direction, ThresholdConfig};
use super::{Config, Problem};

/// The `[monitors]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorsConfig {
    /// `[monitors.resources]`: space, inodes, memory, swap, load, pressure, open files.
    pub resources: ResourcesConfig,
    /// `[monitors.corruption]`: SQLite checks, protected files, rolling repository
    /// verification.
    pub corruption: super::corruption::CorruptionConfig,
    /// `[monitors.network]`: probes to named targets; a partition when a quorum fails.
    pub network: super::network::NetworkConfig,
    /// `[monitors.services]`: each service's `health` behind a circuit breaker, and
    /// the cascade of critical services down at once.
    pub services: super::health::ServicesMonitorConfig,
}

/// The default sampling interval of a monitor.
pub const DEFAULT_MONITOR_INTERVAL: Duration = Duration::from_secs(30);

/// `[monitors.resources]`. Percentages are of the whole (used space of the mount's
/// size, available memory of the total); load is per core; pressure is the share of
/// time some task stalled over the last 10 seconds (`/proc/pressure`, `some avg10`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourcesConfig {
    /// How often the host is sampled.
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    /// Used space of a mount, in %: high is bad. Each entry names its `mount`.
    pub disk: Vec<ThresholdConfig>,
    /// Free inodes of a mount, in %: low is bad. Each entry names its `mount`.
    pub inodes: Vec<ThresholdConfig>,
    /// Memory available, in % of the total: low is bad.
    pub memory_available: Option<ThresholdConfig>,
    /// Swap used, in % of the total: high is bad.
    pub swap: Option<ThresholdConfig>,
    /// The 1-minute load average per core: high is bad.
    pub load: Option<ThresholdConfig>,
    /// Memory pressure (PSI some avg10), in %: high is bad.
    pub memory_pressure: Option<ThresholdConfig>,
    /// IO pressure (PSI some avg10), in %: high is bad.
    pub io_pressure: Option<ThresholdConfig>,
    /// Open files system-wide, in % of `fs.file-max`: high is bad.
    pub open_files: Option<ThresholdConfig>,
    /// What a firing check does unless it names its own `on_fire`.
    pub on_fire: Vec<ActionConfig>,
}

impl Default for ResourcesConfig {
    fn default() -> Self {
        ResourcesConfig {
            interval: DEFAULT_MONITOR_INTERVAL,
            disk: Vec::new(),
            inodes: Vec::new(),
            memory_available: None,
            swap: None,
            load: None,
            memory_pressure: None,
            io_pressure: None,
            open_files: None,
            on_fire: Vec::new(),
        }
    }
}

/// One resource check as the config names it: its kind, the mount for per-mount
/// kinds, and which side of its thresholds is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// Used space %.
    Disk,
    /// Free inodes %.
    Inodes,
    /// Memory available %.
    MemoryAvailable,
    /// Swap used %.
    Swap,
    /// Load per core.
    Load,
    /// Memory pressure %.
    MemoryPressure,
    /// IO pressure %.
    IoPressure,
    /// Open files % of the maximum.
    OpenFiles,
}

impl ResourceKind {
    /// The key in `[monitors.resources]`.
    pub fn key(self) -> &'static str {
        match self {
            ResourceKind::Disk => "disk",
            ResourceKind::Inodes => "inodes",
            ResourceKind::MemoryAvailable => "memory_available",
            ResourceKind::Swap => "swap",
            ResourceKind::Load => "load",
            ResourceKind::MemoryPressure => "memory_pressure",
            ResourceKind::IoPressure => "io_pressure",
            ResourceKind::OpenFiles => "open_files",
        }
    }

    /// Which side of the thresholds is bad.
    pub fn direction(self) -> Direction {
        match self {
            ResourceKind::Inodes | ResourceKind::MemoryAvailable => Direction::Below,
            _ => Direction::Above,
        }
    }

    /// Whether entries name a mount.
    pub fn per_mount(self) -> bool {
        matches!(self, ResourceKind::Disk | ResourceKind::Inodes)
    }

    /// Whether the value is a percentage (0 to 100).
    pub fn percent(self) -> bool {
        self != ResourceKind::Load
    }
}

impl ResourcesConfig {
    /// Every configured check with its kind and its config field
    /// (`monitors.resources.disk[0]`).
    pub fn checks(&self) -> Vec<(ResourceKind, String, &ThresholdConfig)> {
        let mut checks = Vec::new();
        for (kind, list) in [
            (ResourceKind::Disk, &self.disk),
            (ResourceKind::Inodes, &self.inodes),
        ] {
            for (i, check) in list.iter().enumerate() {
                checks.push((
                    kind,
                    format!("monitors.resources.{}[{i}]", kind.key()),
                    check,
                ));
            }
        }
        for (kind, check) in [
            (ResourceKind::MemoryAvailable, &self.memory_available),
            (ResourceKind::Swap, &self.swap),
            (ResourceKind::Load, &self.load),
            (ResourceKind::MemoryPressure, &self.memory_pressure),
            (ResourceKind::IoPressure, &self.io_pressure),
            (ResourceKind::OpenFiles, &self.open_files),
        ] {
            if let Some(check) = check {
                checks.push((kind, format!("monitors.resources.{}", kind.key()), check));
            }
        }
        checks
    }

    /// What `check` does when it fires.
    pub fn actions<'a>(&'a self, check: &'a ThresholdConfig) -> &'a [ActionConfig] {
        check.on_fire.as_deref().unwrap_or(&self.on_fire)
    }
}

pub(super) fn problems(config: &Config, text: &str) -> Vec<Problem> {
    let mut found = Vec::new();
    let mut problem = |field: &str, message: String| {
        found.push(Problem {
            field: field.to_owned(),
            line: super::locate::line_of(text, field),
            message,
        });
    };
    super::network::problems(config, &mut problem);
    super::health::problems(config, &mut problem);
    let resources = &config.monitors.resources;
    if resources.interval.is_zero() {
        problem(
            "monitors.resources.interval",
            "must be longer than zero (30s is the default)".to_owned(),
        );
    }
    check_actions(
        config,
        "monitors.resources.on_fire",
        &resources.on_fire,
        &mut problem,
    );
    for (kind, field, check) in resources.checks() {
        match (&check.mount, kind.per_mount()) {
            (None, true) => problem(
                &field,
                format!(
                    "{} checks name their mount, like mount = \"/var\"",
                    kind.key()
                ),
            ),
            (Some(_), false) => problem(
                &format!("{field}.mount"),
                format!("{} is not per mount; leave mount out", kind.key()),
            ),
            (Some(mount), true) if !mount.is_absolute() => problem(
                &format!("{field}.mount"),
                format!("{} is not an absolute path", mount.display()),
            ),
            _ => {}
        }
        if let Err(message) = check.rule(kind.direction()) {
            problem(&field, message);
        }
        if kind.percent() {
            for (name, level) in [("fire", check.fire.0), ("clear", check.clear.0)] {
                if !(0.0..=100.0).contains(&level) {
                    problem(
                        &format!("{field}.{name}"),
                        format!("{level} is not a percentage; use 0% to 100%"),
                    );
                }
            }
        }
        if let Some(actions) = &check.on_fire {
            check_actions(config, &format!("{field}.on_fire"), actions, &mut problem);
        }
    }
    super::corruption::problems(config, &mut problem);
    found
}

#[cfg(test)]
mod tests {

    use crate::config::problems_in as problems;

    #[test]
    fn a_good_resources_table_loads() {
        let text = r#"
            [monitors.resources]
            interval = "10s"
            disk = [{ mount = "/var", fire = "95%", clear = "90%", for = "2m" }]
            inodes = [{ mount = "/", fire = "5%", clear = "10%" }]
            memory_available = { fire = "5%", clear = "10%", samples = "3 of 5" }
            load = { fire = 4.0, clear = 2.0 }
            on_fire = [{ alert = "warning" }]
        "#;
        assert_eq!(problems(text), Vec::<String>::new());
    }

    #[test]
    fn every_mistake_is_named() {
        let text = r#"
            [monitors.resources]
            disk = [{ fire = "95%", clear = "96%" }]
            memory_available = { mount = "/", fire = "5%", clear = "10%", for = "1m", samples = "3 of 5" }
            swap = { fire = "150%", clear = "50%", on_fire = [{ backup = ["nope"] }] }
            on_fire = [{ shutdown = "resource_exhaustion", only = ["ghost"] }]
        "#;
        let found = problems(text);
        let has = |needle: &str| found.iter().any(|p| p.contains(needle));
        assert!(
            has("monitors.resources.disk[0]: disk checks name their mount"),
            "{found:#?}"
        );
        assert!(
            has("monitors.resources.disk[0]: clear (96) must be below fire (95)"),
            "{found:#?}"
        );
        assert!(
            has("memory_available.mount: memory_available is not per mount"),
            "{found:#?}"
        );
        assert!(
            has("monitors.resources.memory_available: give either for or samples"),
            "{found:#?}"
        );
        assert!(has("swap.fire: 150 is not a percentage"), "{found:#?}");
        assert!(
            has("swap.on_fire[0].backup: no job named \"nope\""),
            "{found:#?}"
        );
        assert!(
            has("monitors.resources.on_fire[0].only: no service named \"ghost\""),
            "{found:#?}"
        );
    }
}
