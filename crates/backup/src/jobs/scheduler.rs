//! The scheduler: a daemon worker that runs each job when its schedule comes due.
//!
//! - Each job's next run is its next scheduled time plus its jitter
//!   ([`drd_core::config::schedule`]), computed afresh after every run from the time the run
//!   ended, so a run that outlasts its period skips the slots it covered instead of
//!   queueing them: runs of one job never overlap (and [`super::run_job`] refuses a
//!   second run of a job that a request started).
//! - At start, a job whose last run (any trigger) is older than its last scheduled
//!   slot missed a run while drd was down, and runs once at once with the trigger
//!   `catch-up`, however many slots it missed (systemd's `Persistent=true`). A job
//!   that has never run waits for its first slot.
//! - Jobs due together run one after another, lowest `priority` first, then by name:
//!   backups compete for the same disks, and one at a time finishes each sooner.
//! - Every step re-reads the jobs, so a config reload takes effect within a minute:
//!   new jobs get a next run, removed ones are dropped, changed schedules recomputed.
//!
//! Wall-clock time comes from a [`Clock`], so tests (with tokio's paused time) decide
//! what "now" is; the jobs, their history and the runs come from a [`JobHost`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeZone;
use drd_core::config::schedule::{jitter_ms, Schedule};
use drd_core::config::Config;

use super::{Clock, Trigger};

/// The longest the scheduler sleeps before looking again (to see reloads and clock
/// jumps).
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// A job the scheduler runs.
#[derive(Debug, Clone)]
pub struct ScheduledJob {
    /// The job's name.
    pub name: String,
    /// When.
    pub schedule: Schedule,
    /// The configured jitter bound, if any.
    pub jitter: Option<Duration>,
    /// Lower runs first.
    pub priority: i32,
}

impl ScheduledJob {
    /// When the job is next due after `after_ms`, jitter applied.
    pub fn next_run_ms<Tz: TimeZone>(&self, tz: &Tz, after_ms: i64) -> Option<i64> {
        let period = self.schedule.period_ms(tz, after_ms).unwrap_or(0);
        let jitter = jitter_ms(&self.name, self.jitter, period);
        self.schedule.next_run_ms(tz, jitter, after_ms)
    }

    /// What, if changed by a reload, makes the next run be computed again.
    fn key(&self) -> (String, Option<Duration>) {
        (self.schedule.text().to_owned(), self.jitter)
    }
}

/// The jobs in `config` that have a (valid) schedule.
pub fn scheduled_jobs(config: &Config) -> Vec<ScheduledJob> {
    config
        .jobs
        .iter()
        .filter_map(|(name, job)| {
            let schedule = Schedule::parse(job.schedule.as_deref()?).ok()?;
            Some(ScheduledJob {
                name: name.clone(),
                schedule,
                jitter: job.jitter,
                priority: job.priority,
            })
        })
        .collect()
}

/// What the scheduler works on: the jobs, their history, and a way to run them.
#[async_trait]
pub trait JobHost: Send + Sync + 'static {
    /// The scheduled jobs in the config now in force.
    fn jobs(&self) -> Vec<ScheduledJob>;
    /// The start of each job's newest run (Unix ms), read once at start for catch-up.
    async fn last_starts(&self) -> Result<HashMap<String, i64>, String>;
    /// Runs `job` now; returns a line about the run or why it failed.
    async fn run(&self, job: &str, trigger: Trigger) -> Result<String, String>;
}

/// One job's next run.
#[derive(Debug, Clone)]
struct Due {
    at_ms: i64,
    trigger: Trigger,
    key: (String, Option<Duration>),
}

/// The scheduler worker.
pub struct Scheduler<H: JobHost, Tz: TimeZone> {
    host: Arc<H>,
    clock: Arc<dyn Clock>,
    tz: Tz,
    due: BTreeMap<String, Due>,
    started: bool,
}

impl<H: JobHost, Tz: TimeZone + Send + Sync + 'static> Scheduler<H, Tz>
where
    Tz::Offset: Send + Sync,
{
    /// A scheduler over `host`, reading the time from `clock` and reading schedules in
    /// time zone `tz` (the host's local time in the daemon).
    pub fn new(host: Arc<H>, clock: Arc<dyn Clock>, tz: Tz) -> Self {
        Scheduler {
            host,
            clock,
            tz,
            due: BTreeMap::new(),
            started: false,
        }
    }

    /// Brings the plan in line with the jobs in force; at the first call, plans the
    /// catch-up runs.
    async fn sync(&mut self, now: i64) -> Result<(), String> {
        let jobs = self.host.jobs();
        let last_starts = if self.started {
            HashMap::new()
        } else {
            self.host.last_starts().await?
        };
        self.due
            .retain(|name, _| jobs.iter().any(|j| &j.name == name));
        for job in &jobs {
            if self.due.get(&job.name).is_some_and(|d| d.key == job.key()) {
                continue;
            }
            let missed = !self.started
                && last_starts
                    .get(&job.name)
                    .and_then(|last| job.next_run_ms(&self.tz, *last))
                    .is_some_and(|slot| slot <= now);
            let due = if missed {
                Some(Due {
                    at_ms: now,
                    trigger: Trigger::CatchUp,
                    key: job.key(),
                })
            } else {
                job.next_run_ms(&self.tz, now).map(|at_ms| Due {
                    at_ms,
                    trigger: Trigger::Schedule,
                    key: job.key(),
                })
            };
            match due {
                Some(due) => {
                    self.due.insert(job.name.clone(), due);
                }
                None => {
                    self.due.remove(&job.name);
                }
            }
        }
        self.started = true;
        Ok(())
    }

    /// The next run of all, as `JOB at TIME (in SPAN)`.
    fn next_line(&self) -> String {
        let now = self.clock.now_ms();
        match self
            .due
            .iter()
            .min_by_key(|(name, d)| (d.at_ms, (*name).clone()))
        {
            Some((name, due)) => format!(
                "next: {name} at {} (in {})",
                drd_proto::text::time(due.at_ms),
                drd_proto::text::span((due.at_ms - now).max(0))
            ),
            None => "no job has a schedule".to_owned(),
        }
    }
}

