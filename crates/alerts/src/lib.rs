//! drd-alerts: telling people. Every alert goes to the journal at once, and through a
//! durable outbox in the catalog to the receivers its route names: an Alertmanager,
//! a webhook, a command. A receiver that is down gets its alerts when it is back, in
//! order, after a restart of drd too; retries back off with jitter and each receiver
//! sits behind a circuit breaker, so a receiver that keeps failing is not stormed.
//! An open alert climbs its escalation chain until someone acknowledges it, and gets
//! its resolved notice when its condition clears.
//!
//! | concern | module |
//! | --- | --- |
//! | [`Alerts`]: raise, resolve, acknowledge, list, test | `lib.rs` |
//! | the outbox and the alerts in the catalog; escalation | [`outbox`] |
//! | what each kind of receiver is sent, and how | [`send`] |
//! | drd's own healthchecks-style ping (`[daemon] ping_url`) | [`ping`] |
//! | the delivery worker: escalation, delivery, retries, breakers, Alertmanager refresh | [`worker`] |

pub mod outbox;
pub mod ping;
pub mod send;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use drd_core::catalog::CatalogError;
use drd_core::clock::Clock;
use drd_core::Core;
use drd_proto::{AlertInfo, AlertTestReport, Severity};
use tokio::sync::Notify;

/// What went wrong with an alert request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// No alert has this number.
    #[error("no alert #{0}; `drctl alerts --all` lists them")]
    NotFound(i64),
    /// The alert is resolved or acknowledged already.
    #[error("alert #{id} {why}; nothing to acknowledge")]
    NotOpen {
        /// The alert.
        id: i64,
        /// `was resolved at ...`, `was acknowledged by ... at ...`.
        why: String,
    },
    /// No receiver has this name.
    #[error("{0}")]
    UnknownReceiver(String),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An alert as raised: a condition with a source that names it.
#[derive(Debug, Clone)]
pub struct Raise {
    /// How urgent.
    pub severity: Severity,
    /// Who raised it, which is also what makes it one alert: `resources/disk /var`.
    pub source: String,
    /// One line for a pager.
    pub summary: String,
    /// What it is based on.
    pub evidence: String,
}

/// The alerting layer's state, behind an `Arc`: what the monitors raise through and
/// the delivery worker and handlers read.
pub struct Alerts {
    /// Config, catalog, audit log, workers.
    pub core: Arc<Core>,
    /// "Now", for escalation and retries (shifted in tests).
    pub clock: Arc<dyn Clock>,
    /// Wakes the delivery worker when there is something new.
    pub(crate) wake: Notify,
    host: String,
    attempts: Mutex<BTreeMap<(String, &'static str), u64>>,
}

/// Delivery attempts so far (since drd started) by receiver and result (`ok`,
/// `failed`), and the deliveries waiting in the outbox by receiver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// (receiver, result) -> attempts.
    pub attempts: BTreeMap<(String, &'static str), u64>,
    /// receiver -> deliveries waiting.
    pub waiting: BTreeMap<String, u64>,
}

impl Alerts {
    /// The alerting layer of a daemon running on `core`.
    pub fn new(core: Arc<Core>, clock: Arc<dyn Clock>) -> Alerts {
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Alerts {
            core,
            clock,
            wake: Notify::new(),
            host,
            attempts: Mutex::default(),
        }
    }

    /// The host name alerts carry.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Raises an alert: to the journal at once, and into the outbox for its route's
    /// first level. The same source raised again while its alert is open updates that
    /// alert rather than opening another. Returns the alert's number.
    pub async fn raise(&self, raise: Raise) -> Result<i64> {
        let text = format!("{}: {}", raise.source, raise.summary);
        match raise.severity {
            Severity::Critical => {
                tracing::error!(severity = raise.severity.as_str(), alert = %text, evidence = %raise.evidence, "alert");
            }
            Severity::Warning => {
                tracing::warn!(severity = raise.severity.as_str(), alert = %text, evidence = %raise.evidence, "alert");
            }
            Severity::Info => {
                tracing::info!(severity = raise.severity.as_str(), alert = %text, evidence = %raise.evidence, "alert");
            }
        }
        let id = outbox::open(
            &self.core.catalog,
            &self.dedup_key(&raise.source),
            &raise,
            self.clock.now_ms(),
        )
        .await?;
        self.wake.notify_one();
        Ok(id)
    }

