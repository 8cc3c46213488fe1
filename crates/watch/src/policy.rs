//! What a decision does: the actions a condition names (alert, backup, emergency
//! backup, emergency shutdown, a command), each with its cooldown, and the one
//! [`Watch::alert`] that every alert goes through.
//!
//! Automatic emergency shutdown is off unless `[policy] automatic_shutdown = true`;
//! while off, a shutdown action is logged and audited as "would shut down" with its
//! evidence, and alerts. Long actions (backups, commands, the shutdown itself) run in
//! tasks of their own: a monitor never waits for them.

use std::sync::Arc;

use drd_alerts::Raise;
use drd_backup::jobs::{self, Trigger};
use drd_core::audit::{Actor, Outcome};
use drd_core::command::Command;
use drd_core::config::policy::{Action, ActionConfig};
use drd_core::config::Config;
use drd_proto::{ActionTaken, Severity};
use drd_shutdown::StartRequest;
use serde::Serialize;

use crate::{store, Watch};

/// What fired (or cleared, or went down), as actions see it; an `exec` action gets
/// it as JSON on stdin.
#[derive(Debug, Clone, Serialize)]
pub struct Condition {
    /// Who decided: `resources/disk /var`, `deadman/nightly-export`.
    pub source: String,
    /// `fired`, `cleared`, `down`.
    pub state: &'static str,
    /// The value that decided, in words.
    pub value: String,
    /// What the decision is based on.
    pub evidence: String,
    /// When (Unix ms).
    pub at_unix_ms: i64,
}

impl Watch {
    /// Runs `actions` for `condition`, each unless its cooldown holds it back, and
    /// says what came of each.
    pub async fn act(&self, condition: &Condition, actions: &[ActionConfig]) -> Vec<ActionTaken> {
        let mut taken = Vec::new();
        for (i, config) in actions.iter().enumerate() {
            let Ok(action) = config.action() else {
                continue; // refused by check-config; a loaded config has none
            };
            let cooldown_key = format!("cooldown/{}/{i} {action}", condition.source);
            let now = self.now_ms();
            let last = store::load::<i64>(&self.core.catalog, &cooldown_key)
                .await
                .ok()
                .and_then(|m| m.get(&cooldown_key).copied());
            let cooldown_ms = i64::try_from(config.cooldown().as_millis()).unwrap_or(i64::MAX);
            let outcome = match last {
                Some(at) if now.saturating_sub(at) < cooldown_ms => {
                    format!(
                        "held back: it ran {}s ago, cooldown {}s",
                        (now - at) / 1000,
                        cooldown_ms / 1000
                    )
                }
                _ => {
                    let outcome = self.run_action(condition, &action).await;
                    // Kept once it has run: drd stopped half-way runs it again.
                    if let Err(err) =
                        store::save(&self.core.catalog, &[(cooldown_key, now)], Vec::new(), now)
                            .await
                    {
                        tracing::warn!(cause = %err, "cannot keep an action's cooldown");
                    }
                    outcome
                }
            };
            taken.push(ActionTaken {
                at_unix_ms: now,
                action: action.to_string(),
                outcome,
            });
        }
        taken
    }

    /// Alerts people: the audit log, then drd-alerts (the journal at once, the
    /// receivers through the outbox). The same source alerting again while its alert
    /// is open is that alert, not a new one.
    pub async fn alert(&self, severity: Severity, condition: &Condition) {
        let summary = if condition.value.is_empty() {
            format!("{} {}", condition.source, condition.state)
        } else {
            format!(
                "{} {}: {}",
                condition.source, condition.state, condition.value
            )
        };
        self.core
            .audit(
                &Actor::Monitor(condition.source.clone()),
                "alert",
                Outcome::Ok,
                format!(
                    "{}: {} {}: {}",
                    severity.as_str(),
                    condition.source,
                    condition.state,
                    condition.evidence
                ),
            )
            .await;
        let raise = Raise {
            severity,
            source: condition.source.clone(),
            summary,
            evidence: condition.evidence.clone(),
        };
        if let Err(err) = self.alerts.raise(raise).await {
            tracing::error!(source = %condition.source, cause = %err, "cannot queue the alert for its receivers");
        }
    }

