//! `[services.NAME]` and `[shutdown]`: what the emergency shutdown stops, in which
//! order, and how.
//!
//! A service table is flat (`driver` plus the keys that driver reads) rather than an
//! internally tagged enum, because serde cannot combine a tag with
//! `deny_unknown_fields` on flattened tables; the checks below refuse keys that do
//! not belong to the chosen driver instead, naming the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::humantime_serde_compat;
use super::jobs::{valid_name, JobConfig, NAME_RULE};
use super::HookConfig;

/// How a service is stopped and started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// A Docker container, by name.
    Docker,
    /// The containers of a Compose project, found by their labels.
    Compose,
    /// A systemd unit, through systemctl.
    Systemd,
    /// A plain process, found by its pidfile.
    Process,
}

impl DriverKind {
    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            DriverKind::Docker => "docker",
            DriverKind::Compose => "compose",
            DriverKind::Systemd => "systemd",
            DriverKind::Process => "process",
        }
    }
}

/// A `[services.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// How the service is stopped and started.
    pub driver: DriverKind,
    /// process: the file holding the service's pid.
    pub pidfile: Option<PathBuf>,
    /// process: the command a rollback runs to start the service again (no shell).
    /// drd starts it in its own process group and does not wait for it to exit.
    #[serde(default)]
    pub start: Vec<String>,
    /// docker: the container's name or id.
    pub container: Option<String>,
    /// compose: the project name (label `com.docker.compose.project`).
    pub project: Option<String>,
    /// compose: only this service of the project (label `com.docker.compose.service`).
    pub service: Option<String>,
    /// systemd: the unit, such as `api.service`.
    pub unit: Option<String>,
    /// Services this one needs; they stop after it and start before it.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// How long the service may take to stop before it is killed. Default 30s; for
    /// systemd, the unit's own TimeoutStopSec applies and this only bounds the wait.
    #[serde(default, deserialize_with = "optional_duration")]
    pub stop_timeout: Option<Duration>,
    /// The first signal sent (process and docker). Default SIGTERM.
    pub stop_signal: Option<String>,
    /// A failed preserve job keeps a critical service (and what it depends on)
    /// running, unless the shutdown is forced.
    #[serde(default)]
    pub critical: bool,
    /// Backup jobs run before this service stops.
    #[serde(default)]
    pub preserve: Vec<String>,
    /// Commands run before any service stops (put the load balancer in maintenance,
    /// say).
    #[serde(default)]
    pub drain: Vec<HookConfig>,
    /// How drd asks whether the service is well (HTTP, TCP, a command, Docker
    /// health): a rollback waits for it, and the service monitor probes it behind a
    /// circuit breaker. See [`super::health`].
    pub health: Option<super::health::HealthConfig>,
    /// A command a recovery runs before it starts the service: exit 0 is a go, any
    /// other exit a no-go (nothing starts).
    pub validate: Option<HookConfig>,
    /// Commands a recovery runs once the service is back and healthy, undoing its
    /// `drain` (take the load balancer out of maintenance, say).
    #[serde(default)]
    pub undrain: Vec<HookConfig>,
    /// Drills may stop and start it again (service_recovery), timing until its health
    /// check passes; it then needs a `health`. Services not marked are never touched
    /// by a drill.
    #[serde(default)]
    pub drill: bool,
}

/// `stop_timeout` written like `"30s"`, or left out.
fn optional_duration<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Option<Duration>, D::Error> {
    humantime_serde_compat::deserialize(de).map(Some)
}

/// The default for `stop_timeout`.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// What systemd waits by default (DefaultTimeoutStopSec), used in plans when a
/// systemd service names no `stop_timeout`.
pub const SYSTEMD_DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(90);

impl ServiceConfig {
    /// The stop timeout in force (the configured one or the driver's default).
    pub fn stop_timeout(&self) -> Duration {
        self.stop_timeout.unwrap_or(match self.driver {
            DriverKind::Systemd => SYSTEMD_DEFAULT_STOP_TIMEOUT,
            _ => DEFAULT_STOP_TIMEOUT,
        })
    }

    /// The first signal's name (`SIGTERM` unless configured).
    pub fn stop_signal(&self) -> &str {
        self.stop_signal.as_deref().unwrap_or("SIGTERM")
    }

    /// Makes relative paths absolute against `base`.
    pub(super) fn resolve(&mut self, base: &Path) {
        if let Some(pidfile) = &mut self.pidfile {
            *pidfile = base.join(&*pidfile);
        }
    }
}

