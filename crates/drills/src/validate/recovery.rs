//! Whether recovery would get back what it should: each job inside its RPO (as
//! `drctl jobs` reckons it), and each drill category passed recently enough to trust.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError};

use drd_backup::jobs::overview;
use drd_core::config::{Config, LoadedConfig};
use drd_proto::text::{ago, span};
use drd_proto::{Category, CheckStatus, JobInfo, ReadinessCheck, Scenario};

use super::{check, fail, pass, warn};
use crate::{scenarios, Drills};

/// `job NAME rpo` for every job: the recovery point now against the job's `rpo`,
/// from the same overview `drctl jobs` shows, so the two never disagree.
pub(super) async fn jobs(drills: &Drills, config: &Arc<LoadedConfig>) -> Vec<ReadinessCheck> {
    let running: HashSet<String> = drills
        .backups
        .running_jobs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    match overview::overview(&drills.core.catalog, config, &running).await {
        Ok(jobs) => {
            let now = drd_core::clock::now_ms();
            jobs.iter().map(|job| job_line(job, now)).collect()
        }
        Err(err) => vec![fail(
            "jobs rpo",
            format!("cannot read the jobs' history: {err}"),
        )],
    }
}

/// One job's line at `now` (Unix ms, the clock `drctl jobs` reads).
fn job_line(job: &JobInfo, now: i64) -> ReadinessCheck {
    let name = format!("job {} rpo", job.name);
    let backup_now = format!("`drctl backup --job {}`", job.name);
    // Why the newest run failed, when it did after the last success.
    let failing = job
        .last_failure
        .as_ref()
        .filter(|f| {
            job.last_success
                .as_ref()
                .is_none_or(|ok| f.started_unix_ms > ok.started_unix_ms)
        })
        .and_then(|f| f.error.as_deref())
        .map(|e| format!("; the last run failed: {e}"))
        .unwrap_or_default();
    let last = job
        .last_good_unix_ms
        .map(|at| format!("last good backup {}", ago(now, at)));
    match (job.rpo_target_ms, last) {
        (Some(target), Some(last)) if !job.behind_rpo => {
            pass(name, format!("{last}, within its rpo of {}", span(target)))
        }
        (Some(target), Some(last)) => fail(
            name,
            format!(
                "{last}, over its rpo of {}{failing}: run {backup_now} and see `drctl jobs` \
                 for why scheduled runs are not keeping up",
                span(target)
            ),
        ),
        (Some(target), None) => fail(
            name,
            format!(
                "never backed up, and its rpo is {}{failing}: run {backup_now}",
                span(target)
            ),
        ),
        (None, Some(last)) => pass(name, format!("{last} (no rpo set)")),
        (None, None) => warn(
            name,
            format!("never backed up (no rpo set){failing}: run {backup_now}"),
        ),
    }
}

/// `drills CATEGORY` for every category: a drill of it passed within two `[drills]
/// interval`s (one missed or failed run is allowed for; two in a row are not).
pub(super) async fn drills(drills: &Drills, config: &Arc<LoadedConfig>) -> Vec<ReadinessCheck> {
    let last_passes = match drills.last_passes().await {
        Ok(found) => found,
        Err(err) => {
            return vec![fail(
                "drills",
                format!("cannot read the drill results: {err}"),
            )]
        }
    };
    let now = drills.clock.now_ms();
    let drill_config = &config.config.drills;
    let window = i64::try_from(drill_config.interval.as_millis())
        .unwrap_or(i64::MAX / 2)
        .saturating_mul(2);
    Category::ALL
        .iter()
        .map(|&category| {
            let name = format!("drills {}", category.as_str());
            let enabled: Vec<Scenario> = drill_config
                .scenarios
                .iter()
                .copied()
                .filter(|s| scenarios::categories(*s).contains(&category))
                .collect();
            if enabled.is_empty() {
                return warn(
                    name,
                    format!(
                        "nothing to drill: none of its scenarios ({}) is in [drills] scenarios",
                        scenarios_of(category).join(", ")
                    ),
                );
            }
            if subjects(category, &enabled, &config.config).is_empty() {
                return warn(name, format!("nothing to drill: {}", no_subjects(category)));
            }
            let last = last_passes
                .iter()
                .find(|(c, _)| *c == category)
                .map(|(_, at)| *at);
            let status = freshness(last, window, now);
            let run = format!(
                "run `drctl test run --category {}` and read `drctl test report`",
                category.as_str()
            );
            let loop_off = if drill_config.enabled {
                ""
            } else {
                " (the drill loop is off: [drills] enabled = false)"
            };
            match (status, last) {
                (_, None) => fail(name, format!("never passed{loop_off}: {run}")),
                (CheckStatus::Pass, Some(at)) => pass(
                    name,
                    format!(
                        "last passed {}, within two drill intervals ({})",
                        ago(now, at),
                        span(window)
                    ),
                ),
                (_, Some(at)) => check(
                    name,
                    status,
                    format!(
                        "last passed {}, more than two drill intervals ({}) ago{loop_off}: {run}",
                        ago(now, at),
                        span(window)
                    ),
                ),
            }
        })
        .collect()
}

