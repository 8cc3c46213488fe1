//! The shutdown plan: which services stop, in which levels, with which signal and
//! timeout, which backup jobs run first, and how long it all can take.
//!
//! Levels follow the dependency graph: a service stops only after everything that
//! depends on it has stopped, so level 0 holds the services nothing depends on, and
//! a service's level is one more than the highest level of its dependants. Services
//! in one level stop in parallel. A rollback starts the levels in reverse.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use drd_proto::{PlannedHook, PlannedPreserve, PlannedService, ShutdownPhase, ShutdownPlan};

use drd_core::config::{Config, DriverKind, HookConfig, ServiceConfig, SERVICE_HOOK_TIMEOUT};

/// After SIGKILL (or `docker kill`), how long a service may take to disappear before
/// it is reported as not stopped (a process stuck in the kernel, say).
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// One service as the plan will stop it.
#[derive(Debug, Clone)]
pub struct Step {
    /// Its config.
    pub config: ServiceConfig,
    /// Its stop level (0 stops first).
    pub level: usize,
    /// How long it may take to stop before it is killed.
    pub timeout: Duration,
    /// Its dependencies that are in the plan too.
    pub depends_on: Vec<String>,
    /// Its dependants that are in the plan too.
    pub dependants: Vec<String>,
}

/// What a shutdown will do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Service names per level, first to stop first.
    pub levels: Vec<Vec<String>>,
    /// Every planned service.
    pub steps: BTreeMap<String, Step>,
    /// Preserve jobs in the order they run, each with the services that name it.
    pub preserve: Vec<(String, Vec<String>)>,
    /// Drain hooks in the order they run, with their service.
    pub drain: Vec<(String, HookConfig)>,
    /// Whether preserve and drain are skipped and timeouts shortened.
    pub force: bool,
    /// The preserve phase's deadline.
    pub preserve_deadline: Duration,
    /// Configured services left out by `--only`.
    pub left_out: Vec<String>,
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `--only` names a service the config does not have.
    #[error("no service named {0:?} in the config; `drctl shutdown --dry-run` lists them")]
    UnknownService(String),
    /// There is nothing to stop.
    #[error("no services are configured; add [services.NAME] tables to the config")]
    NoServices,
}

impl Plan {
    /// The plan for `config`: every service, or with `only` those services and
    /// everything that depends on them (a dependant cannot keep running without them).
    pub fn build(config: &Config, only: &[String], force: bool) -> Result<Plan, PlanError> {
        let services = &config.services;
        if services.is_empty() {
            return Err(PlanError::NoServices);
        }
        let mut dependants: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, service) in services {
            for dep in &service.depends_on {
                dependants.entry(dep).or_default().push(name);
            }
        }
        let selected: BTreeSet<&str> = if only.is_empty() {
            services.keys().map(String::as_str).collect()
        } else {
            let mut selected = BTreeSet::new();
            let mut todo: Vec<&str> = Vec::new();
            for name in only {
                let (name, _) = services
                    .get_key_value(name.as_str())
                    .ok_or_else(|| PlanError::UnknownService(name.clone()))?;
                todo.push(name);
            }
            while let Some(name) = todo.pop() {
                if selected.insert(name) {
                    todo.extend(dependants.get(name).into_iter().flatten());
                }
            }
            selected
        };

        let mut levels_of: BTreeMap<&str, usize> = BTreeMap::new();
        for name in &selected {
            level_of(name, &selected, &dependants, &mut levels_of);
        }
        let depth = levels_of.values().max().map_or(0, |l| l + 1);
        let mut levels = vec![Vec::new(); depth];
        let mut steps = BTreeMap::new();
        for (name, level) in &levels_of {
            levels[*level].push((*name).to_owned());
            let service = &services[*name];
            let mut timeout = service.stop_timeout();
            if force {
                timeout = timeout.min(config.shutdown.force_grace);
            }
            let in_plan = |names: Vec<&str>| -> Vec<String> {
                names
                    .into_iter()
                    .filter(|n| selected.contains(n))
                    .map(str::to_owned)
                    .collect()
            };
            steps.insert(
                (*name).to_owned(),
                Step {
                    config: service.clone(),
                    level: *level,
                    timeout,
                    depends_on: in_plan(service.depends_on.iter().map(String::as_str).collect()),
                    dependants: in_plan(dependants.get(name).cloned().unwrap_or_default()),
                },
            );
        }

