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
use drd_proto::{ActionTaken, BreakerState, CheckState, MonitorCheck, SwitchState};
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
    /// Fired, and its actions have not all run yet.
    #[serde(default)]
    pending: bool,
}

/// What one cycle decided for a check.
#[derive(Debug, Clone, Copy)]
enum Decision {
    Fired,
    /// Fired before drd stopped, which was before its actions had run.
    Resumed,
    Cleared,
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
    ///
    /// A decision is kept in the catalog and audited before it is shown or acted on,
    /// and a fired check stays marked until its actions have run: drd stopped or
    /// killed at any point neither fires a check twice nor loses its actions (they run
    /// after the restart, audited as resumed).
    pub async fn observe(&self, monitor: &'static str, readings: Vec<Reading>) {
        let now = self.now_ms();
        self.load_monitor(monitor).await;

        let mut checks = {
            let all = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
            all.get(monitor)
                .map(|m| m.checks.clone())
                .unwrap_or_default()
        };
        let gone: Vec<String> = checks
            .keys()
            .filter(|k| !readings.iter().any(|r| &r.check == *k))
            .cloned()
            .collect();
        for check in &gone {
            checks.remove(check);
        }
        let mut decisions = Vec::new();
        for reading in &readings {
            let (kept, view) = checks
                .entry(reading.check.clone())
                .or_insert_with(|| (Kept::default(), empty_view(monitor, &reading.check)));
            if let Some(decision) = decide(kept, view, reading, now) {
                decisions.push(decision);
            }
        }
        let gone: Vec<String> = gone.iter().map(|check| key(monitor, check)).collect();
        self.keep(monitor, &checks, gone, now).await;

        // Each decision is audited before the view shows it: what `drctl monitors`
        // says has fired is in the audit log already.
        let mut decided = Vec::new();
        for (reading, decision) in decisions {
            let source = format!("{monitor}/{}", reading.check);
            let actor = Actor::Monitor(source.clone());
            let (evidence, value) = match &reading.sample {
                Ok(sample) => (sample.evidence.clone(), sample.shown.clone()),
                Err(err) => (err.clone(), String::new()),
            };
            let (state, action) = match decision {
                Decision::Fired => ("fired", "monitor fired"),
                Decision::Resumed => ("fired", "monitor actions resumed"),
                Decision::Cleared => ("cleared", "monitor cleared"),
            };
            let detail = format!(
                "{source} {state}: {evidence} (fire {}, clear {})",
                reading.fire, reading.clear
            );
            if matches!(decision, Decision::Cleared) {
                tracing::info!(check = %source, %evidence, "monitor check cleared");
            } else {
                tracing::warn!(check = %source, %evidence, "{action}");
            }
            self.core.audit(&actor, action, Outcome::Ok, detail).await;
            let condition = Condition {
                source,
                state,
                value,
                evidence,
                at_unix_ms: now,
            };
            decided.push((reading, decision, condition));
        }
        {
            let mut all = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
            all.entry(monitor).or_default().checks = checks;
        }

        let mut acted = false;
        for (reading, decision, condition) in decided {
            if matches!(decision, Decision::Cleared) {
                self.resolve_alert(&condition.source).await;
                continue;
            }
            let taken = self.act(&condition, &reading.actions).await;
            self.note_actions(monitor, &reading.check, taken);
            acted = true;
        }
        if acted {
            let checks = {
                let all = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
                all.get(monitor)
                    .map(|m| m.checks.clone())
                    .unwrap_or_default()
            };
            self.keep(monitor, &checks, Vec::new(), now).await;
        }
    }

    /// Reads `monitor`'s checks from the catalog the first time it reports.
    async fn load_monitor(&self, monitor: &'static str) {
        if self.monitor_loaded(monitor) {
            return;
        }
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

    /// Writes `checks` and removes `gone` in one transaction.
    async fn keep(
        &self,
        monitor: &'static str,
        checks: &BTreeMap<String, (Kept, MonitorCheck)>,
        gone: Vec<String>,
        now: i64,
    ) {
        let kept: Vec<(String, &Kept)> = checks
            .iter()
            .map(|(check, (kept, _))| (key(monitor, check), kept))
            .collect();
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

    /// What is not well now, for a recovery's go / no-go: every check that is not
    /// `ok`, and every deadman switch that is late or down.
    pub async fn not_well(&self) -> Vec<drd_shutdown::Firing> {
        let mut firing: Vec<drd_shutdown::Firing> = self
            .monitor_checks()
            .into_iter()
            .filter(|c| c.state != CheckState::Ok)
            .map(|c| drd_shutdown::Firing {
                source: format!("{}/{}", c.monitor, c.check),
                evidence: format!("{} ({}): {}", c.state, c.value, c.evidence),
            })
            .collect();
        firing.extend(
            self.switches()
                .await
                .into_iter()
                .filter(|s| matches!(s.state, SwitchState::Late | SwitchState::Down))
                .map(|s| drd_shutdown::Firing {
                    source: format!("deadman/{}", s.name),
                    evidence: format!("{}: expects {}", s.state, s.expects),
                }),
        );
        firing
    }

    fn monitor_loaded(&self, monitor: &'static str) -> bool {
        let all = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        all.get(monitor).is_some_and(|m| m.loaded)
    }

    fn note_actions(&self, monitor: &'static str, check: &str, taken: Vec<ActionTaken>) {
        let mut all = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((kept, view)) = all.get_mut(monitor).and_then(|m| m.checks.get_mut(check)) {
            kept.actions.extend(taken);
            kept.pending = false;
            let excess = kept.actions.len().saturating_sub(ACTIONS_KEPT);
            kept.actions.drain(..excess);
            view.actions.clone_from(&kept.actions);
        }
    }
}

/// Moves one check by its reading: its memory, its view, and what was decided.
fn decide(
    kept: &mut Kept,
    view: &mut MonitorCheck,
    reading: &Reading,
    now: i64,
) -> Option<(Reading, Decision)> {
    let mut check = Check::restore(reading.rule, kept.memory.clone());
    view.fire.clone_from(&reading.fire);
    view.clear.clone_from(&reading.clear);
    view.breaker = reading.breaker;
    let mut decision = None;
    match &reading.sample {
        Ok(sample) => {
            view.error = None;
            view.value.clone_from(&sample.shown);
            match check.observe(sample.value, now) {
                Some(transition) => {
                    kept.evidence.clone_from(&sample.evidence);
                    decision = Some(match transition {
                        Transition::Fired => Decision::Fired,
                        Transition::Cleared => Decision::Cleared,
                    });
                }
                None if kept.pending
                    && matches!(check.state(), CheckState::Firing | CheckState::Clearing) =>
                {
                    decision = Some(Decision::Resumed);
                }
                None => {}
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
    let firing = matches!(check.state(), CheckState::Firing | CheckState::Clearing);
    kept.pending = firing && (kept.pending || matches!(decision, Some(Decision::Fired)));
    view.state = check.state();
    view.since_unix_ms = check.since_ms();
    decision.map(|d| (reading.clone(), d))
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
