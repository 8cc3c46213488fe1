//! The delivery worker: each step escalates what has waited long enough, then works
//! the outbox receiver by receiver, oldest first, stopping at a receiver's first
//! delivery that is not due or fails, so each receiver sees its alerts in order. A
//! failure is retried after a back-off with jitter (`retry_first`, doubling up to
//! `retry_max`); behind that, each receiver's circuit breaker (the one the service
//! probes use) holds everything back while it is open. It also refreshes open alerts
//! at Alertmanager receivers every `resend`. It runs on its own, so delivery never
//! holds up a monitor, a backup or a shutdown.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drd_core::audit::{Actor, Outcome};
use drd_core::breaker::{Breaker, BreakerConfig, BreakerMemory, BreakerTransition};
use drd_core::config::alerts::{AlertsConfig, ReceiverConfig, ReceiverKind};
use drd_core::workers::Worker;
use rand::Rng;

use crate::{outbox, Alerts};

/// The longest the worker sleeps when nothing is due: escalation is checked at least
/// this often.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// The shortest pause between steps, so a receiver whose breaker holds its trials
/// back is not polled in a loop.
const MIN_WAIT: Duration = Duration::from_millis(200);

/// Delivers the outbox; one per daemon.
pub struct DeliveryWorker {
    alerts: Arc<Alerts>,
    breakers: Option<HashMap<String, Breaker>>,
    refreshed: HashMap<(String, i64), i64>,
    next_ms: Option<i64>,
}

impl DeliveryWorker {
    /// The worker for `alerts`.
    pub fn new(alerts: Arc<Alerts>) -> DeliveryWorker {
        DeliveryWorker {
            alerts,
            breakers: None,
            refreshed: HashMap::new(),
            next_ms: None,
        }
    }

    fn breaker(&mut self, name: &str, receiver: &ReceiverConfig) -> &mut Breaker {
        let config = breaker_config(receiver);
        self.breakers
            .get_or_insert_with(HashMap::new)
            .entry(name.to_owned())
            .or_insert_with(|| Breaker::new(config))
    }

    /// Reads the breakers kept in the catalog, once.
    async fn load_breakers(&mut self, config: &AlertsConfig) {
        if self.breakers.is_some() {
            return;
        }
        let kept = outbox::breakers(&self.alerts.core.catalog)
            .await
            .unwrap_or_else(|err| {
                tracing::warn!(cause = %err, "cannot read receiver breakers; starting them closed");
                BTreeMap::new()
            });
        let mut breakers = HashMap::new();
        for (name, text) in kept {
            let (Some(receiver), Ok(memory)) = (
                config.receivers.get(&name),
                serde_json::from_str::<BreakerMemory>(&text),
            ) else {
                continue;
            };
            breakers.insert(name, Breaker::restore(breaker_config(receiver), memory));
        }
        self.breakers = Some(breakers);
    }

    /// Notes a breaker's move in the journal and the audit log, and keeps its memory.
    async fn breaker_moved(&mut self, name: &str, moved: Option<BreakerTransition>, now: i64) {
        let Some(moved) = moved else { return };
        let text = match moved {
            BreakerTransition::Opened { until_ms } => format!(
                "receiver {name}: breaker open until {}; its deliveries wait",
                drd_proto::text::time(until_ms)
            ),
            BreakerTransition::HalfOpened => format!("receiver {name}: breaker half-open, trying"),
            BreakerTransition::Closed => format!("receiver {name}: breaker closed, delivering"),
        };
        tracing::warn!(receiver = name, "{text}");
        let actor = Actor::Monitor(format!("alerts/{name}"));
        self.alerts
            .core
            .audit(&actor, "alert receiver breaker", Outcome::Ok, text)
            .await;
        let memory = self
            .breakers
            .as_ref()
            .and_then(|b| b.get(name))
            .map(|b| serde_json::to_string(b.memory()).unwrap_or_default());
        if let Some(memory) = memory {
            if let Err(err) =
                outbox::keep_breaker(&self.alerts.core.catalog, name, memory, now).await
            {
                tracing::warn!(cause = %err, "cannot keep a receiver's breaker");
            }
        }
    }