    /// The condition of `source` cleared: its open alert, if any, is resolved and its
    /// receivers told.
    pub async fn resolve_alert(&self, source: &str) {
        if let Err(err) = self.alerts.resolve(source).await {
            tracing::error!(source, cause = %err, "cannot queue the alert's resolution");
        }
    }

    /// Runs one action; what came of it, in words.
    async fn run_action(&self, condition: &Condition, action: &Action) -> String {
        let actor = Actor::Monitor(condition.source.clone());
        match action {
            Action::Alert(severity) => {
                self.alert(*severity, condition).await;
                "sent".to_owned()
            }
            Action::Backup(names) => {
                for job in names.clone() {
                    let (backups, actor) = (self.backups.clone(), actor.clone());
                    self.core.workers.spawn_task(async move {
                        let quiet: jobs::RunProgress = Arc::new(|_| {});
                        if let Err(err) =
                            jobs::run_job(&backups, &job, Trigger::Monitor, &actor, quiet).await
                        {
                            tracing::warn!(job, cause = %err, "backup action failed");
                        }
                    });
                }
                "started".to_owned()
            }
            Action::EmergencyBackup => {
                let (backups, actor) = (self.backups.clone(), actor.clone());
                self.core.workers.spawn_task(async move {
                    let quiet: jobs::RunProgress = Arc::new(|_| {});
                    if let Err(err) = jobs::emergency::run_emergency(&backups, &actor, quiet).await
                    {
                        tracing::warn!(cause = %err, "emergency backup action failed");
                    }
                });
                "started".to_owned()
            }
            Action::Shutdown {
                trigger,
                only,
                force,
            } => {
                if !self.core.config().config.policy.automatic_shutdown {
                    let would = format!(
                        "would shut down: {action}; {} (automatic_shutdown is off in [policy])",
                        condition.evidence
                    );
                    tracing::error!(check = %condition.source, "{would}");
                    self.core
                        .audit(
                            &actor,
                            "emergency shutdown",
                            Outcome::Refused,
                            would.clone(),
                        )
                        .await;
                    self.alert(
                        Severity::Critical,
                        &Condition {
                            evidence: would.clone(),
                            ..condition.clone()
                        },
                    )
                    .await;
                    return would;
                }
                let request = StartRequest {
                    trigger: *trigger,
                    force: *force,
                    only: only.clone(),
                    reason: Some(format!(
                        "{} {}: {}",
                        condition.source, condition.state, condition.evidence
                    )),
                    resume: false,
                };
                match drd_shutdown::start(&self.shutdowns, request, actor.clone()).await {
                    Ok(following) => format!("started shutdown #{}", following.run_id),
                    Err(err) => {
                        self.core
                            .audit(
                                &actor,
                                "emergency shutdown",
                                Outcome::Refused,
                                err.to_string(),
                            )
                            .await;
                        format!("refused: {err}")
                    }
                }
            }
            Action::Exec { argv, timeout } => {
                let input = serde_json::to_vec(condition).unwrap_or_default();
                let command = Command::new(argv, *timeout).stdin(input);
                let (core, what) = (self.core.clone(), action.to_string());
                self.core.workers.spawn_task(async move {
                    let (outcome, detail) = match command.run().await {
                        Ok(done) if done.success() => (Outcome::Ok, format!("{what}: {done}")),
                        Ok(done) => (Outcome::Failed, format!("{what}: {done}")),
                        Err(err) => (Outcome::Failed, format!("{what}: {err}")),
                    };
                    core.audit(&actor, "exec action", outcome, detail).await;
                });
                "started".to_owned()
            }
        }
    }
}

