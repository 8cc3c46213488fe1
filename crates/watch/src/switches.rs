//! The deadman switches at run time: pings (`drctl heartbeat`), the list `drctl
//! deadman` shows, pause and resume, and the worker that watches the clock. Each
//! switch's memory is in the catalog under `switch/NAME`, so a restart of drd loses
//! nothing; a switch whose deadline passed while drd itself was down gets one grace
//! from drd's start instead of a false "down" (audited as such).
//!
//! The decisions are [`crate::deadman`]'s; this module keeps their memory, audits each
//! transition (by `deadman/NAME`, or the peer that paused or resumed it), alerts when a
//! switch is late and runs `on_down` through the [`crate::policy`] when it goes down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drd_core::audit::{Actor, Outcome};
use drd_core::config::deadman::{DeadmanConfig, Expect};
use drd_core::config::policy::ActionConfig;
use drd_core::workers::Worker;
use drd_proto::text::time;
use drd_proto::{ActionTaken, PingKind, Severity, SwitchInfo, SwitchState};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard};

use crate::deadman::{DownReason, Switch, SwitchMemory, SwitchTransition};
use crate::policy::Condition;
use crate::{store, Watch};

/// How many of a switch's newest actions `drctl deadman` shows.
const ACTIONS_KEPT: usize = 10;
/// The worker looks at the clock at least this often.
const TICK: Duration = Duration::from_secs(1);

/// What is kept of a switch between pings and restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Kept {
    memory: SwitchMemory,
    /// The newest actions its going down took, oldest first.
    actions: Vec<ActionTaken>,
}

/// Every switch's memory, loaded from the catalog on first use (drd's start), by name.
/// One lock orders pings, pauses and ticks, and each change is written before it is
/// let go, so what the catalog holds is what the next one starts from.
#[derive(Default)]
pub struct Switches {
    kept: Mutex<Option<BTreeMap<String, Kept>>>,
}

/// Why a switch request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// No such switch; the message names the known ones.
    #[error("{0}")]
    NotFound(String),
    /// The change could not be kept in the catalog.
    #[error("cannot keep the switch's state: {0}; check the catalog (journalctl -u drd)")]
    Catalog(#[from] drd_core::catalog::CatalogError),
}

/// A transition to audit and act on once the lock is let go.
struct Decision {
    name: String,
    transition: SwitchTransition,
    evidence: String,
    on_down: Vec<ActionConfig>,
}

