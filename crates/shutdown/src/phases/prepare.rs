//! Before anything stops: the preserve phase (backup jobs, within the preserve
//! deadline) and the drain phase (hooks that turn traffic away). Both are left out
//! by `--force`, and both carry on where the drd that died had got to.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use drd_proto::{EventState, Progress, ShutdownPhase};

use super::steps::Step;
use super::Run;
use crate::drivers;
use drd_backup::jobs::{self, Trigger};

impl Run {
    /// Runs the preserve jobs within the preserve deadline. A failed job is a
    /// problem; for a critical service it also holds the service running.
    pub(super) async fn preserve(&mut self) {
        let deadline = tokio::time::Instant::now() + self.plan.preserve_deadline;
        let jobs = self.plan.preserve.clone();
        for (job, services) in jobs {
            if self.aborted() || self.leaving() {
                return;
            }
            let subject = format!("job {job}");
            self.at = format!("preserve {subject}");
            if self.done_earlier(ShutdownPhase::Preserve, &subject) {
                self.emit(
                    ShutdownPhase::Preserve,
                    Some(&job),
                    EventState::Done,
                    "done before drd was restarted".to_owned(),
                );
                continue;
            }
            let id = self.begin(ShutdownPhase::Preserve, vec![subject]).await[0];
            self.emit(
                ShutdownPhase::Preserve,
                Some(&job),
                EventState::Started,
                format!("backup for {}", services.join(", ")),
            );
            let t0 = Instant::now();
            let events = self.events.clone();
            let progress: jobs::RunProgress = Arc::new(move |p: Progress| {
                let _ = events.send(drd_proto::Event::Progress(p));
            });
            let run = jobs::run_job(
                &self.shared.backups,
                &job,
                Trigger::ShutdownPreserve,
                &self.actor,
                progress,
            );
            let result = tokio::select! {
                r = tokio::time::timeout_at(deadline, run) => match r {
                    Ok(Ok(report)) => Ok(report.snapshot.id),
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(_) => Err(format!(
                        "the preserve deadline ({}) passed; the job was cancelled",
                        humantime::format_duration(self.plan.preserve_deadline)
                    )),
                },
                () = self.abort.cancelled() => Err("cancelled by abort".to_owned()),
            };
            let took = format!("{} ms", t0.elapsed().as_millis());
            let action = format!("preserve {job}");
            match result {
                Ok(snapshot) => {
                    let detail = format!("snapshot {snapshot} in {took}");
                    let step = Step::new(
                        ShutdownPhase::Preserve,
                        Some(&job),
                        EventState::Done,
                        true,
                        detail,
                    );
                    // A recovery's `--restore-data` restores this snapshot.
                    let record = serde_json::to_string(&snapshot).ok();
                    self.ended(id, step.audited(action).with_record(record))
                        .await;
                }
                Err(err) => {
                    let step = Step::new(
                        ShutdownPhase::Preserve,
                        Some(&job),
                        EventState::Failed,
                        false,
                        err.clone(),
                    );
                    self.ended(id, step.audited(action)).await;
                    if self.aborted() || self.leaving() {
                        return;
                    }
                    self.problems
                        .push(format!("preserve job {job} failed: {err}"));
                    for service in services {
                        if self.plan.steps[&service].config.critical {
                            let why = format!(
                                "kept running: it is critical and its preserve job {job} failed"
                            );
                            self.hold(&service, &why);
                        }
                    }
                }
            }
        }
    }

    /// Runs the drain hooks, one after another, until an abort or a stopping drd
    /// (the caller's safe point then acts). A failed hook is a problem, and the
    /// shutdown goes on: in an emergency, stopping matters more than draining.
    pub(super) async fn drain(&mut self) {
        let hooks = self.plan.drain.clone();
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for (service, hook) in hooks {
            let n = count.entry(service.clone()).or_default();
            let subject = format!("hook {service} #{n}");
            *n += 1;
            if self.aborted() || self.leaving() {
                return;
            }
            self.at = format!("drain {subject}");
            if self.done_earlier(ShutdownPhase::Drain, &subject) {
                continue;
            }
            let id = self
                .begin(ShutdownPhase::Drain, vec![subject.clone()])
                .await[0];
            self.emit(
                ShutdownPhase::Drain,
                Some(&service),
                EventState::Started,
                hook.run.join(" "),
            );
            let t0 = Instant::now();
            let result = drivers::run_hook(&hook).await;
            let took = t0.elapsed().as_millis();
            let (ok, state, detail) = match result {
                Ok(()) => (
                    true,
                    EventState::Done,
                    format!("{} in {took} ms", hook.run.join(" ")),
                ),
                Err(err) => {
                    self.problems
                        .push(format!("drain hook of {service}: {err}"));
                    (false, EventState::Failed, err)
                }
            };
            let step = Step::new(ShutdownPhase::Drain, Some(&service), state, ok, detail);
            self.ended(id, step.audited(format!("drain {service}")))
                .await;
        }
    }
}