/// The `[shutdown]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// With `--force`: how long each service gets after its first signal before it
    /// is killed (replaces every longer `stop_timeout`).
    #[serde(with = "humantime_serde_compat")]
    pub force_grace: Duration,
    /// How long the preserve phase may take in all; jobs still running then are
    /// cancelled and count as failed.
    #[serde(with = "humantime_serde_compat")]
    pub preserve_deadline: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            force_grace: Duration::from_secs(5),
            preserve_deadline: Duration::from_secs(600),
        }
    }
}

/// Every problem with `[services]` and `[shutdown]`, located in `text`.
pub(super) fn problems(config: &super::Config, text: &str) -> Vec<super::Problem> {
    let mut found = Vec::new();
    check(
        &config.services,
        &config.shutdown,
        &config.jobs,
        &mut |field: &str, message: String| {
            found.push(super::Problem {
                field: field.to_owned(),
                line: super::locate::line_of(text, field),
                message,
            });
        },
    );
    found
}

/// Checks services; `problem(field, message)` collects what is wrong.
fn check(
    services: &BTreeMap<String, ServiceConfig>,
    shutdown: &ShutdownConfig,
    jobs: &BTreeMap<String, JobConfig>,
    problem: &mut dyn FnMut(&str, String),
) {
    if shutdown.force_grace.is_zero() {
        problem(
            "shutdown.force_grace",
            "must be longer than zero".to_owned(),
        );
    }
    if shutdown.preserve_deadline.is_zero() {
        problem(
            "shutdown.preserve_deadline",
            "must be longer than zero".to_owned(),
        );
    }
    for (name, service) in services {
        let field = |rest: &str| format!("services.{name}.{rest}");
        if !valid_name(name) {
            problem(&format!("services.{name}"), NAME_RULE.to_owned());
        }
        check_driver_keys(service, &field, problem);
        for (i, dep) in service.depends_on.iter().enumerate() {
            if dep == name {
                problem(
                    &field(&format!("depends_on[{i}]")),
                    "a service cannot depend on itself".to_owned(),
                );
            } else if !services.contains_key(dep) {
                problem(
                    &field(&format!("depends_on[{i}]")),
                    format!("no service named {dep:?}; define it as [services.{dep}]"),
                );
            }
        }
        for (i, job) in service.preserve.iter().enumerate() {
            if !jobs.contains_key(job) {
                problem(
                    &field(&format!("preserve[{i}]")),
                    format!("no backup job named {job:?}; define it as [jobs.{job}]"),
                );
            }
        }
        if service.drill && service.health.is_none() {
            problem(
                &field("drill"),
                "a drilled service needs a health check, or the drill cannot tell when \
                 it is back; add health = { http = \"http://127.0.0.1:PORT/health\" } \
                 (or tcp, command, docker)"
                    .to_owned(),
            );
        }
        if service.stop_timeout.is_some_and(|t| t.is_zero()) {
            problem(
                &field("stop_timeout"),
                "must be longer than zero".to_owned(),
            );
        }
        if let Some(signal) = &service.stop_signal {
            if nix::sys::signal::Signal::from_str(signal).is_err() {
                problem(
                    &field("stop_signal"),
                    format!(
                        "{signal:?} is not a signal name; write it like \"SIGTERM\" or \"SIGINT\""
                    ),
                );
            }
        }
        // `health` is checked with [monitors.services] (config/health.rs).
        let hooks = service
            .drain
            .iter()
            .enumerate()
            .map(|(i, h)| (format!("drain[{i}]"), h, "lb drain"))
            .chain(
                service
                    .undrain
                    .iter()
                    .enumerate()
                    .map(|(i, h)| (format!("undrain[{i}]"), h, "lb undrain")),
            )
            .chain(
                service
                    .validate
                    .iter()
                    .map(|h| ("validate".to_owned(), h, "app check")),
            );
        // Each hook's example: `["/usr/local/bin/PROGRAM", "ARG"]`.
        for (at, hook, example) in hooks {
            let (program, arg) = example.split_once(' ').unwrap_or((example, ""));
            let example = format!(r#"["/usr/local/bin/{program}", "{arg}"]"#);
            hook.check(&field(&at), &example, problem);
        }
    }
    if let Some(cycle) = find_cycle(services) {
        let at = format!("services.{}.depends_on", cycle[0]);
        problem(&at, format!("dependency cycle: {}", cycle.join(" -> ")));
    }
}

/// Refuses keys the chosen driver does not read, and asks for the ones it needs.
fn check_driver_keys(
    service: &ServiceConfig,
    field: &dyn Fn(&str) -> String,
    problem: &mut dyn FnMut(&str, String),
) {
    let driver = service.driver.as_str();
    let keys: [(&str, bool); 6] = [
        ("pidfile", service.pidfile.is_some()),
        ("start", !service.start.is_empty()),
        ("container", service.container.is_some()),
        ("project", service.project.is_some()),
        ("service", service.service.is_some()),
        ("unit", service.unit.is_some()),
    ];
    let (needed, allowed): (&[&str], &[&str]) = match service.driver {
        DriverKind::Process => (&["pidfile"], &["pidfile", "start"]),
        DriverKind::Docker => (&["container"], &["container"]),
        DriverKind::Compose => (&["project"], &["project", "service"]),
        DriverKind::Systemd => (&["unit"], &["unit"]),
    };
    for (key, present) in keys {
        if present && !allowed.contains(&key) {
            problem(
                &field(key),
                format!(
                    "the {driver} driver does not read {key}; it takes {}",
                    allowed.join(", ")
                ),
            );
        }
        if !present && needed.contains(&key) {
            problem(&field("driver"), format!("the {driver} driver needs {key}"));
        }
    }
    if service.driver == DriverKind::Systemd && service.stop_signal.is_some() {
        problem(
            &field("stop_signal"),
            "systemd units are stopped with their own KillSignal=; set it in the unit".to_owned(),
        );
    }
    if service.start.first().is_some_and(String::is_empty) {
        problem(&field("start"), "start must name a program".to_owned());
    }
}

/// A dependency cycle, as the names along it with the first repeated at the end
/// (`a -> b -> c -> a`), or `None`. Unknown names are skipped (reported elsewhere).
pub fn find_cycle(services: &BTreeMap<String, ServiceConfig>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        services: &'a BTreeMap<String, ServiceConfig>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        marks.insert(name, Mark::OnPath);
        path.push(name);
        for dep in &services[name].depends_on {
            let Some((dep, _)) = services.get_key_value(dep.as_str()) else {
                continue;
            };
            match marks.get(dep.as_str()).copied().unwrap_or(Mark::New) {
                Mark::OnPath => {
                    let start = path.iter().position(|n| *n == dep.as_str()).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|s| (*s).to_owned()).collect();
                    cycle.push(dep.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(cycle) = visit(dep, services, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(name, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for name in services.keys() {
        if marks.get(name.as_str()).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(cycle) = visit(name, services, &mut marks, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};
    use std::path::Path;

    fn problems(text: &str) -> Vec<crate::config::Problem> {
        match Config::load_str(Path::new("/etc/drd/drd.toml"), text) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn a_cycle_is_named_in_full_at_its_line() {
        let found = problems(
            "[services.a]\ndriver = \"process\"\npidfile = \"/run/a.pid\"\ndepends_on = [\"b\"]\n\
             [services.b]\ndriver = \"process\"\npidfile = \"/run/b.pid\"\ndepends_on = [\"c\"]\n\
             [services.c]\ndriver = \"process\"\npidfile = \"/run/c.pid\"\ndepends_on = [\"a\"]\n",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "services.a.depends_on");
        assert_eq!(found[0].line, Some(4));
        assert!(
            found[0].message.contains("a -> b -> c -> a"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn unknown_dependency_and_job_and_wrong_keys_are_located() {
        let found = problems(
            "[services.api]\ndriver = \"process\"\npidfile = \"/run/api.pid\"\n\
             depends_on = [\"db\"]\npreserve = [\"nightly\"]\ncontainer = \"x\"\n\
             [services.db]\ndriver = \"docker\"\nstop_signal = \"SIGBOGUS\"\n",
        );
        let fields: Vec<&str> = found.iter().map(|p| p.field.as_str()).collect();
        assert!(!fields.contains(&"services.api.depends_on[0]"), "{found:?}");
        assert!(fields.contains(&"services.api.preserve[0]"), "{found:?}");
        assert!(fields.contains(&"services.api.container"), "{found:?}");
        assert!(fields.contains(&"services.db.driver"), "{found:?}");
        assert!(fields.contains(&"services.db.stop_signal"), "{found:?}");

        let found = problems(
            "[services.api]\ndriver = \"process\"\npidfile = \"/run/api.pid\"\ndepends_on = [\"dbx\"]\n",
        );
        assert_eq!(found[0].field, "services.api.depends_on[0]");
        assert_eq!(found[0].line, Some(4));
        assert!(found[0].message.contains("\"dbx\""), "{}", found[0].message);
    }

    #[test]
    fn validate_and_undrain_hooks_are_checked_like_drain() {
        let found = crate::config::problems_in(
            "[services.api]\ndriver = \"process\"\npidfile = \"/run/api.pid\"\n\
             validate = { run = [] }\nundrain = [{ run = [\"/bin/lb\"] }, { run = [\"\"] }]\n",
        );
        assert_eq!(
            found,
            [
                "services.api.undrain[1]: run must name a program, like [\"/usr/local/bin/lb\", \"undrain\"]",
                "services.api.validate: run must name a program, like [\"/usr/local/bin/app\", \"check\"]",
            ]
        );
    }
}