fn key(name: &str) -> String {
    format!("switch/{name}")
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn switch(config: &DeadmanConfig, memory: SwitchMemory) -> Switch<Expect> {
    Switch::restore(
        config.expect(),
        ms(config.grace()),
        config.max_runtime.map(ms),
        memory,
    )
}

fn info(name: &str, config: &DeadmanConfig, kept: &Kept) -> SwitchInfo {
    let s = switch(config, kept.memory.clone());
    let m = &kept.memory;
    SwitchInfo {
        name: name.to_owned(),
        state: m.state,
        last_ping: m.last_ping,
        last_exit_code: m.last_exit_code,
        next_deadline_unix_ms: s.deadline_ms(),
        down_at_unix_ms: s.down_at_ms(),
        running: m.run_started_ms.map(|at| (at, m.run_id.clone())),
        expects: config.expects(),
        since_unix_ms: m.since_ms,
        actions: kept.actions.clone(),
    }
}

/// Why a switch went down, in words, from its memory before the transition.
fn evidence(
    config: &DeadmanConfig,
    before: &SwitchMemory,
    after: &SwitchMemory,
    why: DownReason,
) -> String {
    match why {
        DownReason::Overdue => {
            let s = switch(config, before.clone());
            match (before.last_success_ms, s.deadline_ms()) {
                (Some(last), Some(deadline)) => format!(
                    "overdue since {}: no success ping since {} ({})",
                    time(deadline),
                    time(last),
                    config.expects()
                ),
                _ => format!("overdue ({})", config.expects()),
            }
        }
        DownReason::RunTooLong => {
            let run = before
                .run_id
                .as_deref()
                .map(|id| format!("run {id}"))
                .unwrap_or_else(|| "run".to_owned());
            format!(
                "{run} started at {} never finished (limit {})",
                before.run_started_ms.map_or_else(|| "?".to_owned(), time),
                config.run_limit_in_words()
            )
        }
        DownReason::Failed => match after.last_exit_code {
            Some(code) => format!("failed with exit code {code}"),
            None => "a --fail ping said the job failed".to_owned(),
        },
    }
}

impl Watch {
    /// The switches' memory, read from the catalog the first time (at drd's start):
    /// then each switch whose deadline passed while drd was down gets one grace from
    /// now, audited.
    async fn switches_loaded(&self) -> MutexGuard<'_, Option<BTreeMap<String, Kept>>> {
        let mut guard = self.switches.kept.lock().await;
        if guard.is_some() {
            return guard;
        }
        let now = self.now_ms();
        let config = self.core.config();
        let stored = store::load::<Kept>(&self.core.catalog, "switch/")
            .await
            .unwrap_or_else(|err| {
                tracing::warn!(cause = %err, "cannot read deadman switches' state; starting afresh");
                BTreeMap::new()
            });
        let mut kept: BTreeMap<String, Kept> = stored
            .into_iter()
            .map(|(k, v)| (k["switch/".len()..].to_owned(), v))
            .collect();
        let mut graced = Vec::new();
        for (name, switch_config) in &config.config.deadman {
            let Some(entry) = kept.get_mut(name) else {
                continue;
            };
            let mut s = switch(switch_config, entry.memory.clone());
            if s.resumed_at(now) {
                entry.memory = s.memory().clone();
                graced.push((name.clone(), s.down_at_ms()));
            }
        }
        let changed: Vec<(String, Kept)> = graced
            .iter()
            .filter_map(|(name, _)| kept.get(name).map(|k| (key(name), k.clone())))
            .collect();
        if let Err(err) = store::save(&self.core.catalog, &changed, Vec::new(), now).await {
            tracing::warn!(cause = %err, "cannot keep deadman switches' state");
        }
        *guard = Some(kept);
        for (name, down_at) in graced {
            let detail = format!(
                "{name}: its deadline passed while drd was not running; one grace from drd's \
                 start: down at {} unless a success ping comes",
                down_at.map_or_else(|| "?".to_owned(), time)
            );
            tracing::warn!(switch = %name, "{detail}");
            self.core
                .audit(
                    &Actor::Monitor(format!("deadman/{name}")),
                    "deadman restart grace",
                    Outcome::Ok,
                    detail,
                )
                .await;
        }
        guard
    }

    /// Takes a ping for switch `name`, from `actor`, and returns the switch after it.
    pub async fn heartbeat(
        &self,
        name: &str,
        kind: PingKind,
        exit_code: Option<i32>,
        run_id: Option<&str>,
        actor: &Actor,
    ) -> Result<SwitchInfo, SwitchError> {
        let config = self.core.config();
        let switch_config = config.switch(name).map_err(SwitchError::NotFound)?;
        let now = self.now_ms();
        let (info, decision) = {
            let mut guard = self.switches_loaded().await;
            let all = guard.get_or_insert_with(BTreeMap::new);
            let kept = all.entry(name.to_owned()).or_default();
            let before = kept.memory.clone();
            let mut s = switch(switch_config, before.clone());
            let transition = s.ping_with(kind, exit_code, run_id, now);
            kept.memory = s.memory().clone();
            store::save(
                &self.core.catalog,
                &[(key(name), kept.clone())],
                Vec::new(),
                now,
            )
            .await?;
            let decision = transition.map(|transition| Decision {
                name: name.to_owned(),
                evidence: match transition {
                    SwitchTransition::WentDown(why) => {
                        evidence(switch_config, &before, &kept.memory, why)
                    }
                    _ => String::new(),
                },
                transition,
                on_down: switch_config.on_down.clone(),
            });
            (info(name, switch_config, kept), decision)
        };
        let mut detail = format!("{name}: {}", kind.as_str());
        if let Some(code) = exit_code {
            detail.push_str(&format!(", exit code {code}"));
        }
        if let Some(id) = run_id {
            detail.push_str(&format!(", run {id}"));
        }
        if info.state == SwitchState::Paused {
            detail.push_str(" (paused: noted, nothing acts)");
        }
        self.core
            .audit(actor, "heartbeat", Outcome::Ok, detail)
            .await;
        if let Some(decision) = decision {
            self.decided(decision, now).await;
            return Ok(self.switch_info(name).await.unwrap_or(info));
        }
        Ok(info)
    }

    /// Every configured switch, by name.
    pub async fn switches(&self) -> Vec<SwitchInfo> {
        let config = self.core.config();
        let guard = self.switches_loaded().await;
        let empty = BTreeMap::new();
        let all = guard.as_ref().unwrap_or(&empty);
        config
            .config
            .deadman
            .iter()
            .map(|(name, c)| info(name, c, all.get(name).unwrap_or(&Kept::default())))
            .collect()
    }

    async fn switch_info(&self, name: &str) -> Option<SwitchInfo> {
        self.switches().await.into_iter().find(|s| s.name == name)
    }

    /// Pauses switch `name` (it acts on nothing) or resumes it (new until its next
    /// ping), for `actor`; returns the switch after the change.
    pub async fn pause_switch(
        &self,
        name: &str,
        pause: bool,
        actor: &Actor,
    ) -> Result<SwitchInfo, SwitchError> {
        let config = self.core.config();
        let switch_config = config.switch(name).map_err(SwitchError::NotFound)?;
        let now = self.now_ms();
        let (info, changed) = {
            let mut guard = self.switches_loaded().await;
            let all = guard.get_or_insert_with(BTreeMap::new);
            let kept = all.entry(name.to_owned()).or_default();
            let mut s = switch(switch_config, kept.memory.clone());
            let changed = if pause { s.pause(now) } else { s.resume(now) };
            kept.memory = s.memory().clone();
            store::save(
                &self.core.catalog,
                &[(key(name), kept.clone())],
                Vec::new(),
                now,
            )
            .await?;
            (info(name, switch_config, kept), changed)
        };
        let (action, detail) = match (pause, changed) {
            (true, true) => (
                "deadman pause",
                format!("{name} paused: it acts on nothing until resumed"),
            ),
            (true, false) => ("deadman pause", format!("{name} was paused already")),
            (false, true) => (
                "deadman resume",
                format!("{name} resumed: new until its next ping"),
            ),
            (false, false) => (
                "deadman resume",
                format!("{name} was not paused; nothing changed"),
            ),
        };
        tracing::info!(switch = name, "{detail}");
        self.core.audit(actor, action, Outcome::Ok, detail).await;
        if pause && changed {
            // Someone decided the switch does not matter for now: its alert stops
            // climbing the escalation chain and its receivers hear it is over.
            self.resolve_alert(&format!("deadman/{name}")).await;
        }
        Ok(info)
    }

    /// Looks at the clock for every switch: late, down, or fine; forgets the switches
    /// the config no longer names. Returns how many switches there are in each state
    /// and the nearest time something may change.
    pub async fn tick_switches(&self) -> (Vec<(SwitchState, usize)>, Option<i64>) {
        let config = self.core.config();
        let now = self.now_ms();
        let mut states = Vec::new();
        let mut nearest: Option<i64> = None;
        let mut decisions = Vec::new();
        {
            let mut guard = self.switches_loaded().await;
            let all = guard.get_or_insert_with(BTreeMap::new);
            let gone: Vec<String> = all
                .keys()
                .filter(|name| !config.config.deadman.contains_key(*name))
                .cloned()
                .collect();
            for name in &gone {
                all.remove(name);
            }
            let mut changed = Vec::new();
            for (name, switch_config) in &config.config.deadman {
                let kept = all.entry(name.clone()).or_default();
                let before = kept.memory.clone();
                let mut s = switch(switch_config, before.clone());
                if let Some(transition) = s.tick(now) {
                    kept.memory = s.memory().clone();
                    changed.push((key(name), kept.clone()));
                    decisions.push(Decision {
                        name: name.clone(),
                        evidence: match transition {
                            SwitchTransition::WentDown(why) => {
                                evidence(switch_config, &before, &kept.memory, why)
                            }
                            _ => format!(
                                "no success ping since {}; due {} ({})",
                                before.last_success_ms.map_or_else(|| "?".to_owned(), time),
                                s.deadline_ms().map_or_else(|| "?".to_owned(), time),
                                switch_config.expects()
                            ),
                        },
                        transition,
                        on_down: switch_config.on_down.clone(),
                    });
                }
                states.push(s.state());
                for at in [s.deadline_ms(), s.down_at_ms()].into_iter().flatten() {
                    if at > now {
                        nearest = Some(nearest.map_or(at, |n| n.min(at)));
                    }
                }
            }
            let gone = gone.iter().map(|n| key(n)).collect();
            if let Err(err) = store::save(&self.core.catalog, &changed, gone, now).await {
                tracing::warn!(cause = %err, "cannot keep deadman switches' state");
            }
        }
        for decision in decisions {
            self.decided(decision, now).await;
        }
        let counts = SwitchState::ALL
            .iter()
            .map(|state| (*state, states.iter().filter(|s| *s == state).count()))
            .filter(|(_, n)| *n > 0)
            .collect();
        (counts, nearest)
    }

    /// Audits a transition and acts on it: late alerts at warning, down runs
    /// `on_down` (an alert at critical when it names none).
    async fn decided(&self, decision: Decision, now: i64) {
        let source = format!("deadman/{}", decision.name);
        let actor = Actor::Monitor(source.clone());
        let (action, state) = match decision.transition {
            SwitchTransition::WentLate => ("deadman late", "late"),
            SwitchTransition::WentDown(_) => ("deadman down", "down"),
            SwitchTransition::Recovered => ("deadman recovered", "up"),
        };
        let detail = if decision.evidence.is_empty() {
            format!("{}: {state}", decision.name)
        } else {
            format!("{}: {state}: {}", decision.name, decision.evidence)
        };
        let condition = Condition {
            source: source.clone(),
            state,
            value: state.to_owned(),
            evidence: decision.evidence.clone(),
            at_unix_ms: now,
        };
        match decision.transition {
            SwitchTransition::WentLate => {
                tracing::warn!(switch = %decision.name, "{detail}");
                self.core.audit(&actor, action, Outcome::Ok, detail).await;
                self.alert(Severity::Warning, &condition).await;
            }
            SwitchTransition::WentDown(_) => {
                tracing::error!(switch = %decision.name, "{detail}");
                self.core.audit(&actor, action, Outcome::Ok, detail).await;
                let on_down = if decision.on_down.is_empty() {
                    vec![critical_alert()]
                } else {
                    decision.on_down
                };
                let taken = self.act(&condition, &on_down).await;
                let mut guard = self.switches.kept.lock().await;
                if let Some(kept) = guard.as_mut().and_then(|all| all.get_mut(&decision.name)) {
                    kept.actions.extend(taken);
                    let excess = kept.actions.len().saturating_sub(ACTIONS_KEPT);
                    kept.actions.drain(..excess);
                    let row = [(key(&decision.name), kept.clone())];
                    if let Err(err) = store::save(&self.core.catalog, &row, Vec::new(), now).await {
                        tracing::warn!(cause = %err, "cannot keep deadman switches' state");
                    }
                }
            }
            SwitchTransition::Recovered => {
                tracing::info!(switch = %decision.name, "{detail}");
                self.core.audit(&actor, action, Outcome::Ok, detail).await;
                self.resolve_alert(&source).await;
            }
        }
    }
}