#[async_trait]
impl<H: JobHost, Tz: TimeZone + Send + Sync + 'static> drd_core::workers::Worker
    for Scheduler<H, Tz>
where
    Tz::Offset: Send + Sync,
{
    fn name(&self) -> &'static str {
        "scheduler"
    }

    async fn step(&mut self) -> Result<String, String> {
        self.sync(self.clock.now_ms()).await?;
        let now = self.clock.now_ms();
        let priorities: HashMap<String, i32> = self
            .host
            .jobs()
            .into_iter()
            .map(|j| (j.name, j.priority))
            .collect();
        let mut ready: Vec<(i32, String, Trigger)> = self
            .due
            .iter()
            .filter(|(_, d)| d.at_ms <= now)
            .map(|(name, d)| {
                let priority = priorities.get(name).copied().unwrap_or_default();
                (priority, name.clone(), d.trigger)
            })
            .collect();
        ready.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut ran = Vec::new();
        let mut failed = Vec::new();
        for (_, name, trigger) in ready {
            tracing::info!(job = %name, trigger = trigger.as_str(), "scheduled run starting");
            match self.host.run(&name, trigger).await {
                Ok(line) => ran.push(line),
                Err(err) => failed.push(format!("{name}: {err}")),
            }
            // The next run counts from the end of this one: no queued-up slots.
            let end = self.clock.now_ms();
            let job = self.host.jobs().into_iter().find(|j| j.name == name);
            match job.and_then(|j| j.next_run_ms(&self.tz, end).map(|at| (j, at))) {
                Some((job, at_ms)) => {
                    self.due.insert(
                        name,
                        Due {
                            at_ms,
                            trigger: Trigger::Schedule,
                            key: job.key(),
                        },
                    );
                }
                None => {
                    self.due.remove(&name);
                }
            }
        }
        let next = self.next_line();
        if !failed.is_empty() {
            return Err(format!("{}; {next}", failed.join("; ")));
        }
        if ran.is_empty() {
            Ok(next)
        } else {
            Ok(format!("{}; {next}", ran.join("; ")))
        }
    }

    async fn wait(&mut self) {
        let now = self.clock.now_ms();
        let soonest = self.due.values().map(|d| d.at_ms).min();
        let sleep = match soonest {
            Some(at) => Duration::from_millis(u64::try_from(at - now).unwrap_or(0)).min(MAX_SLEEP),
            None => MAX_SLEEP,
        };
        tokio::time::sleep(sleep).await;
    }
}

/// The daemon's [`JobHost`]: the config in force, the catalog's run records, and
/// [`super::run_job`].
pub struct DaemonJobs {
    /// The backups' state (and through it the config and the catalog).
    pub backups: Arc<crate::Backups>,
}

#[async_trait]
impl JobHost for DaemonJobs {
    fn jobs(&self) -> Vec<ScheduledJob> {
        scheduled_jobs(&self.backups.core.config().config)
    }

    async fn last_starts(&self) -> Result<HashMap<String, i64>, String> {
        let daemon_started = drd_core::util::unix_ms(self.backups.core.started);
        let now = super::now_ms();
        self.backups
            .core
            .catalog
            .call("read job history", move |c| {
                let interrupted = super::runs::mark_interrupted(c, daemon_started, now)?;
                if interrupted > 0 {
                    tracing::warn!(
                        interrupted,
                        "runs cut short by an earlier drd marked interrupted"
                    );
                }
                let histories = super::runs::histories(c)?;
                Ok(histories
                    .into_iter()
                    .filter_map(|(job, h)| Some((job, h.last?.started_ms)))
                    .collect())
            })
            .await
            .map_err(|err| err.to_string())
    }

    async fn run(&self, job: &str, trigger: Trigger) -> Result<String, String> {
        let quiet: super::RunProgress = Arc::new(|_| {});
        super::run_job(
            &self.backups,
            job,
            trigger,
            &drd_core::audit::Actor::Daemon,
            quiet,
        )
        .await
        .map(|report| {
            format!(
                "{job} ({}): snapshot {}",
                trigger.as_str(),
                drd_proto::text::short(&report.snapshot.id)
            )
        })
        .map_err(|err| err.to_string())
    }
}

#[cfg(test)]
mod tests;
