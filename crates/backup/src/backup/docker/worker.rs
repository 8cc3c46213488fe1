//! The daemon's side of container holds, as a worker: at start it brings back the
//! containers a killed drd left paused or stopped, then it writes every pause, stop
//! and return that a backup makes to the audit log.
//!
//! Backups run on blocking threads and report to the [`HoldRegistry`]; the audit log
//! is async. This worker is the bridge, so that `drctl status` shows it with the
//! other background work and the daemon stops it with the others.

use std::sync::Arc;

use async_trait::async_trait;
use drd_core::audit::{Actor, AuditLog, Outcome};
use tokio::sync::mpsc::UnboundedReceiver;

use super::held::{HoldEvent, HoldRegistry};

/// Resumes what an earlier drd left held, then audits holds as backups make them.
pub struct HoldWorker {
    holds: Arc<HoldRegistry>,
    audit: AuditLog,
    events: UnboundedReceiver<HoldEvent>,
    /// Whether the first step (the resume at start) has run.
    resumed: bool,
    /// Events received by the last wait, for the next step to audit.
    pending: Vec<HoldEvent>,
}

impl HoldWorker {
    /// A worker for `holds`, writing to `audit`. It subscribes to the registry now, so
    /// no hold made after this call goes unaudited.
    pub fn new(holds: Arc<HoldRegistry>, audit: AuditLog) -> HoldWorker {
        HoldWorker {
            events: holds.subscribe(),
            holds,
            audit,
            resumed: false,
            pending: Vec::new(),
        }
    }

    /// Records an audit entry; a catalog failure is logged, since what it records has
    /// happened already.
    async fn record(&self, action: &str, ok: bool, detail: String) {
        let outcome = if ok { Outcome::Ok } else { Outcome::Failed };
        if let Err(err) = self
            .audit
            .record(&Actor::Daemon, action, outcome, detail)
            .await
        {
            tracing::error!(cause = %err, action, "cannot write the audit log");
        }
    }

    /// Audits the events received so far, in order; says how many.
    async fn audit_pending(&mut self) -> usize {
        let events = std::mem::take(&mut self.pending);
        let count = events.len();
        for event in events {
            self.record(event.action, event.ok, event.detail).await;
        }
        count
    }

    /// Brings back the containers a killed drd left paused or stopped mid-backup, and
    /// audits each one.
    async fn resume_at_start(&self) -> Result<String, String> {
        if !self.holds.record_file().exists() {
            return Ok("no container left held by an earlier drd".to_owned());
        }
        let holds = self.holds.clone();
        let resumed = tokio::task::spawn_blocking(move || holds.resume_all())
            .await
            .map_err(|join| format!("resuming held containers failed: {join}"))?;
        let mut failed = 0;
        for one in &resumed {
            if one.outcome.is_ok() {
                tracing::warn!(container = %one.name, "{}", one.detail());
            } else {
                tracing::error!(container = %one.name, "{}", one.detail());
                failed += 1;
            }
            self.record("resume container", one.outcome.is_ok(), one.detail())
                .await;
        }
        if failed > 0 {
            return Err(format!(
                "{failed} of {} containers left held by an earlier drd could not be resumed \
                 (the audit log says why); the next backup tries again",
                resumed.len()
            ));
        }
        Ok(format!(
            "resumed {} containers left held by an earlier drd",
            resumed.len()
        ))
    }
}

