//! A service's `health` check and `[monitors.services]`: how drd asks whether a
//! service is well (an HTTP GET, a TCP connect, a command, or the container's Docker
//! health status), the circuit breaker the service monitor puts in front of it, and
//! the cascade that fires when several critical services are down at once.
//!
//! The same check is used by the service monitor (one probe per `interval`) and by
//! the emergency shutdown's rollback (which waits for a restarted service to become
//! healthy), through `drd_core::probe`. A table naming only `run` (and `timeout`) is
//! the command hook older configs wrote, and still means what it meant.

use std::time::Duration;

use serde::Deserialize;

use super::jobs::optional_duration;
use super::policy::{check_actions, ActionConfig};
use super::services::{DriverKind, ServiceConfig};
use super::threshold::Level;
use super::{humantime_serde_compat, Config};
use crate::probe::Probe;

/// How long one health probe may take, and how long a rollback waits in all for a
/// restarted service to become healthy, when `timeout` is not given.
pub const HEALTH_TIMEOUT: Duration = super::SERVICE_HOOK_TIMEOUT;

/// A service's `health` table: exactly one of `http`, `tcp`, `run`, `docker`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// GET this URL; healthy on `expect_status` (any 2xx when not given).
    pub http: Option<String>,
    /// Connect to this `host:port`; healthy when it accepts.
    pub tcp: Option<String>,
    /// Run this command (no shell); healthy when it exits 0.
    pub run: Option<Vec<String>>,
    /// The container's Docker health status: `true` for the service's own container
    /// (docker driver), or a container's name. Healthy when running and, if its image
    /// has a health check, `healthy`.
    pub docker: Option<DockerHealth>,
    /// How long one probe may take; also how long a rollback waits in all for the
    /// service to become healthy. Default 30s.
    #[serde(default, with = "optional_duration")]
    pub timeout: Option<Duration>,
    /// How often the service monitor probes it; default `[monitors.services]
    /// interval`.
    #[serde(default, with = "optional_duration")]
    pub interval: Option<Duration>,
    /// http: the status that counts as healthy.
    pub expect_status: Option<u16>,
    /// The circuit breaker in front of the probe.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// What the `service NAME` check does when its breaker opens; default
    /// `[monitors.services] on_fire`.
    pub on_fire: Option<Vec<ActionConfig>>,
}

/// `docker = true` or `docker = "container"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum DockerHealth {
    /// `true`: the service's own container; `false` is refused.
    Own(bool),
    /// A container by name or id.
    Named(String),
}

/// `breaker = { failures, failure_rate, window, open_for, max_open_for, trial_calls }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Failed probes in a row that open it.
    pub failures: u32,
    /// Opens it too when this share of the probes within `window` failed (`"50%"`),
    /// once the window holds at least `failures` probes. Off unless given.
    pub failure_rate: Option<Level>,
    /// The span `failure_rate` looks back over.
    #[serde(with = "humantime_serde_compat")]
    pub window: Duration,
    /// How long it stays open the first time; doubled at each reopening.
    #[serde(with = "humantime_serde_compat")]
    pub open_for: Duration,
    /// The longest it stays open.
    #[serde(with = "humantime_serde_compat")]
    pub max_open_for: Duration,
    /// Probes in half-open that must all succeed to close it.
    pub trial_calls: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 3,
            failure_rate: None,
            window: Duration::from_secs(60),
            open_for: Duration::from_secs(30),
            max_open_for: Duration::from_secs(600),
            trial_calls: 1,
        }
    }
}

