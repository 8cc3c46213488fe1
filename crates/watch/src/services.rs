//! The service health monitor: each `[services.NAME]` with a `health` table is
//! probed on its interval behind a circuit [`breaker`], and the `cascade` check
//! counts the critical services whose breakers are open at once.
//!
//! A breaker that is open lets no probe through until its open time passes, then
//! lets `trial_calls` through (half-open) and closes when they all succeed. The
//! `service NAME` check fires when the breaker opens and clears when it closes
//! again; every move of a breaker is audited; breakers are kept in the catalog
//! (`breaker/NAME`) so a restart of drd neither closes an open one nor forgets its
//! back-off.
//!
//! [`breaker`]: crate::breaker

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drd_core::audit::{Actor, Outcome};
use drd_core::config::health::{HealthConfig, ServicesMonitorConfig};
use drd_core::config::threshold::{Confirm, Direction, Rule};
use drd_core::probe::{Probe, Prober};
use drd_core::workers::Worker;
use futures::future::join_all;
use tokio::time::Instant;

use crate::breaker::{Breaker, BreakerConfig, BreakerMemory, BreakerState, BreakerTransition};
use crate::checks::{thresholds_in_words, Reading, Sample};
use crate::{store, Watch};

/// The service health monitor's worker.
pub struct ServicesMonitor {
    watch: Arc<Watch>,
    prober: Prober,
    /// Whether the breakers kept in the catalog were read.
    loaded: bool,
    /// Each service's breaker and newest probe, by service name.
    services: BTreeMap<String, Watched>,
    /// How long until the next cycle: the shortest interval configured.
    tick: Duration,
}

/// What is known of one service between cycles.
#[derive(Default)]
struct Watched {
    memory: BreakerMemory,
    /// What the newest probe found (or why none went out).
    last: String,
    /// When it is probed next.
    due: Option<Instant>,
}

/// One service as this cycle sees it.
struct Service {
    name: String,
    critical: bool,
    health: HealthConfig,
    probe: Probe,
    breaker: BreakerConfig,
    interval: Duration,
}

impl ServicesMonitor {
    /// The service health monitor of `watch`.
    pub fn new(watch: Arc<Watch>) -> ServicesMonitor {
        ServicesMonitor {
            watch,
            prober: Prober::new(),
            loaded: false,
            services: BTreeMap::new(),
            tick: drd_core::config::monitors::DEFAULT_MONITOR_INTERVAL,
        }
    }
}

const KEY: &str = "breaker/";

/// The breaker settings of a `health` table.
fn breaker_config(health: &HealthConfig) -> BreakerConfig {
    let b = &health.breaker;
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    BreakerConfig {
        failures: b.failures,
        open_for_ms: ms(b.open_for),
        max_open_for_ms: ms(b.max_open_for),
        trial_calls: b.trial_calls,
        failure_rate: b.failure_rate.map(|r| r.0 / 100.0),
        window_ms: ms(b.window),
    }
}

fn watched(config: &drd_core::config::Config) -> Vec<Service> {
    let monitor = &config.monitors.services;
    config
        .services
        .iter()
        .filter_map(|(name, service)| {
            let health = service.health.as_ref()?;
            // A loaded config's health tables are valid; a bad one never gets here.
            let probe = health.probe(service).ok()?;
            Some(Service {
                name: name.clone(),
                critical: service.critical,
                health: health.clone(),
                probe,
                breaker: breaker_config(health),
                interval: health.interval.unwrap_or(monitor.interval),
            })
        })
        .collect()
}