/// What a switch that names no `on_down` does when it goes down.
fn critical_alert() -> ActionConfig {
    ActionConfig {
        alert: Some(Severity::Critical),
        backup: None,
        emergency_backup: None,
        shutdown: None,
        only: Vec::new(),
        force: false,
        exec: None,
        timeout: None,
        cooldown: None,
    }
}

/// The worker that watches the clock for every switch: each second, or at the
/// nearest deadline when that comes sooner.
pub struct DeadmanWorker {
    watch: Arc<Watch>,
    wait: Duration,
}

impl DeadmanWorker {
    /// The worker of `watch`'s switches.
    pub fn new(watch: Arc<Watch>) -> DeadmanWorker {
        DeadmanWorker { watch, wait: TICK }
    }
}

#[async_trait]
impl Worker for DeadmanWorker {
    fn name(&self) -> &'static str {
        "deadman"
    }

    async fn step(&mut self) -> Result<String, String> {
        let (counts, nearest) = self.watch.tick_switches().await;
        let now = self.watch.now_ms();
        self.wait = nearest.map_or(TICK, |at| {
            Duration::from_millis(u64::try_from((at - now).max(10)).unwrap_or(0)).min(TICK)
        });
        if counts.is_empty() {
            return Ok("no switches in [deadman]".to_owned());
        }
        let total: usize = counts.iter().map(|(_, n)| n).sum();
        let states: Vec<String> = counts
            .iter()
            .map(|(state, n)| format!("{n} {}", state.as_str()))
            .collect();
        Ok(format!(
            "{total} switch{}: {}",
            if total == 1 { "" } else { "es" },
            states.join(", ")
        ))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.wait).await;
    }
}
