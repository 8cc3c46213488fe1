//! The alerts and their outbox in the catalog (`alerts`, `alert_deliveries`,
//! migration 10). An alert is open until resolved, one open alert per dedup key. Each
//! delivery of a firing or a resolution to one receiver is a row that waits until the
//! receiver took it: written before anything is sent, so nothing raised is lost to a
//! receiver that is down or to a drd that is killed. Escalation is a pure function of
//! the alert's age, its level and the route, applied here in one transaction.

use std::collections::BTreeMap;

use drd_core::catalog::Catalog;
use drd_core::config::alerts::AlertsConfig;
use drd_proto::{AlertAck, AlertInfo, AlertStatus, DeliveryInfo, Severity};
use rusqlite::{params, Connection, OptionalExtension};

use crate::send::Outgoing;
use crate::{Error, Raise, Result};

/// Opens the alert `key`, or updates the open one: returns its number.
pub(crate) async fn open(catalog: &Catalog, key: &str, raise: &Raise, now: i64) -> Result<i64> {
    let (key, raise) = (key.to_owned(), raise.clone());
    Ok(catalog
        .call("raise an alert", move |c| {
            let tx = c.transaction()?;
            let open: Option<(i64, String)> = tx
                .query_row(
                    "SELECT id, severity FROM alerts WHERE dedup_key = ?1 AND resolved_ms IS NULL",
                    [&key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let id = match open {
                Some((id, severity)) => {
                    // A late switch that goes down is the same alert, now critical.
                    let severity = Severity::parse(&severity)
                        .filter(|s| rank(*s) >= rank(raise.severity))
                        .unwrap_or(raise.severity);
                    tx.execute(
                        "UPDATE alerts SET summary = ?2, evidence = ?3, severity = ?4 WHERE id = ?1",
                        params![id, raise.summary, raise.evidence, severity.as_str()],
                    )?;
                    id
                }
                None => {
                    tx.execute(
                        "INSERT INTO alerts (dedup_key, severity, source, summary, evidence, started_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            key,
                            raise.severity.as_str(),
                            raise.source,
                            raise.summary,
                            raise.evidence,
                            now
                        ],
                    )?;
                    tx.last_insert_rowid()
                }
            };
            tx.commit()?;
            Ok(id)
        })
        .await?)
}

/// How urgent, as a number to compare.
fn rank(severity: Severity) -> u8 {
    match severity {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

/// Resolves the open alert `key`: each receiver its firing went (or is going) to gets
/// a resolution, queued behind it.
pub(crate) async fn resolve(catalog: &Catalog, key: &str, now: i64) -> Result<Option<i64>> {
    let key = key.to_owned();
    Ok(catalog
        .call("resolve an alert", move |c| {
            let tx = c.transaction()?;
            let open: Option<i64> = tx
                .query_row(
                    "SELECT id FROM alerts WHERE dedup_key = ?1 AND resolved_ms IS NULL",
                    [&key],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = open {
                tx.execute(
                    "UPDATE alerts SET resolved_ms = ?2 WHERE id = ?1",
                    params![id, now],
                )?;
                tx.execute(
                    "INSERT INTO alert_deliveries (alert_id, receiver, status, level, created_ms, next_ms)
                     SELECT alert_id, receiver, 'resolved', MIN(level), ?2, ?2
                     FROM alert_deliveries WHERE alert_id = ?1 AND status = 'firing'
                     GROUP BY receiver",
                    params![id, now],
                )?;
            }
            tx.commit()?;
            Ok(open)
        })
        .await?)
}

/// Acknowledges open alert `id`.
pub(crate) async fn ack(
    catalog: &Catalog,
    id: i64,
    by: String,
    comment: Option<String>,
    now: i64,
) -> Result<()> {
    type Row = (Option<i64>, Option<i64>, Option<String>);
    let found: Option<Row> = catalog
        .call("acknowledge an alert", move |c| {
            let row: Option<Row> = c
                .query_row(
                    "SELECT resolved_ms, acked_ms, acked_by FROM alerts WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            if let Some((None, None, _)) = row {
                c.execute(
                    "UPDATE alerts SET acked_ms = ?2, acked_by = ?3, ack_comment = ?4 WHERE id = ?1",
                    params![id, now, by, comment],
                )?;
            }
            Ok(row)
        })
        .await?;
    match found {
        None => Err(Error::NotFound(id)),
        Some((Some(at), _, _)) => Err(Error::NotOpen {
            id,
            why: format!("was resolved at {}", drd_proto::text::time(at)),
        }),
        Some((None, Some(at), by)) => Err(Error::NotOpen {
            id,
            why: format!(
                "was acknowledged by {} at {}",
                by.unwrap_or_default(),
                drd_proto::text::time(at)
            ),
        }),
        Some((None, None, _)) => Ok(()),
    }
}

fn alert_row(r: &rusqlite::Row<'_>, config: &AlertsConfig) -> rusqlite::Result<AlertInfo> {
    let severity: String = r.get(2)?;
    let severity = Severity::parse(&severity).unwrap_or(Severity::Critical);
    let acked_ms: Option<i64> = r.get(9)?;
    Ok(AlertInfo {
        id: r.get(0)?,
        dedup_key: r.get(1)?,
        severity,
        source: r.get(3)?,
        summary: r.get(4)?,
        evidence: r.get(5)?,
        started_unix_ms: r.get(6)?,
        resolved_unix_ms: r.get(7)?,
        level: r.get(8)?,
        levels: u32::try_from(config.chain(severity).len()).unwrap_or(u32::MAX),
        ack: match acked_ms {
            Some(at) => Some(AlertAck {
                at_unix_ms: at,
                by: r.get::<_, Option<String>>(10)?.unwrap_or_default(),
                comment: r.get(11)?,
            }),
            None => None,
        },
        deliveries: Vec::new(),
    })
}

const ALERT_COLUMNS: &str = "id, dedup_key, severity, source, summary, evidence, started_ms, \
     resolved_ms, level, acked_ms, acked_by, ack_comment";

/// Open alerts, and with `all` the newest 50 resolved ones, newest first; or only
/// alert `only`.
pub(crate) async fn list(
    catalog: &Catalog,
    config: &AlertsConfig,
    all: bool,
    only: Option<i64>,
) -> Result<Vec<AlertInfo>> {
    let config = config.clone();
    let which = match (only, all) {
        (Some(_), _) => "id = ?1",
        (None, true) => {
            "resolved_ms IS NULL OR id IN (SELECT id FROM alerts WHERE resolved_ms IS NOT NULL
             ORDER BY id DESC LIMIT 50)"
        }
        (None, false) => "resolved_ms IS NULL",
    };
    let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE {which} ORDER BY id DESC");
    Ok(catalog
        .call("list alerts", move |c| {
            let mut stmt = c.prepare(&sql)?;
            let rows =
                stmt.query_map(rusqlite::params_from_iter(only), |r| alert_row(r, &config))?;
            let mut alerts = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            for alert in &mut alerts {
                alert.deliveries = deliveries(c, alert.id)?;
            }
            Ok(alerts)
        })
        .await?)
}

fn deliveries(c: &Connection, alert: i64) -> rusqlite::Result<Vec<DeliveryInfo>> {
    let mut stmt = c.prepare_cached(
        "SELECT receiver, status, level, attempts, done_ms, next_ms, result
         FROM alert_deliveries WHERE alert_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([alert], |r| {
        let status: String = r.get(1)?;
        let done: Option<i64> = r.get(4)?;
        Ok(DeliveryInfo {
            receiver: r.get(0)?,
            status: AlertStatus::parse(&status).unwrap_or(AlertStatus::Firing),
            level: r.get(2)?,
            attempts: r.get(3)?,
            delivered_unix_ms: done,
            next_unix_ms: if done.is_none() {
                Some(r.get(5)?)
            } else {
                None
            },
            result: r.get(6)?,
        })
    })?;
    rows.collect()
}

/// Deliveries waiting, by receiver.
pub(crate) async fn waiting(catalog: &Catalog) -> Result<BTreeMap<String, u64>> {
    Ok(catalog
        .call("count waiting deliveries", |c| {
            let mut stmt = c.prepare(
                "SELECT receiver, COUNT(*) FROM alert_deliveries WHERE done_ms IS NULL GROUP BY receiver",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await?)
}

/// An alert that climbed a level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalated {
    /// The alert.
    pub id: i64,
    /// Who raised it.
    pub source: String,
    /// The level it reached (1 is the first).
    pub level: u32,
    /// The receivers that level sends to.
    pub receivers: Vec<String>,
}

/// Moves every open, unacknowledged alert up the levels its age has reached, queueing
/// a firing delivery for each new receiver. Returns what climbed, and when the next
/// level of any alert is due (Unix ms).
pub(crate) async fn escalate(
    catalog: &Catalog,
    config: &AlertsConfig,
    now: i64,
) -> Result<(Vec<Escalated>, Option<i64>)> {
    let config = config.clone();
    Ok(catalog
        .call("escalate alerts", move |c| {
            let tx = c.transaction()?;
            let open: Vec<(i64, String, String, i64, u32)> = {
                let mut stmt = tx.prepare(
                    "SELECT id, severity, source, started_ms, level FROM alerts
                     WHERE resolved_ms IS NULL AND acked_ms IS NULL",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut climbed = Vec::new();
            let mut next: Option<i64> = None;
            for (id, severity, source, started, level) in open {
                let severity = Severity::parse(&severity).unwrap_or(Severity::Critical);
                let chain = config.chain(severity);
                let mut reached = level;
                for (index, step) in chain.iter().enumerate().skip(level as usize) {
                    let due = started
                        .saturating_add(i64::try_from(step.after.as_millis()).unwrap_or(i64::MAX));
                    if due > now {
                        next = Some(next.map_or(due, |n| n.min(due)));
                        break;
                    }
                    reached = u32::try_from(index + 1).unwrap_or(u32::MAX);
                    let mut receivers = Vec::new();
                    for receiver in &step.receivers {
                        let already: bool = tx.query_row(
                            "SELECT EXISTS (SELECT 1 FROM alert_deliveries
                             WHERE alert_id = ?1 AND receiver = ?2 AND status = 'firing')",
                            params![id, receiver],
                            |r| r.get(0),
                        )?;
                        if !already {
                            tx.execute(
                                "INSERT INTO alert_deliveries (alert_id, receiver, status, level, created_ms, next_ms)
                                 VALUES (?1, ?2, 'firing', ?3, ?4, ?4)",
                                params![id, receiver, reached, now],
                            )?;
                            receivers.push(receiver.clone());
                        }
                    }
                    climbed.push(Escalated {
                        id,
                        source: source.clone(),
                        level: reached,
                        receivers,
                    });
                }
                if reached != level {
                    tx.execute(
                        "UPDATE alerts SET level = ?2 WHERE id = ?1",
                        params![id, reached],
                    )?;
                }
            }
            tx.commit()?;
            Ok((climbed, next))
        })
        .await?)
}

/// A delivery waiting in the outbox, with what it carries.
#[derive(Debug, Clone)]
pub struct Waiting {
    /// The delivery's row.
    pub id: i64,
    /// Its receiver.
    pub receiver: String,
    /// Tries so far.
    pub attempts: u32,
    /// When it is due (Unix ms).
    pub next_ms: i64,
    /// What it sends.
    pub alert: Outgoing,
}

/// Every waiting delivery, by receiver, oldest first: each receiver gets its alerts in
/// the order they were queued.
pub(crate) async fn due(catalog: &Catalog, host: &str) -> Result<Vec<Waiting>> {
    let host = host.to_owned();
    Ok(catalog
        .call("read the alert outbox", move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT d.id, d.receiver, d.attempts, d.next_ms, d.status, d.level, {OUTGOING}
                 FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id
                 WHERE d.done_ms IS NULL ORDER BY d.receiver, d.id"
            ))?;
            let rows = stmt.query_map([], |r| {
                let status: String = r.get(4)?;
                let status = AlertStatus::parse(&status).unwrap_or(AlertStatus::Firing);
                Ok(Waiting {
                    id: r.get(0)?,
                    receiver: r.get(1)?,
                    attempts: r.get(2)?,
                    next_ms: r.get(3)?,
                    alert: outgoing(r, 5, status, &host)?,
                })
            })?;
            rows.collect()
        })
        .await?)
}

/// The alert columns [`outgoing`] reads, after the delivery's level.
const OUTGOING: &str =
    "a.id, a.dedup_key, a.severity, a.source, a.summary, a.evidence, a.started_ms, a.resolved_ms";

/// An alert as it goes out, from a row with the delivery's level at `at` and the
/// [`OUTGOING`] columns after it. A firing sent after the alert cleared still says
/// firing; its resolution follows it.
fn outgoing(
    r: &rusqlite::Row<'_>,
    at: usize,
    status: AlertStatus,
    host: &str,
) -> rusqlite::Result<Outgoing> {
    let severity: String = r.get(at + 3)?;
    Ok(Outgoing {
        level: r.get(at)?,
        id: r.get(at + 1)?,
        dedup_key: r.get(at + 2)?,
        severity: Severity::parse(&severity).unwrap_or(Severity::Critical),
        source: r.get(at + 4)?,
        summary: r.get(at + 5)?,
        evidence: r.get(at + 6)?,
        host: host.to_owned(),
        started_unix_ms: r.get(at + 7)?,
        resolved_unix_ms: match status {
            AlertStatus::Firing => None,
            AlertStatus::Resolved => r.get(at + 8)?,
        },
        status,
        test: false,
    })
}

/// Open alerts whose firing an Alertmanager-kind receiver has taken, for the refresh
/// that keeps Alertmanager from resolving them on its own: (receiver, alert).
pub(crate) async fn delivered_firing(
    catalog: &Catalog,
    host: &str,
) -> Result<Vec<(String, Outgoing)>> {
    let host = host.to_owned();
    Ok(catalog
        .call("read delivered alerts", move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT DISTINCT d.receiver, d.level, {OUTGOING}
                 FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id
                 WHERE a.resolved_ms IS NULL AND d.status = 'firing' AND d.done_ms IS NOT NULL"
            ))?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get(0)?, outgoing(r, 1, AlertStatus::Firing, &host)?))
            })?;
            rows.collect()
        })
        .await?)
}