        // Preserve jobs and drain hooks run in stop order, each job once.
        let mut preserve: Vec<(String, Vec<String>)> = Vec::new();
        let mut drain = Vec::new();
        if !force {
            for name in levels.iter().flatten() {
                let service = &services[name];
                for job in &service.preserve {
                    match preserve.iter_mut().find(|(j, _)| j == job) {
                        Some((_, names)) => names.push(name.clone()),
                        None => preserve.push((job.clone(), vec![name.clone()])),
                    }
                }
                drain.extend(service.drain.iter().map(|h| (name.clone(), h.clone())));
            }
        }
        Ok(Plan {
            levels,
            steps,
            preserve,
            drain,
            force,
            preserve_deadline: config.shutdown.preserve_deadline,
            left_out: services
                .keys()
                .filter(|n| !selected.contains(n.as_str()))
                .cloned()
                .collect(),
        })
    }

    /// The phases this plan runs.
    pub fn phases(&self) -> Vec<ShutdownPhase> {
        let mut phases = vec![ShutdownPhase::Assess];
        if !self.force {
            phases.extend([ShutdownPhase::Preserve, ShutdownPhase::Drain]);
        }
        phases.extend([
            ShutdownPhase::Stop,
            ShutdownPhase::Verify,
            ShutdownPhase::Done,
        ]);
        phases
    }

    /// The longest the shutdown can take if every step uses its full time: the
    /// preserve deadline, every drain hook's timeout (they run one after another),
    /// and per level the slowest stop timeout plus the wait after a kill.
    pub fn worst_case(&self) -> Duration {
        let preserve = if self.preserve.is_empty() {
            Duration::ZERO
        } else {
            self.preserve_deadline
        };
        let drain: Duration = self
            .drain
            .iter()
            .map(|(_, h)| h.timeout_or(SERVICE_HOOK_TIMEOUT))
            .sum();
        let stop: Duration = self
            .levels
            .iter()
            .map(|level| {
                level
                    .iter()
                    .map(|n| self.steps[n].timeout)
                    .max()
                    .unwrap_or_default()
                    + KILL_WAIT
            })
            .sum();
        preserve + drain + stop
    }

    /// The plan as `drctl shutdown --dry-run` shows it.
    pub fn to_wire(&self) -> ShutdownPlan {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        ShutdownPlan {
            phases: self.phases(),
            levels: self
                .levels
                .iter()
                .map(|level| {
                    level
                        .iter()
                        .map(|name| {
                            let step = &self.steps[name];
                            let c = &step.config;
                            PlannedService {
                                name: name.clone(),
                                driver: c.driver.as_str().to_owned(),
                                target: target(c),
                                depends_on: step.depends_on.clone(),
                                signal: match c.driver {
                                    DriverKind::Systemd => "unit's KillSignal".to_owned(),
                                    _ => c.stop_signal().to_owned(),
                                },
                                timeout_ms: ms(step.timeout),
                                critical: c.critical,
                                preserve: c.preserve.clone(),
                                can_start: c.driver != DriverKind::Process || !c.start.is_empty(),
                            }
                        })
                        .collect()
                })
                .collect(),
            preserve: self
                .preserve
                .iter()
                .map(|(job, services)| PlannedPreserve {
                    job: job.clone(),
                    services: services.clone(),
                })
                .collect(),
            drain: self
                .drain
                .iter()
                .map(|(service, hook)| PlannedHook {
                    service: service.clone(),
                    run: hook.run.clone(),
                    timeout_ms: ms(hook.timeout_or(SERVICE_HOOK_TIMEOUT)),
                })
                .collect(),
            preserve_deadline_ms: ms(self.preserve_deadline),
            worst_case_ms: ms(self.worst_case()),
            force: self.force,
            left_out: self.left_out.clone(),
        }
    }
}