#[async_trait]
impl drd_core::workers::Worker for HoldWorker {
    fn name(&self) -> &'static str {
        "docker-holds"
    }

    async fn step(&mut self) -> Result<String, String> {
        if !self.resumed {
            self.resumed = true;
            return self.resume_at_start().await;
        }
        let Some(last) = self
            .pending
            .last()
            .map(|e| format!("{}: {}", e.action, e.detail))
        else {
            return Ok("waiting for backups to hold containers".to_owned());
        };
        let count = self.audit_pending().await;
        Ok(format!("audited {count} container holds; last {last}"))
    }

    async fn wait(&mut self) {
        match self.events.recv().await {
            Some(event) => self.pending.push(event),
            // The registry dropped its sender: nothing more will come.
            None => std::future::pending().await,
        }
        // Whatever else came meanwhile goes into the same step.
        while let Ok(event) = self.events.try_recv() {
            self.pending.push(event);
        }
    }

    /// A stopping daemon cancels its backups, and they bring their containers back
    /// after the stop began: audit those releases too, until no backup holds one (or
    /// the daemon's stop deadline ends the wait).
    async fn finish(&mut self) {
        loop {
            // Checked before the queue is read: a release reports while it holds the
            // registry, so once nothing is held its event is already queued.
            let held = self.holds.held_by_backups();
            while let Ok(event) = self.events.try_recv() {
                self.pending.push(event);
            }
            self.audit_pending().await;
            if !held {
                return;
            }
            tokio::time::sleep(FINISH_POLL).await;
        }
    }
}

/// How often a stopping worker looks again for a release still under way.
const FINISH_POLL: std::time::Duration = std::time::Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use drd_proto::{WorkerState, WorkerStatus};
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::backup::docker::held::RECORD_FILE;
    use drd_core::catalog::Catalog;
    use drd_core::workers::Supervisor;

    /// The worker's status once it has ended `n` steps, failed or not.
    async fn after_steps(supervisor: &Supervisor, n: u64) -> WorkerStatus {
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = supervisor.statuses().remove(0);
            if status.steps + status.errors >= n || std::time::Instant::now() > give_up {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The audit log as (action, outcome, detail).
    async fn audited(audit: &AuditLog) -> Vec<(String, String, String)> {
        let entries = audit.list(None, 0).await.unwrap();
        entries
            .into_iter()
            .map(|e| (e.action, e.outcome.to_string(), e.detail))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn resumes_at_start_then_audits_every_hold_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        // A record the start cannot read: its resume fails, and no engine is needed.
        std::fs::write(dir.path().join(RECORD_FILE), "{ not json").unwrap();
        let holds = Arc::new(HoldRegistry::new(dir.path()));
        let audit = AuditLog::new(Catalog::open(&dir.path().join("catalog.db")).unwrap());
        let (token, tracker) = (CancellationToken::new(), TaskTracker::new());
        let supervisor = Supervisor::new(token.clone(), tracker.clone());
        supervisor.spawn(HoldWorker::new(holds.clone(), audit.clone()));

        let status = after_steps(&supervisor, 1).await;
        let rows = audited(&audit).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            (rows[0].0.as_str(), rows[0].1.as_str()),
            ("resume container", "failed")
        );
        assert!(rows[0].2.contains("cannot read"), "{rows:?}");
        assert_eq!(status.name, "docker-holds");
        assert_eq!(status.errors, 1, "{status:?}");
        assert!(
            status
                .last_error
                .as_deref()
                .unwrap_or_default()
                .contains("could not be resumed"),
            "{status:?}"
        );

        // What backups report later is audited in order, however long the wait.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        holds.report(
            "pause container",
            true,
            "paused web for a backup".to_owned(),
        );
        holds.report(
            "unpause container",
            true,
            "unpaused web after the backup".to_owned(),
        );
        let status = after_steps(&supervisor, 2).await;
        assert_eq!(status.steps, 1, "{status:?}");
        assert!(
            status.detail.contains("unpaused web after the backup"),
            "{status:?}"
        );
        let rows = audited(&audit).await;
        let actions: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            actions,
            ["resume container", "pause container", "unpause container"]
        );
        assert_eq!(rows[2].2, "unpaused web after the backup");

        token.cancel();
        tracker.close();
        tracker.wait().await;
        assert_eq!(supervisor.statuses()[0].state, WorkerState::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_with_nothing_held_audits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let holds = Arc::new(HoldRegistry::new(dir.path()));
        let audit = AuditLog::new(Catalog::open(&dir.path().join("catalog.db")).unwrap());
        let mut worker = HoldWorker::new(holds, audit.clone());
        let detail = drd_core::workers::Worker::step(&mut worker).await.unwrap();
        assert!(detail.contains("no container left held"), "{detail}");
        assert!(audit.list(None, 0).await.unwrap().is_empty());
    }
}