impl HealthConfig {
    /// What to probe for `service`, or what is wrong with the table.
    pub fn probe(&self, service: &ServiceConfig) -> Result<Probe, String> {
        let kinds = [
            self.http.is_some(),
            self.tcp.is_some(),
            self.run.is_some(),
            self.docker.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(
                "name exactly one of http, tcp, run or docker, like http = \"http://127.0.0.1:8000/health\""
                    .to_owned(),
            );
        }
        if let Some(url) = &self.http {
            return match Probe::parse_target(url) {
                Ok(Probe::Http { url, .. }) => Ok(Probe::Http {
                    url,
                    expect_status: self.expect_status,
                }),
                Ok(_) => Err(format!("http: {url:?} is not an http:// or https:// URL")),
                Err(err) => Err(format!("http: {err}")),
            };
        }
        if self.expect_status.is_some() {
            return Err("expect_status is read only by http checks".to_owned());
        }
        if let Some(address) = &self.tcp {
            return match Probe::parse_target(&format!("tcp://{address}")) {
                Ok(probe) => Ok(probe),
                Err(_) => Err(format!(
                    "tcp: {address:?} is not host:port; write it like \"127.0.0.1:5432\""
                )),
            };
        }
        if let Some(argv) = &self.run {
            if argv.first().is_none_or(String::is_empty) {
                return Err(
                    "run must name a program, like [\"/usr/local/bin/check-api\"]".to_owned(),
                );
            }
            return Ok(Probe::Command { argv: argv.clone() });
        }
        match &self.docker {
            Some(DockerHealth::Named(name)) if !name.is_empty() => Ok(Probe::Docker {
                container: name.clone(),
            }),
            Some(DockerHealth::Own(true)) => match (&service.driver, &service.container) {
                (DriverKind::Docker, Some(container)) => Ok(Probe::Docker {
                    container: container.clone(),
                }),
                _ => Err(
                    "docker = true reads the container of a docker-driver service; name the container instead, like docker = \"web-1\""
                        .to_owned(),
                ),
            },
            _ => Err("docker is true or a container's name".to_owned()),
        }
    }

    /// The timeout in force.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(HEALTH_TIMEOUT)
    }
}

/// `[monitors.services]`: the service health monitor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServicesMonitorConfig {
    /// How often each service with a `health` table is probed unless it names its own
    /// `interval`.
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    /// What a `service NAME` check does when its breaker opens, unless the service's
    /// `health.on_fire` says otherwise.
    pub on_fire: Vec<ActionConfig>,
    /// Fires when enough critical services' breakers are open at once.
    pub cascade: Option<CascadeConfig>,
}

impl Default for ServicesMonitorConfig {
    fn default() -> Self {
        ServicesMonitorConfig {
            interval: super::monitors::DEFAULT_MONITOR_INTERVAL,
            on_fire: Vec::new(),
            cascade: None,
        }
    }
}

/// `cascade = { critical_open = 2, on_fire = [...] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeConfig {
    /// How many `critical = true` services' breakers must be open at once.
    pub critical_open: usize,
    /// What the cascade does when it fires.
    #[serde(default)]
    pub on_fire: Vec<ActionConfig>,
}