/// Whether a category whose last drill passed at `last` (Unix ms) is fresh at `now`:
/// within `window` ms (two intervals). Never passed fails.
fn freshness(last: Option<i64>, window: i64, now: i64) -> CheckStatus {
    match last {
        Some(at) if now.saturating_sub(at) <= window => CheckStatus::Pass,
        _ => CheckStatus::Fail,
    }
}

/// What the `enabled` scenarios would drill in `category` under `config`.
/// service_recovery's services go by their driver's category.
fn subjects(category: Category, enabled: &[Scenario], config: &Config) -> Vec<String> {
    enabled
        .iter()
        .flat_map(|&scenario| match scenario {
            Scenario::ServiceRecovery => config
                .services
                .iter()
                .filter(|(_, s)| s.drill && scenarios::service_category(s.driver) == category)
                .map(|(name, _)| format!("service {name}"))
                .collect(),
            other => scenarios::subjects(other, config),
        })
        .collect()
}

/// The scenarios whose drills can fall in `category`.
fn scenarios_of(category: Category) -> Vec<&'static str> {
    Scenario::ALL
        .iter()
        .filter(|s| scenarios::categories(**s).contains(&category))
        .map(|s| s.as_str())
        .collect()
}

/// Why a category has nothing to drill, and how to give it something.
fn no_subjects(category: Category) -> &'static str {
    match category {
        Category::Database => "no job backs up a database (a sqlite or command source)",
        Category::ServiceMesh => {
            "no docker, compose or systemd service has drill = true (set it on the services \
             a drill may stop and start)"
        }
        Category::Agents => {
            "no process service has drill = true (set it on the services a drill may stop \
             and start)"
        }
        Category::Storage => "no jobs are configured",
        Category::Network | Category::Authentication => "the config gives it no subject",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drd_proto::{RunInfo, RunOutcome, RunTrigger};

    const HOUR: i64 = 3_600_000;

    #[test]
    fn a_category_is_fresh_for_two_intervals_after_its_last_pass() {
        let now = 100 * HOUR;
        let window = 2 * 6 * HOUR;
        assert_eq!(freshness(Some(now - HOUR), window, now), CheckStatus::Pass);
        assert_eq!(
            freshness(Some(now - window), window, now),
            CheckStatus::Pass
        );
        assert_eq!(
            freshness(Some(now - window - 1), window, now),
            CheckStatus::Fail
        );
        assert_eq!(freshness(None, window, now), CheckStatus::Fail);
    }

    fn job(last_good: Option<i64>, target: Option<i64>, behind: bool) -> JobInfo {
        JobInfo {
            name: "app".to_owned(),
            schedule: Some("hourly".to_owned()),
            critical: false,
            priority: 0,
            tier: "local".to_owned(),
            retention: String::new(),
            running: false,
            last_success: None,
            last_failure: None,
            next_run_unix_ms: None,
            last_good_unix_ms: last_good,
            rpo_now_ms: None,
            rpo_target_ms: target,
            behind_rpo: behind,
            offsite: Vec::new(),
        }
    }

    #[test]
    fn a_job_line_follows_what_drctl_jobs_reckons() {
        let now = 10 * HOUR;
        let line = job_line(&job(Some(now - HOUR / 2), Some(HOUR), false), now);
        assert_eq!(line.status, CheckStatus::Pass, "{}", line.detail);
        assert_eq!(line.name, "job app rpo");
        let line = job_line(&job(Some(now - 2 * HOUR), Some(HOUR), true), now);
        assert_eq!(line.status, CheckStatus::Fail);
        assert!(
            line.detail.contains("over its rpo of 1h 0m"),
            "{}",
            line.detail
        );
        assert_eq!(
            job_line(&job(None, Some(HOUR), true), now).status,
            CheckStatus::Fail
        );
        assert_eq!(
            job_line(&job(Some(0), None, false), now).status,
            CheckStatus::Pass
        );

        let mut never = job(None, None, false);
        never.last_failure = Some(RunInfo {
            trigger: RunTrigger::Schedule,
            started_unix_ms: now - HOUR,
            ended_unix_ms: Some(now - HOUR),
            outcome: RunOutcome::Failed,
            snapshot: None,
            error: Some("source /data: no such file".to_owned()),
        });
        let line = job_line(&never, now);
        assert_eq!(line.status, CheckStatus::Warn);
        assert!(
            line.detail.contains("the last run failed: source /data"),
            "{}",
            line.detail
        );
    }
}
