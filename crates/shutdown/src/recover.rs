//! Recovery, the second half of the emergency workflow: after a shutdown, bring the
//! host back. It is the shutdown machine run the other way: the same plan (its levels
//! started deepest first), the same drivers, checkpoints, step recorder and slot (one
//! run at a time, shutdown or recovery).
//!
//! This file holds the entry points ([`recover`], [`recovery_plan`]) and what they
//! decide before a run starts: which shutdown is recovered, which services start, and
//! the go / no-go checks. The phases themselves are in `phases/recover.rs`.
//!
//! A recovery starts what the shutdown stopped: the services that were running before
//! it (its own assessment says so). With `--only`, those services and what depends on
//! them, whether or not a shutdown stopped them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use drd_core::audit::{Actor, Outcome};
use drd_core::config::{Config, SourceConfig};
use drd_proto::{PlannedStart, RecoveryPlan, RunKind, ShutdownTrigger, ValidationCheck};
use serde::{Deserialize, Serialize};

use crate::checkpoints::{self, RunRow};
use crate::drivers::{self, Driver};
use crate::plan::{self, Plan};
use crate::record::Record;
use crate::{expanded, launch, Following, RunSpec, Shutdowns, StartError};

/// A monitor check or deadman switch that is not well, as the daemon sees it now:
/// a recovery from a shutdown it triggered waits until it has cleared.
#[derive(Debug, Clone)]
pub struct Firing {
    /// Its source, as its actor names it: `resources/disk /var`, `deadman/nightly`.
    pub source: String,
    /// What it sees.
    pub evidence: String,
}

/// What `drctl recover` asks for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RecoverRequest {
    /// Only these services and their dependants; by default what the shutdown
    /// stopped.
    pub only: Vec<String>,
    /// The shutdown to recover from; by default the newest one that ended.
    pub from_shutdown: Option<i64>,
    /// Carry on with an interrupted recovery.
    #[serde(skip)]
    pub resume: bool,
    /// Restore each service's preserve jobs' snapshot before it starts.
    pub restore_data: bool,
    /// With `restore_data`: the newest snapshot at or before this time (Unix ms)
    /// instead of the one the shutdown took.
    pub at_unix_ms: Option<i64>,
}

/// The shutdown a recovery brings back: its row and its checkpoint record.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub run: RunRow,
    pub record: Record,
}

/// What a recovery run is started on.
#[derive(Debug)]
pub(crate) struct RecoverySpec {
    pub recovers: Option<Recovered>,
    pub request: RecoverRequest,
    pub firing: Vec<Firing>,
}