#[async_trait]
impl Worker for ServicesMonitor {
    fn name(&self) -> &'static str {
        "monitor services"
    }

    async fn step(&mut self) -> Result<String, String> {
        let config = self.watch.core.config();
        let monitor = config.config.monitors.services.clone();
        let services = watched(&config.config);
        self.tick = services
            .iter()
            .map(|s| s.interval)
            .chain([monitor.interval])
            .min()
            .unwrap_or(monitor.interval);
        if !self.loaded {
            let kept = store::load::<BreakerMemory>(&self.watch.core.catalog, KEY)
                .await
                .unwrap_or_else(|err| {
                    tracing::warn!(cause = %err, "cannot read the breakers' state; starting them closed");
                    BTreeMap::new()
                });
            for (key, memory) in kept {
                let name = key[KEY.len()..].to_owned();
                self.services.entry(name).or_default().memory = memory;
            }
            self.loaded = true;
        }
        let gone: Vec<String> = self
            .services
            .keys()
            .filter(|name| !services.iter().any(|s| &s.name == *name))
            .cloned()
            .collect();
        for name in &gone {
            self.services.remove(name);
        }
        if services.is_empty() {
            if !gone.is_empty() {
                self.watch.observe("services", Vec::new()).await;
                self.save(gone).await;
            }
            return Ok("no service has a health check".to_owned());
        }

        // Ask the breakers which probes may go out, then probe those all at once.
        let now = Instant::now();
        let now_ms = self.watch.now_ms();
        let mut transitions = Vec::new();
        let mut breakers = BTreeMap::new();
        let mut out = Vec::new();
        for service in &services {
            let watched = self.services.entry(service.name.clone()).or_default();
            let mut breaker = Breaker::restore(service.breaker, watched.memory.clone());
            if watched.due.is_none_or(|due| due <= now) {
                watched.due = Some(now + service.interval);
                let (allowed, moved) = breaker.allow(now_ms);
                transitions.extend(moved.map(|m| (service.name.clone(), m)));
                if allowed {
                    out.push(service);
                }
            }
            breakers.insert(service.name.clone(), breaker);
        }
        let prober = &self.prober;
        let outcomes = join_all(
            out.iter()
                .map(|s| prober.probe(&s.probe, s.health.timeout())),
        )
        .await;
        let now_ms = self.watch.now_ms();
        for (service, outcome) in out.iter().zip(outcomes) {
            let Some(breaker) = breakers.get_mut(&service.name) else {
                continue;
            };
            let moved = breaker.record(outcome.is_ok(), now_ms);
            transitions.extend(moved.map(|m| (service.name.clone(), m)));
            let watched = self.services.entry(service.name.clone()).or_default();
            watched.last = match outcome {
                Ok(what) => format!("{}: {what}", service.probe),
                Err(why) => format!("{} failed: {why}", service.probe),
            };
        }
        for (name, breaker) in &breakers {
            if let Some(watched) = self.services.get_mut(name) {
                watched.memory = breaker.memory().clone();
            }
        }

        for (name, moved) in &transitions {
            self.audit_transition(name, *moved).await;
        }
        self.save(gone).await;

        let readings = readings(&monitor, &services, &self.services);
        let open = self
            .services
            .values()
            .filter(|w| w.memory.state != BreakerState::Closed)
            .count();
        self.watch.observe("services", readings).await;
        Ok(format!(
            "{} services, {} probed, {open} breakers not closed",
            services.len(),
            out.len()
        ))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.tick).await;
    }
}

impl ServicesMonitor {
    async fn audit_transition(&self, name: &str, moved: BreakerTransition) {
        let last = self
            .services
            .get(name)
            .map(|w| w.last.clone())
            .unwrap_or_default();
        let (action, detail) = match moved {
            BreakerTransition::Opened { until_ms } => (
                "breaker opened",
                format!(
                    "service {name}: breaker opened; no probes until {} ({last})",
                    drd_core::util::rfc3339(until_ms)
                ),
            ),
            BreakerTransition::HalfOpened => (
                "breaker half-open",
                format!("service {name}: breaker half-open; trial probes go out"),
            ),
            BreakerTransition::Closed => (
                "breaker closed",
                format!("service {name}: breaker closed; the trials succeeded ({last})"),
            ),
        };
        tracing::info!(service = name, "{detail}");
        self.watch
            .core
            .audit(
                &Actor::Monitor(format!("services/service {name}")),
                action,
                Outcome::Ok,
                detail,
            )
            .await;
    }

    async fn save(&self, gone: Vec<String>) {
        let values: Vec<(String, BreakerMemory)> = self
            .services
            .iter()
            .map(|(name, w)| (format!("{KEY}{name}"), w.memory.clone()))
            .collect();
        let gone = gone.iter().map(|name| format!("{KEY}{name}")).collect();
        if let Err(err) =
            store::save(&self.watch.core.catalog, &values, gone, self.watch.now_ms()).await
        {
            tracing::warn!(cause = %err, "cannot keep the breakers' state");
        }
    }
}

/// Not closed: open, or half-open and not yet trusted again.
fn down(memory: &BreakerMemory) -> bool {
    memory.state != BreakerState::Closed
}

fn wire(state: BreakerState) -> drd_proto::BreakerState {
    match state {
        BreakerState::Closed => drd_proto::BreakerState::Closed,
        BreakerState::Open { .. } => drd_proto::BreakerState::Open,
        BreakerState::HalfOpen => drd_proto::BreakerState::HalfOpen,
    }
}

