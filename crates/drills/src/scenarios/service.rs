//! service_recovery: each service marked `drill = true`, and no other, is stopped
//! through its driver and started again through it, and timed from the stop until its
//! health check passes. The stop, the start and the probe are drd-shutdown's and
//! drd-core's own (the ones an emergency shutdown and its rollback use), so the drill
//! measures the path a real recovery takes.
//!
//! RTO is measured from the stop to the first passing probe; a restart loses no data,
//! so RPO is zero. The health check is waited for up to the category's RTO target
//! plus [`SLACK`]: past the target the drill has failed anyway, and the slack lets a
//! service that is only a little late show by how much.
//!
//! A drill cancelled while a service is down decides by why: a shutdown wants the
//! service down, so it is left stopped (and the audit log says so); anything else (a
//! backup, drd stopping) gets the service started again before the drill returns.
//! A compose service is drilled as the containers of its project.

use std::time::{Duration, Instant};

use drd_core::audit::{Actor, Outcome};
use drd_core::config::{Config, DriverKind, ServiceConfig};
use drd_core::probe::Prober;
use drd_proto::{Category, DrillOutcome};
use drd_shutdown::drivers::{self, Assessment, Driver, Stopped};

use super::{ms, service_category, Drill, Finding};

/// How long past the RTO target the drill still waits for a service to be healthy.
const SLACK: Duration = Duration::from_secs(5);

/// The least a start is given, as a rollback gives it: bringing the service back
/// matters more than the drill's clock.
const MIN_START_WAIT: Duration = Duration::from_secs(30);

pub(super) async fn run(drill: &Drill) -> Vec<Finding> {
    let mut found = Vec::new();
    for (name, service) in drill.config.config.services.iter().filter(|(_, s)| s.drill) {
        if drill.cancelled() {
            break;
        }
        drill.step("service_recovery", format!("service {name}"));
        found.push(one(drill, name, service).await);
    }
    found
}

/// A service's driver, with its state before the drill touched it.
struct Unit {
    /// The service, or `SERVICE.CONTAINER` for a compose project's container.
    name: String,
    config: ServiceConfig,
    driver: Driver,
    before: Assessment,
}