/// What `actions` would do, one line each, without doing any of it: the
/// network_partition drill reports its policy this way. A shutdown names the services
/// its plan would stop, and says when `[policy] automatic_shutdown` is off, so it
/// would only be logged as "would shut down" and alerted.
pub async fn would_do(config: &Config, actions: &[ActionConfig]) -> Vec<String> {
    let mut lines = Vec::new();
    for config_action in actions {
        let Ok(action) = config_action.action() else {
            continue; // refused by check-config; a loaded config has none
        };
        lines.push(match &action {
            Action::Alert(severity) => format!("would alert ({})", severity.as_str()),
            Action::Backup(jobs) => format!("would back up {}", jobs.join(", ")),
            Action::EmergencyBackup => {
                "would run an emergency backup of the critical jobs".to_owned()
            }
            Action::Exec { argv, .. } => format!("would run {}", argv.join(" ")),
            Action::Shutdown { only, force, .. } => {
                let stops = match drd_shutdown::dry_run(config, only, *force).await {
                    Ok(plan) => {
                        let names: Vec<String> = plan
                            .levels
                            .iter()
                            .flatten()
                            .map(|s| s.name.clone())
                            .collect();
                        if names.is_empty() {
                            "would shut down no service (none configured)".to_owned()
                        } else {
                            format!("would shut down {}", names.join(", "))
                        }
                    }
                    Err(err) => format!("would try to shut down, but cannot plan it: {err}"),
                };
                if config.policy.automatic_shutdown {
                    format!("{stops} ({action})")
                } else {
                    format!(
                        "{stops} ({action}); automatic_shutdown is off in [policy], so it \
                         would only log \"would shut down\" and alert"
                    )
                }
            }
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use drd_core::clock::{Clock, ManualClock};
    use drd_core::Core;

    use super::*;

    fn watch(dir: &Path, clock: Arc<ManualClock>) -> Watch {
        let core = Arc::new(Core::for_test(dir, ""));
        let backups = Arc::new(drd_backup::Backups::new(core.clone()));
        let shutdowns = Arc::new(drd_shutdown::Shutdowns::new(core.clone(), backups.clone()));
        let alerts = Arc::new(drd_alerts::Alerts::new(core.clone(), clock.clone()));
        Watch::new(core, backups, shutdowns, alerts, clock)
    }

    fn condition(at: i64) -> Condition {
        Condition {
            source: "resources/disk /var".to_owned(),
            state: "fired",
            value: "96% used".to_owned(),
            evidence: "/var: 96% used".to_owned(),
            at_unix_ms: at,
        }
    }

    #[tokio::test]
    async fn an_action_waits_out_its_cooldown_even_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::at(1_000_000));
        let actions: Vec<ActionConfig> =
            vec![toml::from_str("alert = \"warning\"\ncooldown = \"10m\"").unwrap()];
        let first = watch(dir.path(), clock.clone());
        let taken = first.act(&condition(1_000_000), &actions).await;
        assert_eq!(taken[0].outcome, "sent");
        first.core.catalog.close().await;

        // Five minutes on, in a new daemon: held back.
        clock.advance(5 * 60_000);
        let again = watch(dir.path(), clock.clone());
        let taken = again.act(&condition(clock.now_ms()), &actions).await;
        assert_eq!(taken[0].action, "alert warning");
        assert_eq!(
            taken[0].outcome,
            "held back: it ran 300s ago, cooldown 600s"
        );
        // Ten minutes after the first: it runs.
        clock.advance(5 * 60_000);
        let taken = again.act(&condition(clock.now_ms()), &actions).await;
        assert_eq!(taken[0].outcome, "sent");
        let alerts = again.core.audit.list(None, 0).await.unwrap();
        assert_eq!(alerts.iter().filter(|e| e.action == "alert").count(), 2);
    }
}