/// Starts (or with `resume`, carries on) a recovery in its own task. `firing` is
/// what the monitors and deadman switches see now.
pub async fn recover(
    shared: &Arc<Shutdowns>,
    request: RecoverRequest,
    actor: Actor,
    firing: Vec<Firing>,
) -> Result<Following, StartError> {
    let mut slot = shared.slot.0.lock().await;
    if let Some(active) = slot.as_ref() {
        return Err(StartError::Busy(active.run_id));
    }
    let catalog = &shared.core.catalog;
    let config = expanded(&shared.core.config().config).await;
    let unfinished = checkpoints::unfinished_run(catalog).await?;
    let (run_id, trigger, only, spec, earlier) = match (request.resume, unfinished) {
        (true, None) => {
            return Err(StartError::Nothing(
                "no interrupted recovery to resume; `drctl shutdowns` lists the past ones",
            ))
        }
        (false, Some(run)) => return Err(StartError::interrupted(catalog, run).await),
        (true, Some(run)) if run.kind != RunKind::Recovery => {
            return Err(StartError::interrupted(catalog, run).await)
        }
        (true, Some(run)) => {
            let spec = interrupted(shared, &run).await?;
            let spec = RecoverySpec { firing, ..spec };
            Plan::build(&config, &run.only, false)?;
            let earlier = Record::read(&checkpoints::steps(catalog, run.id).await?);
            shared
                .core
                .audit(
                    &actor,
                    "resume recovery",
                    Outcome::Ok,
                    format!(
                        "recovery #{} resumed at {}",
                        run.id,
                        checkpoints::last_step(catalog, run.id).await?
                    ),
                )
                .await;
            (run.id, run.trigger, run.only, spec, earlier)
        }
        (false, None) => {
            let recovers = recovered(shared, request.from_shutdown, &request.only).await?;
            let only = planned_only(&request, recovers.as_ref());
            Plan::build(&config, &only, false)?;
            let trigger = recovers
                .as_ref()
                .map_or(ShutdownTrigger::Manual, |r| r.run.trigger);
            let recovers_id = recovers.as_ref().map(|r| r.run.id);
            let options = serde_json::to_string(&request).unwrap_or_default();
            let run_id = checkpoints::begin_recovery(
                catalog,
                trigger,
                &actor.to_string(),
                &only,
                recovers_id,
                &options,
            )
            .await?;
            shared
                .core
                .audit(
                    &actor,
                    "recover",
                    Outcome::Ok,
                    format!(
                        "recovery #{run_id} started{}{}{}",
                        recovers_id
                            .map(|id| format!(" from shutdown #{id} ({trigger})"))
                            .unwrap_or_default(),
                        if only.is_empty() {
                            String::new()
                        } else {
                            format!(", only {}", only.join(" "))
                        },
                        if request.restore_data {
                            ", restoring data first"
                        } else {
                            ""
                        }
                    ),
                )
                .await;
            let spec = RecoverySpec {
                recovers,
                request,
                firing,
            };
            (run_id, trigger, only, spec, Record::default())
        }
    };
    let spec = RunSpec {
        run_id,
        trigger,
        plan: Plan::build(&config, &only, false)?,
        actor,
        earlier,
        abort_now: None,
        recovery: Some(spec),
    };
    Ok(launch(shared, &mut slot, spec))
}

/// The spec of the interrupted recovery `run`, as it was started (its options are
/// kept in its `reason`).
pub(crate) async fn interrupted(
    shared: &Shutdowns,
    run: &RunRow,
) -> Result<RecoverySpec, StartError> {
    let request: RecoverRequest = serde_json::from_str(&run.reason).unwrap_or_default();
    let recovers = match run.recovers {
        Some(id) => recovered(shared, Some(id), &[]).await?,
        None => None,
    };
    Ok(RecoverySpec {
        recovers,
        request,
        firing: Vec::new(),
    })
}

/// The shutdown to recover from: `id`, or the newest that ended. `None` (with
/// `only` given) recovers the named services without a shutdown.
async fn recovered(
    shared: &Shutdowns,
    id: Option<i64>,
    only: &[String],
) -> Result<Option<Recovered>, StartError> {
    let catalog = &shared.core.catalog;
    match checkpoints::ended_shutdown(catalog, id).await? {
        Some(run) if run.state == "running" => Err(StartError::Nothing(
            "that shutdown has not ended: finish it (`drctl shutdown --resume`) or end it \
             (`drctl abort`) first",
        )),
        Some(run) => {
            let record = Record::read(&checkpoints::steps(catalog, run.id).await?);
            Ok(Some(Recovered { run, record }))
        }
        None if id.is_some() => Err(StartError::Nothing(
            "no shutdown has that id; `drctl shutdowns` lists them",
        )),
        None if only.is_empty() => Err(StartError::Nothing(
            "no shutdown has ended to recover from; name the services to start with --only",
        )),
        None => Ok(None),
    }
}

/// The services a recovery plans for: `--only`, else the shutdown's own `--only`.
fn planned_only(request: &RecoverRequest, recovers: Option<&Recovered>) -> Vec<String> {
    if request.only.is_empty() {
        recovers.map(|r| r.run.only.clone()).unwrap_or_default()
    } else {
        request.only.clone()
    }
}

