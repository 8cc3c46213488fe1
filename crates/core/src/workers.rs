//! Background work as workers under one supervisor.
//!
//! A worker does one step of work at a time and then waits for the next; the
//! supervisor runs each in its own task, cancels them all through one token, and keeps
//! a status line per worker for `drctl status`. Monitors, the scheduler and drills plug
//! in here as they are built.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use drd_proto::{WorkerState, WorkerStatus};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::util::unix_ms_now;

/// One kind of background work.
#[async_trait]
pub trait Worker: Send + 'static {
    /// A stable name, shown in `drctl status`.
    fn name(&self) -> &'static str;

    /// Does one step of work and returns a line describing what it did; an error is
    /// shown in status and the worker carries on after its next wait.
    async fn step(&mut self) -> Result<String, String>;

    /// Waits until the next step is due.
    async fn wait(&mut self);

    /// Runs once after the daemon asked the worker to stop, before its task ends: for
    /// what must not be lost to a stop (events still to be written down). The daemon
    /// waits for it up to its stop deadline. By default, nothing.
    async fn finish(&mut self) {}
}

/// Runs workers and remembers what each is doing.
#[derive(Clone)]
pub struct Supervisor {
    token: CancellationToken,
    tracker: TaskTracker,
    statuses: Arc<Mutex<BTreeMap<&'static str, WorkerStatus>>>,
}

impl Supervisor {
    /// A supervisor whose workers stop when `token` is cancelled; their tasks are
    /// tracked by `tracker`.
    pub fn new(token: CancellationToken, tracker: TaskTracker) -> Supervisor {
        Supervisor {
            token,
            tracker,
            statuses: Arc::default(),
        }
    }

    /// Starts `worker` in its own task.
    pub fn spawn(&self, mut worker: impl Worker) {
        let name = worker.name();
        self.update(name, |s| s.detail = "starting".to_owned());
        let this = self.clone();
        self.tracker.spawn(async move {
            loop {
                this.update(name, |s| s.state = WorkerState::Busy);
                let result = tokio::select! {
                    () = this.token.cancelled() => break,
                    result = worker.step() => result,
                };
                this.update(name, |s| {
                    s.last_step_unix_ms = Some(unix_ms_now());
                    match result {
                        Ok(detail) => {
                            s.steps += 1;
                            s.state = WorkerState::Idle;
                            s.detail = detail;
                        }
                        Err(err) => {
                            tracing::warn!(worker = name, cause = %err, "worker step failed");
                            s.errors += 1;
                            s.state = WorkerState::Failing;
                            s.last_error = Some(err);
                        }
                    }
                });
                tokio::select! {
                    () = this.token.cancelled() => break,
                    () = worker.wait() => {}
                }
            }
            worker.finish().await;
            this.update(name, |s| s.state = WorkerState::Stopped);
        });
    }

    /// Runs `task` on the daemon's tracker: work that is not a loop (an emergency
    /// shutdown's coordinator) but that a stopping daemon must wait for. It watches
    /// the token itself, to stop at its next safe point.
    pub fn spawn_task(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task);
    }

    /// Every worker's status, by name.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn update(&self, name: &'static str, f: impl FnOnce(&mut WorkerStatus)) {
        let mut statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        let status = statuses.entry(name).or_insert_with(|| WorkerStatus {
            name: name.to_owned(),
            state: WorkerState::Idle,
            detail: String::new(),
            steps: 0,
            errors: 0,
            last_step_unix_ms: None,
            last_error: None,
        });
        f(status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Ticker {
        every: Duration,
        fail_on: u32,
        n: u32,
    }

    #[async_trait]
    impl Worker for Ticker {
        fn name(&self) -> &'static str {
            "ticker"
        }
        async fn step(&mut self) -> Result<String, String> {
            self.n += 1;
            if self.n == self.fail_on {
                return Err("boom".to_owned());
            }
            Ok(format!("tick {}", self.n))
        }
        async fn wait(&mut self) {
            tokio::time::sleep(self.every).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn steps_on_schedule_records_failures_and_stops_on_cancel() {
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let supervisor = Supervisor::new(token.clone(), tracker.clone());
        supervisor.spawn(Ticker {
            every: Duration::from_secs(10),
            fail_on: 2,
            n: 0,
        });
        tokio::time::sleep(Duration::from_secs(35)).await;
        let status = supervisor.statuses().remove(0);
        assert_eq!(status.name, "ticker");
        assert_eq!(status.steps, 3, "{status:?}");
        assert_eq!(status.errors, 1);
        assert_eq!(status.last_error.as_deref(), Some("boom"));
        assert_eq!(status.detail, "tick 4");

        token.cancel();
        tracker.close();
        tracker.wait().await;
        assert_eq!(supervisor.statuses()[0].state, WorkerState::Stopped);
    }
}
