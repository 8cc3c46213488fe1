//! One cycle of a monitor's readings turned into decisions: each check's state moves
//! under its rule, a check that fires runs its actions through the [`policy`], every
//! decision goes to the audit log with its evidence, and each check's memory goes to
//! the catalog in one write, so a restart carries on where it stood.
//!
//! Monitors differ only in what they read; this is the one place that decides.
//!
//! [`policy`]: crate::policy

use std::collections::BTreeMap;
use std::sync::PoisonError;

use drd_core::audit::{Actor, Outcome};
use drd_core::config::policy::ActionConfig;
use drd_core::config::threshold::{Confirm, Direction, Rule};
use drd_proto::{ActionTaken, BreakerState, CheckState, MonitorCheck};
use serde::{Deserialize, Serialize};

use crate::condition::{Check, CheckMemory, Transition};
use crate::policy::Condition;
use crate::{store, Watch};

/// How many of a check's newest actions `drctl monitors` shows.
const ACTIONS_KEPT: usize = 10;

/// What a monitor read for one of its checks this cycle, and what decides it.
#[derive(Debug, Clone)]
pub struct Reading {
    /// The check's name within its monitor: `disk /var`, `partition`, `service api`.
    pub check: String,
    /// Its thresholds and confirmation.
    pub rule: Rule,
    /// What it does when it fires.
    pub actions: Vec<ActionConfig>,
    /// The value, or why it could not be read (then nothing is decided this cycle).
    pub sample: Result<Sample, String>,
    /// The fire threshold in words (`>= 95% for 2m`).
    pub fire: String,
    /// The clear threshold in words (`<= 90%`).
    pub clear: String,
    /// The breaker in front of the probe, for service health checks.
    pub breaker: Option<BreakerState>,
}

/// One sampled value.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The number the rule compares.
    pub value: f64,
    /// The value for people: `96.2% used`.
    pub shown: String,
    /// What a decision on it is based on, for the audit log and `drctl monitors`.
    pub evidence: String,
}

/// What is kept of a check between cycles and restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Kept {
    memory: CheckMemory,
    /// The evidence of the newest decision.
    evidence: String,
    /// The newest actions, oldest first.
    actions: Vec<ActionTaken>,
}

/// A monitor's checks as of its newest cycle.
#[derive(Debug, Default)]
pub(crate) struct Monitor {
    loaded: bool,
    checks: BTreeMap<String, (Kept, MonitorCheck)>,
}

fn key(monitor: &str, check: &str) -> String {
    format!("check/{monitor}/{check}")
}