/// Drills one service.
async fn one(drill: &Drill, name: &str, service: &ServiceConfig) -> Finding {
    let category = service_category(service.driver);
    let subject = format!("service {name}");
    let started = Instant::now();
    let failed = |why: String| Finding::failed(category, subject.clone(), started, why);
    let Some(health) = &service.health else {
        // Config validation refuses drill = true without one; a hand-made config may not.
        return failed(
            "it has no health check, so the drill cannot tell when it is back; add a health table"
                .to_owned(),
        );
    };
    let probe = match health.probe(service) {
        Ok(probe) => probe,
        Err(why) => return failed(format!("its health check is not usable: {why}")),
    };
    let units = match units(name, service).await {
        Ok(units) => units,
        Err(why) => return failed(why),
    };
    if let Some(down) = units.iter().find(|u| !u.before.running) {
        return failed(format!(
            "{} was not running before the drill ({}): a drill restarts a running service; start it, then drill again",
            down.name, down.before.detail
        ));
    }
    let target = drill.target(category);

    // From here the service is being taken down: the clock runs.
    let t0 = Instant::now();
    let mut stopped = Vec::new();
    let mut problem = None;
    for unit in &units {
        let how = unit
            .driver
            .stop(
                &unit.before,
                unit.config.stop_signal(),
                unit.config.stop_timeout(),
                false,
            )
            .await;
        match how {
            Ok(how) => {
                audit(
                    drill,
                    Outcome::Ok,
                    format!(
                        "stopped {} ({}): {}",
                        unit.name,
                        unit.before.detail,
                        stopped_words(&how)
                    ),
                )
                .await;
                stopped.push(unit);
            }
            Err(err) => {
                audit(drill, Outcome::Failed, format!("stop {}: {err}", unit.name)).await;
                problem = Some(format!("the stop failed: {err}"));
                // Still running after a failed stop: nothing to start again for it.
                if matches!(unit.driver.is_running(&unit.before).await, Ok(false)) {
                    stopped.push(unit);
                }
                break;
            }
        }
    }
    if drill.cancelled() {
        if let Some(run) = drill.shutdown_started() {
            let why = format!(
                "left stopped: {run} started while the drill had it down, and wants it down"
            );
            audit(drill, Outcome::Ok, format!("{subject}: {why}")).await;
            return cancelled(category, subject, started, &why);
        }
    }
    // Started again in the other order, so what others depend on comes first.
    let budget = target.rto + SLACK;
    for unit in stopped.iter().rev() {
        // The service comes back even when the drill has already failed on time.
        let wait = budget.saturating_sub(t0.elapsed()).max(MIN_START_WAIT);
        let start = unit.driver.start(&unit.before, wait);
        tokio::pin!(start);
        let result = tokio::select! {
            result = &mut start => result,
            () = drill.token.cancelled() => match drill.shutdown_started() {
                // The shutdown stops it anyway; waiting for it to come up would fight it.
                Some(run) => {
                    let why = format!(
                        "left to {run}, which started while the drill was starting it again"
                    );
                    audit(drill, Outcome::Ok, format!("{subject}: {why}")).await;
                    return cancelled(category, subject, started, &why);
                }
                None => start.await,
            },
        };
        match result {
            Ok(()) => {
                let now = unit
                    .driver
                    .assess()
                    .await
                    .map(|a| a.detail)
                    .unwrap_or_default();
                audit(
                    drill,
                    Outcome::Ok,
                    format!("started {} again ({now})", unit.name),
                )
                .await;
            }
            Err(err) => {
                audit(
                    drill,
                    Outcome::Failed,
                    format!("start {}: {err}", unit.name),
                )
                .await;
                problem.get_or_insert(format!("it did not start again: {err}"));
            }
        }
    }
    if let Some(why) = problem {
        return failed(why);
    }
    if drill.cancelled() {
        return cancelled(
            category,
            subject,
            started,
            "started again; cancelled before its health check was waited for",
        );
    }

    let left = budget.saturating_sub(t0.elapsed());
    let prober = Prober::new();
    let healthy = tokio::select! {
        () = drill.token.cancelled() => {
            return cancelled(
                category,
                subject,
                started,
                "started again; cancelled while waiting for its health check",
            );
        }
        answer = prober.wait_until_ok(&probe, left) => answer,
    };
    let rto = t0.elapsed();
    match healthy {
        Ok(answer) => {
            let after: Vec<String> = {
                let mut after = Vec::new();
                for unit in &units {
                    let now = unit.driver.assess().await.map(|a| a.detail).unwrap_or_default();
                    after.push(format!("{}: {} before, {now} after", unit.name, unit.before.detail));
                }
                after
            };
            Finding::measured(
                category,
                subject,
                started,
                (Some(rto), Some(Duration::ZERO)),
                target,
                format!(
                    "stopped and started through its {} driver; healthy {} after the stop ({probe}: {answer}); {}",
                    service.driver.as_str(),
                    drd_proto::text::measured(ms(rto)),
                    after.join("; ")
                ),
            )
        }
        Err(why) => failed(format!(
            "started again, but its health check did not pass within {} of the stop (RTO target {} plus {}): {why}",
            drd_proto::text::measured(ms(rto)),
            drd_proto::text::measured(ms(target.rto)),
            drd_proto::text::measured(ms(SLACK)),
        )),
    }
}

/// The service's drivers and their state now: one, or a compose project's
/// containers (found as an emergency shutdown finds them).
async fn units(name: &str, service: &ServiceConfig) -> Result<Vec<Unit>, String> {
    let configs: Vec<(String, ServiceConfig)> = if service.driver == DriverKind::Compose {
        let alone = Config {
            services: [(name.to_owned(), service.clone())].into_iter().collect(),
            ..Config::default()
        };
        let (expanded, problems) = drivers::compose::expand(&alone).await;
        if let Some(problem) = problems.first() {
            return Err(problem.clone());
        }
        expanded.services.into_iter().collect()
    } else {
        vec![(name.to_owned(), service.clone())]
    };
    let mut units = Vec::new();
    for (name, config) in configs {
        let driver = Driver::new(&config).map_err(|e| e.to_string())?;
        let before = driver.assess().await.map_err(|e| e.to_string())?;
        units.push(Unit {
            name,
            config,
            driver,
            before,
        });
    }
    Ok(units)
}

fn stopped_words(how: &Stopped) -> &'static str {
    match how {
        Stopped::Clean => "it exited after its stop signal",
        Stopped::Killed => "it was killed after its stop timeout",
        Stopped::WasNotRunning => "it was not running",
    }
}

/// A drill that was stopped part-way, saying where it left the service.
fn cancelled(category: Category, subject: String, started: Instant, why: &str) -> Finding {
    Finding {
        outcome: DrillOutcome::Cancelled,
        ..Finding::failed(category, subject, started, format!("cancelled: {why}"))
    }
}

async fn audit(drill: &Drill, outcome: Outcome, detail: String) {
    drill
        .drills
        .core
        .audit(
            &Actor::Monitor("drills".to_owned()),
            "drill service",
            outcome,
            detail,
        )
        .await;
}