    /// Works the outbox once; returns (delivered, failed, still waiting).
    async fn deliver(
        &mut self,
        config: &AlertsConfig,
        now: i64,
    ) -> Result<(u32, u32, u32), String> {
        let alerts = self.alerts.clone();
        let waiting = outbox::due(&alerts.core.catalog, alerts.host())
            .await
            .map_err(|e| e.to_string())?;
        let (mut delivered, mut failed, mut left) = (0, 0, 0);
        let mut blocked: Option<String> = None;
        for item in waiting {
            if blocked.as_deref() == Some(item.receiver.as_str()) {
                left += 1;
                continue;
            }
            let Some(receiver) = config.receivers.get(&item.receiver) else {
                let why = format!(
                    "receiver {} is no longer in the config; not delivered",
                    item.receiver
                );
                outbox::dropped(&alerts.core.catalog, item.id, why, now)
                    .await
                    .map_err(|e| e.to_string())?;
                continue;
            };
            let (allowed, moved) = if item.next_ms > now {
                (false, None)
            } else {
                self.breaker(&item.receiver, receiver).allow(now)
            };
            self.breaker_moved(&item.receiver, moved, now).await;
            if !allowed {
                self.note_next(item.next_ms.max(self.open_until(&item.receiver)));
                blocked = Some(item.receiver.clone());
                left += 1;
                continue;
            }
            let result = alerts
                .deliver(&item.receiver, receiver, &item.alert, config.resend())
                .await;
            let now = alerts.clock.now_ms();
            let moved = self
                .breaker(&item.receiver, receiver)
                .record(result.is_ok(), now);
            self.breaker_moved(&item.receiver, moved, now).await;
            let next = match &result {
                Ok(answer) => {
                    tracing::info!(
                        alert = item.alert.id,
                        receiver = %item.receiver,
                        status = item.alert.status.as_str(),
                        %answer,
                        "alert delivered"
                    );
                    delivered += 1;
                    if item.alert.status == drd_proto::AlertStatus::Firing {
                        self.refreshed
                            .insert((item.receiver.clone(), item.alert.id), now);
                    }
                    None
                }
                Err(answer) => {
                    let wait = backoff(config, item.attempts + 1);
                    tracing::warn!(
                        alert = item.alert.id,
                        receiver = %item.receiver,
                        cause = %answer,
                        retry_in = %humantime_secs(wait),
                        "alert delivery failed"
                    );
                    failed += 1;
                    left += 1;
                    blocked = Some(item.receiver.clone());
                    let next =
                        now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                    self.note_next(next);
                    Some(next)
                }
            };
            let answer = result.unwrap_or_else(|e| e);
            outbox::tried(&alerts.core.catalog, item.id, answer, now, next)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok((delivered, failed, left))
    }

    /// Posts open alerts again to Alertmanager receivers that took them more than
    /// `resend` ago, so Alertmanager does not resolve them on its own.
    async fn refresh(&mut self, config: &AlertsConfig, now: i64) {
        let resend = i64::try_from(config.resend().as_millis()).unwrap_or(i64::MAX);
        let alerts = self.alerts.clone();
        let open = match outbox::delivered_firing(&alerts.core.catalog, alerts.host()).await {
            Ok(open) => open,
            Err(err) => {
                tracing::warn!(cause = %err, "cannot read alerts to refresh");
                return;
            }
        };
        let open_keys: Vec<(String, i64)> = open.iter().map(|(r, a)| (r.clone(), a.id)).collect();
        self.refreshed.retain(|key, _| open_keys.contains(key));
        for (name, alert) in open {
            let Some(receiver) = config.receivers.get(&name) else {
                continue;
            };
            if receiver.kind != ReceiverKind::Alertmanager {
                continue;
            }
            let key = (name.clone(), alert.id);
            let last = self.refreshed.get(&key).copied().unwrap_or(i64::MIN);
            if now.saturating_sub(last) < resend {
                self.note_next(last.saturating_add(resend));
                continue;
            }
            let (allowed, moved) = self.breaker(&name, receiver).allow(now);
            self.breaker_moved(&name, moved, now).await;
            if !allowed {
                continue;
            }
            let result = alerts
                .deliver(&name, receiver, &alert, config.resend())
                .await;
            let moved = self.breaker(&name, receiver).record(result.is_ok(), now);
            self.breaker_moved(&name, moved, now).await;
            if let Err(cause) = result {
                tracing::warn!(alert = alert.id, receiver = %name, %cause, "alert refresh failed");
            }
            self.refreshed.insert(key, now);
            self.note_next(now.saturating_add(resend));
        }
    }

    fn open_until(&self, name: &str) -> i64 {
        match self
            .breakers
            .as_ref()
            .and_then(|b| b.get(name))
            .map(Breaker::state)
        {
            Some(drd_core::breaker::BreakerState::Open { until_ms }) => until_ms,
            _ => 0,
        }
    }

    fn note_next(&mut self, at: i64) {
        self.next_ms = Some(self.next_ms.map_or(at, |n| n.min(at)));
    }
}

/// The wait before try `attempt + 1` of a delivery: `retry_first` doubled per try, up
/// to `retry_max`, then jittered by up to a quarter either way so that receivers
/// coming back are not hit by every drd at once.
pub fn backoff(config: &AlertsConfig, attempt: u32) -> Duration {
    let first = config.retry_first();
    let doubled = first.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = doubled.min(config.retry_max());
    let factor = rand::thread_rng().gen_range(0.75..1.25);
    capped.mul_f64(factor).max(Duration::from_millis(100))
}

fn humantime_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn breaker_config(receiver: &ReceiverConfig) -> BreakerConfig {
    let open_for = receiver.breaker_open_for.unwrap_or(Duration::from_secs(30));
    BreakerConfig {
        failures: receiver.breaker_failures.unwrap_or(3),
        open_for_ms: i64::try_from(open_for.as_millis()).unwrap_or(i64::MAX),
        max_open_for_ms: 10 * 60 * 1000,
        trial_calls: 1,
        failure_rate: None,
        window_ms: 60_000,
    }
}

#[async_trait]
impl Worker for DeliveryWorker {
    fn name(&self) -> &'static str {
        "alerts"
    }