/// Records a delivery's try: done (`next_ms` None) or due again at `next_ms`.
pub(crate) async fn tried(
    catalog: &Catalog,
    id: i64,
    result: String,
    now: i64,
    next_ms: Option<i64>,
) -> Result<()> {
    Ok(catalog
        .call("record a delivery", move |c| {
            match next_ms {
                None => c.execute(
                    "UPDATE alert_deliveries SET attempts = attempts + 1, done_ms = ?2, result = ?3
                     WHERE id = ?1",
                    params![id, now, result],
                ),
                Some(next) => c.execute(
                    "UPDATE alert_deliveries SET attempts = attempts + 1, next_ms = ?2, result = ?3
                     WHERE id = ?1",
                    params![id, next, result],
                ),
            }
            .map(drop)
        })
        .await?)
}

/// Closes a delivery that cannot be made (its receiver left the config), saying why.
pub(crate) async fn dropped(catalog: &Catalog, id: i64, why: String, now: i64) -> Result<()> {
    Ok(catalog
        .call("drop a delivery", move |c| {
            c.execute(
                "UPDATE alert_deliveries SET done_ms = ?2, result = ?3 WHERE id = ?1",
                params![id, now, why],
            )
            .map(drop)
        })
        .await?)
}

/// A receiver's breaker memory, as JSON.
pub(crate) async fn breakers(catalog: &Catalog) -> Result<BTreeMap<String, String>> {
    Ok(catalog
        .call("read receiver breakers", |c| {
            let mut stmt = c.prepare("SELECT name, breaker FROM alert_receivers")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await?)
}

/// Keeps a receiver's breaker memory.
pub(crate) async fn keep_breaker(
    catalog: &Catalog,
    name: &str,
    memory: String,
    now: i64,
) -> Result<()> {
    let name = name.to_owned();
    Ok(catalog
        .call("keep a receiver breaker", move |c| {
            c.execute(
                "INSERT INTO alert_receivers (name, breaker, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET breaker = ?2, updated_ms = ?3",
                params![name, memory, now],
            )
            .map(drop)
        })
        .await?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use drd_core::clock::{Clock, ManualClock};
    use drd_core::Core;

    use super::*;
    use crate::Alerts;

    const CONFIG: &str = r#"
        [alerts.receivers.l1]
        kind = "exec"
        command = ["true"]
        [alerts.receivers.l2]
        kind = "exec"
        command = ["true"]
        [alerts.routes.critical]
        escalation = [{ receivers = ["l1"] }, { after = "5m", receivers = ["l2"] }]
    "#;

    fn alerts(dir: &std::path::Path, clock: Arc<ManualClock>) -> Alerts {
        Alerts::new(Arc::new(Core::for_test(dir, CONFIG)), clock)
    }

    fn raise(severity: Severity) -> Raise {
        Raise {
            severity,
            source: "deadman/export".to_owned(),
            summary: "deadman/export down".to_owned(),
            evidence: "overdue".to_owned(),
        }
    }

    #[tokio::test]
    async fn escalation_follows_the_clock_and_stops_at_the_ack() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::at(1_000_000));
        let alerts = alerts(dir.path(), clock.clone());
        let config = alerts.core.config().config.alerts.clone();
        let catalog = &alerts.core.catalog;
        let id = alerts.raise(raise(Severity::Critical)).await.unwrap();

        let (climbed, next) = escalate(catalog, &config, clock.now_ms()).await.unwrap();
        assert_eq!(climbed.len(), 1);
        assert_eq!(
            (climbed[0].level, climbed[0].receivers.clone()),
            (1, vec!["l1".to_owned()])
        );
        assert_eq!(
            next,
            Some(1_000_000 + 300_000),
            "level 2 is due 5m after the raise"
        );

        // The same source again is the same alert, and climbs nothing new.
        assert_eq!(alerts.raise(raise(Severity::Warning)).await.unwrap(), id);
        clock.advance(299_000);
        let (climbed, _) = escalate(catalog, &config, clock.now_ms()).await.unwrap();
        assert!(climbed.is_empty());
        clock.advance(1_000);
        let (climbed, next) = escalate(catalog, &config, clock.now_ms()).await.unwrap();
        assert_eq!(
            (climbed[0].level, climbed[0].receivers.clone()),
            (2, vec!["l2".to_owned()])
        );
        assert_eq!(next, None, "the chain is done");
        let shown = alerts.get(id).await.unwrap();
        assert_eq!(
            shown.severity,
            Severity::Critical,
            "a later warning does not lower it"
        );
        assert_eq!(
            (shown.level, shown.levels, shown.deliveries.len()),
            (2, 2, 2)
        );
    }

    #[tokio::test]
    async fn an_acked_alert_climbs_no_further_and_resolves_to_whoever_got_it() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::at(1_000_000));
        let alerts = alerts(dir.path(), clock.clone());
        let config = alerts.core.config().config.alerts.clone();
        let catalog = &alerts.core.catalog;
        let id = alerts.raise(raise(Severity::Critical)).await.unwrap();
        escalate(catalog, &config, clock.now_ms()).await.unwrap();
        let acked = alerts
            .ack(id, "uid=1000".to_owned(), Some("on it".to_owned()))
            .await
            .unwrap();
        assert_eq!(acked.ack.unwrap().by, "uid=1000");
        assert!(matches!(
            alerts.ack(id, "uid=0".to_owned(), None).await,
            Err(Error::NotOpen { .. })
        ));
        clock.advance(600_000);
        let (climbed, next) = escalate(catalog, &config, clock.now_ms()).await.unwrap();
        assert!(climbed.is_empty() && next.is_none(), "acked: no level 2");

        assert_eq!(alerts.resolve("deadman/export").await.unwrap(), Some(id));
        let shown = alerts.get(id).await.unwrap();
        let sent: Vec<_> = shown
            .deliveries
            .iter()
            .map(|d| (d.receiver.as_str(), d.status))
            .collect();
        assert_eq!(
            sent,
            [("l1", AlertStatus::Firing), ("l1", AlertStatus::Resolved)]
        );
        // Raised again after it resolved: a new alert.
        assert_ne!(alerts.raise(raise(Severity::Critical)).await.unwrap(), id);
        assert!(matches!(
            alerts.ack(999, String::new(), None).await,
            Err(Error::NotFound(999))
        ));
    }
}