    /// Resolves the open alert of `source`, if there is one: every receiver that was
    /// sent its firing gets the resolution. Returns the alert's number.
    pub async fn resolve(&self, source: &str) -> Result<Option<i64>> {
        let key = self.dedup_key(source);
        let id = outbox::resolve(&self.core.catalog, &key, self.clock.now_ms()).await?;
        if let Some(id) = id {
            tracing::info!(alert = id, source, "alert resolved");
            self.wake.notify_one();
        }
        Ok(id)
    }

    /// Acknowledges alert `id` for `by`: its escalation stops.
    pub async fn ack(&self, id: i64, by: String, comment: Option<String>) -> Result<AlertInfo> {
        outbox::ack(&self.core.catalog, id, by, comment, self.clock.now_ms()).await?;
        self.get(id).await
    }

    /// Open alerts (and with `all`, the newest resolved ones), newest first.
    pub async fn list(&self, all: bool) -> Result<Vec<AlertInfo>> {
        let config = self.core.config();
        outbox::list(&self.core.catalog, &config.config.alerts, all, None).await
    }

    /// Alert `id`.
    pub async fn get(&self, id: i64) -> Result<AlertInfo> {
        let config = self.core.config();
        outbox::list(&self.core.catalog, &config.config.alerts, true, Some(id))
            .await?
            .pop()
            .ok_or(Error::NotFound(id))
    }

    /// Sends a synthetic alert, firing then resolved, straight to `receiver` and
    /// reports what it answered.
    pub async fn test(&self, receiver: &str) -> Result<AlertTestReport> {
        let config = self.core.config();
        let alerts = &config.config.alerts;
        let Some(target) = alerts.receivers.get(receiver) else {
            return Err(Error::UnknownReceiver(if alerts.receivers.is_empty() {
                "no receivers are configured; add an [alerts.receivers.NAME] table".to_owned()
            } else {
                format!(
                    "no receiver named {receiver:?}; the config has {}",
                    alerts
                        .receivers
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }));
        };
        let now = self.clock.now_ms();
        let mut alert = send::Outgoing::test(&self.host, now);
        let firing = self
            .deliver(receiver, target, &alert, alerts.resend())
            .await;
        alert.status = drd_proto::AlertStatus::Resolved;
        alert.resolved_unix_ms = Some(self.clock.now_ms());
        let resolved = self
            .deliver(receiver, target, &alert, alerts.resend())
            .await;
        Ok(AlertTestReport {
            receiver: receiver.to_owned(),
            kind: send::kind_name(target.kind).to_owned(),
            target: send::target_in_words(target),
            ok: firing.is_ok() && resolved.is_ok(),
            firing: firing.unwrap_or_else(|e| e),
            resolved: resolved.unwrap_or_else(|e| e),
        })
    }

    /// Attempts and waiting deliveries, for the metrics.
    pub async fn stats(&self) -> Result<Stats> {
        let waiting = outbox::waiting(&self.core.catalog).await?;
        let attempts = self
            .attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Ok(Stats { attempts, waiting })
    }

    /// One delivery to one receiver, counted: what it answered, `Err` when it did not
    /// take it.
    pub(crate) async fn deliver(
        &self,
        name: &str,
        receiver: &drd_core::config::alerts::ReceiverConfig,
        alert: &send::Outgoing,
        resend: std::time::Duration,
    ) -> std::result::Result<String, String> {
        let result = match self.core.pinger.client() {
            Ok(http) => send::send(&http, receiver, alert, resend).await,
            Err(err) => Err(err),
        };
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        *self
            .attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((name.to_owned(), outcome))
            .or_default() += 1;
        result
    }

    /// An alert's identity: the host and the source, so the same condition is one
    /// alert across restarts, and alerts of different hosts never merge downstream.
    fn dedup_key(&self, source: &str) -> String {
        format!("{}/{source}", self.host)
    }
}