/// Which planned services the recovery starts: with `--only`, all of them; else
/// those the shutdown found running before it touched them.
pub(crate) fn wanted(plan: &Plan, spec: &RecoverySpec) -> BTreeSet<String> {
    plan.steps
        .keys()
        .filter(|name| {
            if !spec.request.only.is_empty() {
                return true;
            }
            spec.recovers
                .as_ref()
                .and_then(|r| r.record.before(name))
                .is_none_or(|before| before.running)
        })
        .cloned()
        .collect()
}

/// The trigger's check: a shutdown a monitor or deadman switch started waits until
/// that source is well again.
pub(crate) fn trigger_check(spec: &RecoverySpec) -> ValidationCheck {
    let Some(recovers) = &spec.recovers else {
        return ValidationCheck {
            subject: "trigger".to_owned(),
            ok: true,
            detail: "no shutdown is recovered: nothing to clear".to_owned(),
        };
    };
    let run = &recovers.run;
    let source = run.actor.strip_prefix("monitor ");
    let detail = match source {
        None => Ok(format!(
            "shutdown #{} ({}) was started by {}: nothing drd watches has to clear",
            run.id, run.trigger, run.actor
        )),
        Some(source) => match spec.firing.iter().find(|f| f.source == source) {
            Some(firing) => Err(format!(
                "{source}, which started shutdown #{} ({}), is still not well: {}",
                run.id, run.trigger, firing.evidence
            )),
            None => Ok(format!(
                "{source}, which started shutdown #{} ({}), has cleared",
                run.id, run.trigger
            )),
        },
    };
    ValidationCheck {
        subject: "trigger".to_owned(),
        ok: detail.is_ok(),
        detail: detail.unwrap_or_else(|e| e),
    }
}