    async fn step(&mut self) -> Result<String, String> {
        let config = self.alerts.core.config();
        let config = &config.config.alerts;
        let now = self.alerts.clock.now_ms();
        self.next_ms = None;
        self.load_breakers(config).await;
        let (climbed, next) = outbox::escalate(&self.alerts.core.catalog, config, now)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(next) = next {
            self.note_next(next);
        }
        for step in climbed {
            let text = format!(
                "alert #{} ({}) reached level {}: {}",
                step.id,
                step.source,
                step.level,
                if step.receivers.is_empty() {
                    "no new receivers".to_owned()
                } else {
                    step.receivers.join(", ")
                }
            );
            tracing::info!(alert = step.id, level = step.level, "{text}");
            if step.level > 1 {
                let actor = Actor::Monitor(step.source.clone());
                self.alerts
                    .core
                    .audit(&actor, "alert escalated", Outcome::Ok, text)
                    .await;
            }
        }
        let (delivered, failed, left) = self.deliver(config, now).await?;
        self.refresh(config, now).await;
        Ok(format!(
            "{delivered} delivered, {failed} failed, {left} waiting"
        ))
    }

    async fn wait(&mut self) {
        let now = self.alerts.clock.now_ms();
        let wait = self
            .next_ms
            .map(|at| Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0)))
            .unwrap_or(MAX_WAIT)
            .clamp(MIN_WAIT, MAX_WAIT);
        tokio::select! {
            () = self.alerts.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let config: AlertsConfig =
            toml::from_str("retry_first = \"2s\"\nretry_max = \"10s\"").unwrap();
        for _ in 0..50 {
            let first = backoff(&config, 1);
            assert!(first >= Duration::from_millis(1500) && first <= Duration::from_millis(2500));
            let third = backoff(&config, 3);
            assert!(third >= Duration::from_secs(6) && third <= Duration::from_secs(10));
            let late = backoff(&config, 40);
            assert!(late <= Duration::from_millis(12_500), "{late:?}");
        }
    }
}