pub(super) fn problems(config: &Config, problem: &mut dyn FnMut(&str, String)) {
    let monitor = &config.monitors.services;
    if monitor.interval.is_zero() {
        problem(
            "monitors.services.interval",
            "must be longer than zero (30s is the default)".to_owned(),
        );
    }
    check_actions(
        config,
        "monitors.services.on_fire",
        &monitor.on_fire,
        problem,
    );
    for (name, service) in &config.services {
        let Some(health) = &service.health else {
            continue;
        };
        let field = |rest: &str| format!("services.{name}.health{rest}");
        if let Err(message) = health.probe(service) {
            problem(&field(""), message);
        }
        if let Some(status) = health.expect_status {
            if !(100..=599).contains(&status) {
                problem(
                    &field(".expect_status"),
                    format!("{status} is not an HTTP status; use 100 to 599"),
                );
            }
        }
        for (key, value) in [("timeout", health.timeout), ("interval", health.interval)] {
            if value.is_some_and(|v| v.is_zero()) {
                problem(
                    &field(&format!(".{key}")),
                    "must be longer than zero".to_owned(),
                );
            }
        }
        let breaker = &health.breaker;
        if breaker.failures == 0 {
            problem(
                &field(".breaker.failures"),
                "must be at least 1 (3 is the default)".to_owned(),
            );
        }
        if breaker.trial_calls == 0 {
            problem(
                &field(".breaker.trial_calls"),
                "must be at least 1 (1 is the default)".to_owned(),
            );
        }
        if let Some(rate) = breaker.failure_rate {
            if !(rate.0 > 0.0 && rate.0 <= 100.0) {
                problem(
                    &field(".breaker.failure_rate"),
                    format!(
                        "{} is not a share of probes; use more than 0% up to 100%",
                        rate.0
                    ),
                );
            }
        }
        for (key, value) in [
            ("window", breaker.window),
            ("open_for", breaker.open_for),
            ("max_open_for", breaker.max_open_for),
        ] {
            if value.is_zero() {
                problem(
                    &field(&format!(".breaker.{key}")),
                    "must be longer than zero".to_owned(),
                );
            }
        }
        if breaker.max_open_for < breaker.open_for {
            problem(
                &field(".breaker.max_open_for"),
                format!(
                    "must not be shorter than open_for ({})",
                    humantime::format_duration(breaker.open_for)
                ),
            );
        }
        if let Some(actions) = &health.on_fire {
            check_actions(config, &field(".on_fire"), actions, problem);
        }
    }
    if let Some(cascade) = &monitor.cascade {
        let critical: Vec<&str> = config
            .services
            .iter()
            .filter(|(_, s)| s.critical && s.health.is_some())
            .map(|(n, _)| n.as_str())
            .collect();
        if cascade.critical_open == 0 {
            problem(
                "monitors.services.cascade.critical_open",
                "must be at least 1".to_owned(),
            );
        } else if cascade.critical_open > critical.len() {
            problem(
                "monitors.services.cascade.critical_open",
                format!(
                    "{} critical services can never be open at once: only {} ha{} critical = true and a health check{}",
                    cascade.critical_open,
                    critical.len(),
                    if critical.len() == 1 { "s" } else { "ve" },
                    if critical.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", critical.join(", "))
                    }
                ),
            );
        }
        check_actions(
            config,
            "monitors.services.cascade.on_fire",
            &cascade.on_fire,
            problem,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::probe::Probe;

    use crate::config::problems_in as problems;
    use crate::config::Config;

    #[test]
    fn every_kind_loads_and_the_old_command_hook_still_does() {
        let text = r#"
            [services.api]
            driver = "process"
            pidfile = "/run/api.pid"
            critical = true
            health = { http = "http://127.0.0.1:8000/health", expect_status = 204, timeout = "2s", breaker = { failures = 2, failure_rate = "50%", window = "1m", open_for = "10s", max_open_for = "5m", trial_calls = 2 } }
            [services.db]
            driver = "docker"
            container = "postgres"
            critical = true
            health = { docker = true }
            [services.cache]
            driver = "process"
            pidfile = "/run/cache.pid"
            health = { tcp = "127.0.0.1:6379", interval = "5s" }
            [services.old]
            driver = "process"
            pidfile = "/run/old.pid"
            health = { run = ["/bin/true"], timeout = "5s" }
            [monitors.services]
            interval = "10s"
            on_fire = [{ alert = "warning" }]
            cascade = { critical_open = 2, on_fire = [{ alert = "critical" }] }
        "#;
        assert_eq!(problems(text), Vec::<String>::new());
        let loaded = Config::load_str(Path::new("/etc/drd/drd.toml"), text).unwrap();
        let db = &loaded.config.services["db"];
        assert_eq!(
            db.health.as_ref().unwrap().probe(db),
            Ok(Probe::Docker {
                container: "postgres".to_owned()
            })
        );
        let old = &loaded.config.services["old"];
        assert_eq!(
            old.health.as_ref().unwrap().probe(old),
            Ok(Probe::Command {
                argv: vec!["/bin/true".to_owned()]
            })
        );
    }

    #[test]
    fn every_mistake_is_named() {
        let text = r#"
            [services.a]
            driver = "process"
            pidfile = "/run/a.pid"
            critical = true
            health = { http = "ftp://x", tcp = "x:1" }
            [services.b]
            driver = "process"
            pidfile = "/run/b.pid"
            health = { docker = true, breaker = { failures = 0, failure_rate = "150%", open_for = "1m", max_open_for = "10s" } }
            [services.c]
            driver = "process"
            pidfile = "/run/c.pid"
            health = { tcp = "nope", expect_status = 200 }
            [monitors.services]
            cascade = { critical_open = 2, on_fire = [{ backup = ["ghost"] }] }
        "#;
        let found = problems(text);
        let has = |needle: &str| found.iter().any(|p| p.contains(needle));
        assert!(has("services.a.health: name exactly one of"), "{found:#?}");
        assert!(
            has("services.b.health: docker = true reads the container"),
            "{found:#?}"
        );
        assert!(has("services.b.health.breaker.failures"), "{found:#?}");
        assert!(has("services.b.health.breaker.failure_rate"), "{found:#?}");
        assert!(has("services.b.health.breaker.max_open_for"), "{found:#?}");
        assert!(
            has("services.c.health: expect_status is read only by http"),
            "{found:#?}"
        );
        assert!(
            has("monitors.services.cascade.critical_open: 2 critical services can never be open at once: only 1 has"),
            "{found:#?}"
        );
        assert!(
            has("monitors.services.cascade.on_fire[0].backup"),
            "{found:#?}"
        );
    }
}