/// What the driver acts on, for people.
pub fn target(c: &ServiceConfig) -> String {
    match c.driver {
        DriverKind::Process => c
            .pidfile
            .as_ref()
            .map(|p| format!("pidfile {}", p.display()))
            .unwrap_or_default(),
        DriverKind::Docker => format!("container {}", c.container.as_deref().unwrap_or("")),
        DriverKind::Compose => match &c.service {
            Some(service) => format!(
                "compose {} service {service}",
                c.project.as_deref().unwrap_or("")
            ),
            None => format!("compose project {}", c.project.as_deref().unwrap_or("")),
        },
        DriverKind::Systemd => format!("unit {}", c.unit.as_deref().unwrap_or("")),
    }
}

/// 0 for a service no selected service depends on, else one more than its highest
/// dependant. The config has no cycles (validation refuses them).
fn level_of<'a>(
    name: &'a str,
    selected: &BTreeSet<&'a str>,
    dependants: &BTreeMap<&'a str, Vec<&'a str>>,
    memo: &mut BTreeMap<&'a str, usize>,
) -> usize {
    if let Some(level) = memo.get(name) {
        return *level;
    }
    let level = dependants
        .get(name)
        .into_iter()
        .flatten()
        .filter(|d| selected.contains(*d))
        .map(|d| level_of(d, selected, dependants, memo) + 1)
        .max()
        .unwrap_or(0);
    memo.insert(name, level);
    level
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        Config::load_str(Path::new("/etc/drd/drd.toml"), text)
            .unwrap()
            .config
    }

    const GRAPH: &str = "
[services.lb]
driver = \"process\"
pidfile = \"/run/lb.pid\"
depends_on = [\"api\", \"web\"]
stop_timeout = \"5s\"
[services.api]
driver = \"process\"
pidfile = \"/run/api.pid\"
depends_on = [\"db\", \"cache\"]
stop_timeout = \"20s\"
[services.web]
driver = \"process\"
pidfile = \"/run/web.pid\"
depends_on = [\"cache\"]
[services.cache]
driver = \"process\"
pidfile = \"/run/cache.pid\"
stop_timeout = \"2s\"
[services.db]
driver = \"systemd\"
unit = \"db.service\"
depends_on = [\"disk\"]
stop_timeout = \"60s\"
[services.disk]
driver = \"process\"
pidfile = \"/run/disk.pid\"
";

    #[test]
    fn dependants_stop_before_what_they_depend_on() {
        let plan = Plan::build(&config(GRAPH), &[], false).unwrap();
        assert_eq!(
            plan.levels,
            vec![
                vec!["lb".to_owned()],
                vec!["api".to_owned(), "web".to_owned()],
                vec!["cache".to_owned(), "db".to_owned()],
                vec!["disk".to_owned()],
            ]
        );
        // 5 + 30 (web's default) + 60 + 30, plus the kill wait per level.
        assert_eq!(plan.worst_case(), Duration::from_secs(125 + 4 * 5));
    }

    #[test]
    fn only_takes_the_dependants_along_and_force_shortens() {
        let plan = Plan::build(&config(GRAPH), &["cache".to_owned()], true).unwrap();
        assert_eq!(
            plan.levels,
            vec![
                vec!["lb".to_owned()],
                vec!["api".to_owned(), "web".to_owned()],
                vec!["cache".to_owned()],
            ]
        );
        assert_eq!(plan.left_out, vec!["db".to_owned(), "disk".to_owned()]);
        assert_eq!(plan.steps["api"].timeout, Duration::from_secs(5));
        assert_eq!(plan.steps["cache"].timeout, Duration::from_secs(2));
        assert!(matches!(
            Plan::build(&config(GRAPH), &["nope".to_owned()], false),
            Err(PlanError::UnknownService(_))
        ));
    }
}