/// One `service NAME` reading per service and, when configured, the `cascade`.
fn readings(
    monitor: &ServicesMonitorConfig,
    services: &[Service],
    watched: &BTreeMap<String, Watched>,
) -> Vec<Reading> {
    let rule = Rule {
        direction: Direction::Above,
        fire: 1.0,
        clear: 0.0,
        confirm: Confirm::For(0),
        clear_confirm: None,
    };
    let mut readings = Vec::new();
    let mut critical_down = Vec::new();
    for service in services {
        let Some(w) = watched.get(&service.name) else {
            continue;
        };
        let state = w.memory.state;
        if service.critical && down(&w.memory) {
            critical_down.push(service.name.as_str());
        }
        let shown = match state {
            BreakerState::Closed => "breaker closed".to_owned(),
            BreakerState::Open { until_ms } => {
                format!("breaker open until {}", drd_core::util::rfc3339(until_ms))
            }
            BreakerState::HalfOpen => "breaker half-open".to_owned(),
        };
        readings.push(Reading {
            check: format!("service {}", service.name),
            rule,
            actions: service
                .health
                .on_fire
                .clone()
                .unwrap_or_else(|| monitor.on_fire.clone()),
            sample: Ok(Sample {
                value: if down(&w.memory) { 1.0 } else { 0.0 },
                shown,
                evidence: format!("service {}: {}", service.name, w.last),
            }),
            fire: "breaker open".to_owned(),
            clear: "breaker closed".to_owned(),
            breaker: Some(wire(state)),
        });
    }
    if let Some(cascade) = &monitor.cascade {
        let n = cascade.critical_open;
        let rule = Rule {
            direction: Direction::Above,
            fire: n as f64,
            clear: n.saturating_sub(1) as f64,
            confirm: Confirm::For(0),
            clear_confirm: None,
        };
        let (fire, clear) = thresholds_in_words(&rule, " critical open");
        readings.push(Reading {
            check: "cascade".to_owned(),
            rule,
            actions: cascade.on_fire.clone(),
            sample: Ok(Sample {
                value: critical_down.len() as f64,
                shown: format!("{} critical open", critical_down.len()),
                evidence: if critical_down.is_empty() {
                    "no critical service's breaker is open".to_owned()
                } else {
                    format!(
                        "{} critical services' breakers open: {}",
                        critical_down.len(),
                        critical_down.join(", ")
                    )
                },
            }),
            fire,
            clear,
            breaker: None,
        });
    }
    readings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_counts_as_down_until_its_breaker_closes_and_the_cascade_counts_critical_ones() {
        let text = r#"
            [services.db]
            driver = "process"
            pidfile = "/run/db.pid"
            critical = true
            health = { tcp = "127.0.0.1:5432" }
            [services.api]
            driver = "process"
            pidfile = "/run/api.pid"
            critical = true
            health = { tcp = "127.0.0.1:8000", on_fire = [{ alert = "critical" }] }
            [services.cache]
            driver = "process"
            pidfile = "/run/cache.pid"
            health = { tcp = "127.0.0.1:6379" }
            [monitors.services]
            on_fire = [{ alert = "warning" }]
            cascade = { critical_open = 2 }
        "#;
        let loaded =
            drd_core::config::Config::load_str(std::path::Path::new("/x/drd.toml"), text).unwrap();
        let services = watched(&loaded.config);
        let with = |state| Watched {
            memory: BreakerMemory {
                state,
                ..BreakerMemory::default()
            },
            last: String::new(),
            due: None,
        };
        let mut known = BTreeMap::new();
        known.insert("db".to_owned(), with(BreakerState::HalfOpen));
        known.insert("api".to_owned(), with(BreakerState::Closed));
        known.insert("cache".to_owned(), with(BreakerState::Open { until_ms: 0 }));
        let readings = readings(&loaded.config.monitors.services, &services, &known);
        let value = |check: &str| {
            let reading = readings.iter().find(|r| r.check == check).unwrap();
            reading.sample.as_ref().unwrap().value
        };
        assert_eq!(value("service db"), 1.0, "half-open is not trusted yet");
        assert_eq!(value("service api"), 0.0);
        assert_eq!(value("service cache"), 1.0);
        assert_eq!(value("cascade"), 1.0, "cache is not critical");
        let api = readings.iter().find(|r| r.check == "service api").unwrap();
        assert_eq!(api.actions[0].alert, Some(drd_proto::Severity::Critical));
        assert_eq!(api.breaker, Some(drd_proto::BreakerState::Closed));
        let cascade = readings.iter().find(|r| r.check == "cascade").unwrap();
        assert_eq!((cascade.rule.fire, cascade.rule.clear), (2.0, 1.0));
    }
}