impl Watch {
    /// Feeds one cycle of `monitor`'s readings. Checks of the monitor that are not
    /// among them (taken out of the config) are forgotten.
    pub async fn observe(&self, monitor: &'static str, readings: Vec<Reading>) {
        let now = self.now_ms();
        if !self.monitor_loaded(monitor) {
            let kept = store::load::<Kept>(&self.core.catalog, &key(monitor, ""))
                .await
                .unwrap_or_else(|err| {
                    tracing::warn!(monitor, cause = %err, "cannot read monitor state; starting afresh");
                    BTreeMap::new()
                });
            let mut all = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = all.entry(monitor).or_default();
            for (k, kept) in kept {
                let check = k[key(monitor, "").len()..].to_owned();
                let mut view = empty_view(monitor, &check);
                view.state = kept.memory.state;
                view.since_unix_ms = kept.memory.since_ms;
                view.evidence.clone_from(&kept.evidence);
                view.actions.clone_from(&kept.actions);
                entry.checks.insert(check, (kept, view));
            }
            entry.loaded = true;
        }

        let mut decisions = Vec::new();
        let gone = {
            let mut all = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = all.entry(monitor).or_default();
            let gone: Vec<String> = entry
                .checks
                .keys()
                .filter(|k| !readings.iter().any(|r| &r.check == *k))
                .cloned()
                .collect();
            for check in &gone {
                entry.checks.remove(check);
            }
            for reading in &readings {
                let (kept, view) = entry
                    .checks
                    .entry(reading.check.clone())
                    .or_insert_with(|| (Kept::default(), empty_view(monitor, &reading.check)));
                let mut check = Check::restore(reading.rule, kept.memory.clone());
                view.fire.clone_from(&reading.fire);
                view.clear.clone_from(&reading.clear);
                view.breaker = reading.breaker;
                match &reading.sample {
                    Ok(sample) => {
                        view.error = None;
                        view.value.clone_from(&sample.shown);
                        if let Some(transition) = check.observe(sample.value, now) {
                            kept.evidence.clone_from(&sample.evidence);
                            decisions.push((reading.clone(), sample.clone(), transition));
                        }
                        if kept.evidence.is_empty() || check.state() != CheckState::Ok {
                            view.evidence.clone_from(&sample.evidence);
                        } else {
                            view.evidence.clone_from(&kept.evidence);
                        }
                    }
                    Err(err) => view.error = Some(err.clone()),
                }
                kept.memory = check.memory().clone();
                view.state = check.state();
                view.since_unix_ms = check.since_ms();
            }
            gone
        };

        for (reading, sample, transition) in decisions {
            let condition = Condition {
                source: format!("{monitor}/{}", reading.check),
                state: match transition {
                    Transition::Fired => "fired",
                    Transition::Cleared => "cleared",
                },
                value: sample.shown.clone(),
                evidence: sample.evidence.clone(),
                at_unix_ms: now,
            };
            let actor = Actor::Monitor(condition.source.clone());
            let detail = format!(
                "{} {}: {} (fire {}, clear {})",
                condition.source, condition.state, condition.evidence, reading.fire, reading.clear
            );
            match transition {
                Transition::Fired => {
                    tracing::warn!(check = %condition.source, evidence = %condition.evidence, "monitor check fired");
                    self.core
                        .audit(&actor, "monitor fired", Outcome::Ok, detail)
                        .await;
                    let taken = self.act(&condition, &reading.actions).await;
                    self.note_actions(monitor, &reading.check, taken);
                }
                Transition::Cleared => {
                    tracing::info!(check = %condition.source, evidence = %condition.evidence, "monitor check cleared");
                    self.core
                        .audit(&actor, "monitor cleared", Outcome::Ok, detail)
                        .await;
                }
            }
        }

        let kept: Vec<(String, Kept)> = {
            let all = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
            all.get(monitor)
                .map(|m| {
                    m.checks
                        .iter()
                        .map(|(check, (kept, _))| (key(monitor, check), kept.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let gone = gone.iter().map(|check| key(monitor, check)).collect();
        if let Err(err) = store::save(&self.core.catalog, &kept, gone, now).await {
            tracing::warn!(monitor, cause = %err, "cannot keep monitor state");
        }
    }

    /// Every check of every monitor, by monitor then check.
    pub fn monitor_checks(&self) -> Vec<MonitorCheck> {
        let all = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        all.values()
            .flat_map(|m| m.checks.values().map(|(_, view)| view.clone()))
            .collect()
    }

    fn monitor_loaded(&self, monitor: &'static str) -> bool {
        let all = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        all.get(monitor).is_some_and(|m| m.loaded)
    }

    fn note_actions(&self, monitor: &'static str, check: &str, taken: Vec<ActionTaken>) {
        let mut all = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((kept, view)) = all.get_mut(monitor).and_then(|m| m.checks.get_mut(check)) {
            kept.actions.extend(taken);
            let excess = kept.actions.len().saturating_sub(ACTIONS_KEPT);
            kept.actions.drain(..excess);
            view.actions.clone_from(&kept.actions);
        }
    }
}

/// A rule's thresholds in words: (`>= 95% for 2m`, `<= 90%`).
pub fn thresholds_in_words(rule: &Rule, unit: &str) -> (String, String) {
    let (fire_op, clear_op) = match rule.direction {
        Direction::Above => (">=", "<="),
        Direction::Below => ("<=", ">="),
    };
    let confirm = |confirm: Confirm| match confirm {
        Confirm::For(0) => String::new(),
        Confirm::For(ms) => format!(" for {}s", ms / 1000),
        Confirm::Samples { k, n } => format!(" in {k} of {n} samples"),
    };
    (
        format!("{fire_op} {}{unit}{}", rule.fire, confirm(rule.confirm)),
        format!(
            "{clear_op} {}{unit}{}",
            rule.clear,
            confirm(rule.clear_confirm.unwrap_or(rule.confirm))
        ),
    )
}

fn empty_view(monitor: &str, check: &str) -> MonitorCheck {
    MonitorCheck {
        monitor: monitor.to_owned(),
        check: check.to_owned(),
        state: CheckState::Ok,
        value: String::new(),
        fire: String::new(),
        clear: String::new(),
        since_unix_ms: None,
        evidence: String::new(),
        breaker: None,
        error: None,
        actions: Vec::new(),
    }
}