/// The SQLite databases `service` owns: the sqlite sources of its preserve jobs.
pub(crate) fn databases(config: &Config, service: &str) -> Vec<PathBuf> {
    let Some(svc) = config.services.get(service) else {
        return Vec::new();
    };
    svc.preserve
        .iter()
        .filter_map(|job| config.jobs.get(job))
        .flat_map(|job| &job.sources)
        .filter_map(|source| match source {
            SourceConfig::Sqlite { path } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

/// The checks of the services to start: each `validate` hook, and (unless their
/// data is to be restored first) `integrity_check` on the databases they own.
pub(crate) async fn service_checks(
    config: &Config,
    wanted: &BTreeSet<String>,
    integrity: bool,
) -> Vec<ValidationCheck> {
    let mut checks = Vec::new();
    for name in wanted {
        let Some(service) = config.services.get(name) else {
            continue;
        };
        if let Some(hook) = &service.validate {
            let ran = drivers::run_hook(hook).await;
            checks.push(ValidationCheck {
                subject: format!("{name} validate"),
                ok: ran.is_ok(),
                detail: ran.map_or_else(|e| e, |()| format!("{} exited 0", hook.run.join(" "))),
            });
        }
        if integrity {
            checks.extend(integrity_checks(config, name).await);
        }
    }
    checks
}

/// `integrity_check` on each database `service` owns (off the runtime).
pub(crate) async fn integrity_checks(config: &Config, service: &str) -> Vec<ValidationCheck> {
    let mut checks = Vec::new();
    for path in databases(config, service) {
        let shown = path.display().to_string();
        let result =
            tokio::task::spawn_blocking(move || drd_backup::backup::integrity_check(&path))
                .await
                .unwrap_or_else(|err| Err(format!("the check failed: {err}")));
        checks.push(ValidationCheck {
            subject: format!("{service} integrity {shown}"),
            ok: result.is_ok(),
            detail: result.map_or_else(|e| e, |()| "integrity_check: ok".to_owned()),
        });
    }
    checks
}

/// What a recovery would do and the go / no-go as of now; starts nothing. The
/// checks (validate hooks, integrity) run: they only look.
pub async fn recovery_plan(
    shared: &Arc<Shutdowns>,
    request: RecoverRequest,
    firing: Vec<Firing>,
) -> Result<RecoveryPlan, StartError> {
    let config = expanded(&shared.core.config().config).await;
    let recovers = recovered(shared, request.from_shutdown, &request.only).await?;
    let only = planned_only(&request, recovers.as_ref());
    let plan = Plan::build(&config, &only, false)?;
    let spec = RecoverySpec {
        recovers,
        request,
        firing,
    };
    let wanted = wanted(&plan, &spec);
    let mut levels = Vec::new();
    for level in plan.levels.iter().rev() {
        let mut planned = Vec::new();
        for name in level {
            let step = &plan.steps[name];
            let running = match Driver::new(&step.config) {
                Ok(driver) => driver.assess().await.map(|a| a.running).unwrap_or(false),
                Err(_) => false,
            };
            let (start, why) = if !wanted.contains(name) {
                (
                    false,
                    "was not running before the shutdown; left alone".to_owned(),
                )
            } else if running {
                (false, "running already; left alone".to_owned())
            } else {
                (true, "will start".to_owned())
            };
            planned.push(PlannedStart {
                name: name.clone(),
                driver: step.config.driver.as_str().to_owned(),
                target: plan::target(&step.config),
                depends_on: step.depends_on.clone(),
                health: step
                    .config
                    .health
                    .as_ref()
                    .map(|h| h.probe(&step.config).map_or_else(|e| e, |p| p.to_string()))
                    .unwrap_or_default(),
                start,
                why,
            });
        }
        levels.push(planned);
    }
    let mut checks = vec![trigger_check(&spec)];
    checks.extend(service_checks(&config, &wanted, !spec.request.restore_data).await);
    let restore = if spec.request.restore_data {
        restore_sources(&config, &plan, &wanted, &spec)
            .into_iter()
            .map(|(job, snapshot)| match snapshot {
                Ok(chosen) => format!("{job}: {chosen}"),
                Err(err) => format!("{job}: NONE: {err}"),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(RecoveryPlan {
        recovers: spec.recovers.as_ref().map(|r| r.run.id),
        trigger: spec.recovers.as_ref().map(|r| r.run.trigger),
        levels,
        checks,
        restore,
    })
}

/// Which snapshot of a preserve job `--restore-data` restores.
#[derive(Debug, Clone)]
pub(crate) enum Chosen {
    /// The one the shutdown took.
    Taken(String),
    /// The newest at or before this time (Unix ms), looked up when it runs.
    At(i64),
}

impl std::fmt::Display for Chosen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Chosen::Taken(id) => write!(f, "snapshot {id}, taken by the shutdown"),
            Chosen::At(at) => write!(
                f,
                "the newest snapshot at or before {}",
                drd_core::util::rfc3339(*at)
            ),
        }
    }
}

/// The preserve jobs `--restore-data` restores, in start order, each with the
/// snapshot to restore, or why there is none.
pub(crate) fn restore_sources(
    config: &Config,
    plan: &Plan,
    wanted: &BTreeSet<String>,
    spec: &RecoverySpec,
) -> Vec<(String, Result<Chosen, String>)> {
    let mut jobs: Vec<(String, Result<Chosen, String>)> = Vec::new();
    for name in plan.levels.iter().rev().flatten() {
        if !wanted.contains(name) {
            continue;
        }
        for job in &config.services[name].preserve {
            if jobs.iter().any(|(j, _)| j == job) {
                continue;
            }
            let snapshot = match (spec.request.at_unix_ms, &spec.recovers) {
                (Some(at), _) => Ok(Chosen::At(at)),
                (None, Some(recovers)) => recovers
                    .record
                    .snapshot(job)
                    .map(|s| Chosen::Taken(s.to_owned()))
                    .ok_or_else(|| {
                        format!(
                            "shutdown #{} took no snapshot of it; name one with --at",
                            recovers.run.id
                        )
                    }),
                (None, None) => {
                    Err("no shutdown took a snapshot of it; name one with --at".to_owned())
                }
            };
            jobs.push((job.clone(), snapshot));
        }
    }
    jobs
}
