//! What each kind of receiver is sent, and how. Alertmanager gets its API v2 alert list
//! (labels to route, group and silence on; `endsAt` set on a resolution, and on a
//! firing far enough ahead that the refresh keeps it open). A webhook gets one JSON
//! object (the schema in docs/alerts.md). A command gets the same JSON on stdin,
//! through the one command runner. A receiver took it when it answered 2xx or exited 0.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use drd_core::command::Command;
use drd_core::config::alerts::{redact_url, ReceiverConfig, ReceiverKind};
use drd_proto::{AlertStatus, Severity};
use serde::Serialize;
use serde_json::json;

/// One alert as it goes out: the webhook and exec JSON (version 1 of the schema).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outgoing {
    /// The alert's number on its host (`drctl alerts ack ID`).
    pub id: i64,
    /// Its identity: host and source. The same condition keeps the same key.
    pub dedup_key: String,
    /// `critical`, `warning`, `info`.
    pub severity: Severity,
    /// Who raised it: `resources/disk /var`, `deadman/nightly-export`.
    pub source: String,
    /// One line for a pager.
    pub summary: String,
    /// What it is based on.
    pub evidence: String,
    /// The host it is about.
    pub host: String,
    /// When it was raised (Unix ms).
    pub started_unix_ms: i64,
    /// When it cleared (Unix ms), on a resolution.
    pub resolved_unix_ms: Option<i64>,
    /// `firing` or `resolved`.
    pub status: AlertStatus,
    /// The escalation level that sent it.
    pub level: u32,
    /// A synthetic alert from `drctl alerts test`.
    pub test: bool,
}

impl Outgoing {
    /// The synthetic alert `drctl alerts test` sends.
    pub fn test(host: &str, now: i64) -> Outgoing {
        Outgoing {
            id: 0,
            dedup_key: format!("{host}/test"),
            severity: Severity::Info,
            source: "test".to_owned(),
            summary: "drd test alert: this receiver is reached".to_owned(),
            evidence: "sent by `drctl alerts test`; nothing is wrong".to_owned(),
            host: host.to_owned(),
            started_unix_ms: now,
            resolved_unix_ms: None,
            status: AlertStatus::Firing,
            level: 1,
            test: true,
        }
    }
}

/// The receiver's kind as written in the config.
pub fn kind_name(kind: ReceiverKind) -> &'static str {
    match kind {
        ReceiverKind::Alertmanager => "alertmanager",
        ReceiverKind::Webhook => "webhook",
        ReceiverKind::Exec => "exec",
    }
}

/// Where a receiver sends, safe to show: the URL without its secrets, or the program.
pub fn target_in_words(receiver: &ReceiverConfig) -> String {
    match receiver.kind {
        ReceiverKind::Exec => receiver.command.first().cloned().unwrap_or_default(),
        _ => redact_url(receiver.url.as_deref().unwrap_or_default()),
    }
}

/// Sends `alert` to `receiver`: what it answered, `Err` when it did not take it.
pub async fn send(
    http: &reqwest::Client,
    receiver: &ReceiverConfig,
    alert: &Outgoing,
    resend: Duration,
) -> Result<String, String> {
    match receiver.kind {
        ReceiverKind::Alertmanager => {
            let base = receiver.url.as_deref().unwrap_or_default();
            let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
            post(http, receiver, &url, &alertmanager_body(alert, resend)).await
        }
        ReceiverKind::Webhook => {
            let url = receiver.url.as_deref().unwrap_or_default();
            post(
                http,
                receiver,
                url,
                &serde_json::to_value(alert).unwrap_or_default(),
            )
            .await
        }
        ReceiverKind::Exec => {
            let input = serde_json::to_vec(alert).unwrap_or_default();
            let done = Command::new(&receiver.command, receiver.timeout())
                .stdin(input)
                .env("DRD_ALERT_STATUS", alert.status.as_str())
                .env("DRD_ALERT_SEVERITY", alert.severity.as_str())
                .env("DRD_ALERT_DEDUP_KEY", &alert.dedup_key)
                .run()
                .await
                .map_err(|err| err.to_string())?;
            if done.success() {
                Ok(done.to_string())
            } else {
                Err(done.to_string())
            }
        }
    }
}

/// POSTs `body` as JSON with the receiver's headers.
async fn post(
    http: &reqwest::Client,
    receiver: &ReceiverConfig,
    url: &str,
    body: &serde_json::Value,
) -> Result<String, String> {
    let mut request = http
        .post(url)
        .timeout(receiver.timeout())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    for (header, variable) in &receiver.headers_from_env {
        let value = std::env::var(variable).map_err(|_| {
            format!("header {header}: environment variable {variable} is not set for drd")
        })?;
        request = request.header(header.as_str(), value);
    }
    let response = request.send().await.map_err(drd_core::http::describe)?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let answer = match text.trim() {
        "" => format!("HTTP {}", status.as_u16()),
        said => format!("HTTP {}: {}", status.as_u16(), tail(said, 200)),
    };
    if status.is_success() {
        Ok(answer)
    } else {
        Err(answer)
    }
}

/// The last `max` characters of `text`.
fn tail(text: &str, max: usize) -> &str {
    let count = text.chars().count();
    match text.char_indices().nth(count.saturating_sub(max)) {
        Some((at, _)) if count > max => &text[at..],
        _ => text,
    }
}

/// Alertmanager's API v2 body for `alert`: a list of one.
pub fn alertmanager_body(alert: &Outgoing, resend: Duration) -> serde_json::Value {
    let mut labels = BTreeMap::new();
    let (area, rest) = alert
        .source
        .split_once('/')
        .unwrap_or((alert.source.as_str(), ""));
    labels.insert("alertname", alertname(area));
    labels.insert("host", alert.host.clone());
    labels.insert("severity", alert.severity.as_str().to_owned());
    let label = match area {
        "deadman" => "deadman",
        "services" => "service",
        "jobs" => "job",
        _ => "monitor",
    };
    if label == "monitor" {
        labels.insert("monitor", area.to_owned());
        if !rest.is_empty() {
            labels.insert("check", rest.to_owned());
        }
    } else {
        labels.insert(label, rest.to_owned());
    }
    // A firing alert stays open in Alertmanager until this; drd refreshes it every
    // `resend`, so only a drd that went silent lets it lapse.
    let ends = match alert.resolved_unix_ms {
        Some(at) => at,
        None => {
            now_ms().saturating_add(4 * i64::try_from(resend.as_millis()).unwrap_or(i64::MAX / 8))
        }
    };
    json!([{
        "labels": labels,
        "annotations": {
            "summary": alert.summary,
            "description": alert.evidence,
            "dedup_key": alert.dedup_key,
            "drd_alert_id": alert.id.to_string(),
            "level": alert.level.to_string(),
        },
        "startsAt": rfc3339(alert.started_unix_ms),
        "endsAt": rfc3339(ends),
    }])
}

/// `drd_resources`, `drd_deadman`: one alert name per area, in Prometheus's style.
fn alertname(area: &str) -> String {
    let cleaned: String = area
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("drd_{cleaned}")
}

fn rfc3339(unix_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(unix_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn now_ms() -> i64 {
    drd_core::util::unix_ms_now()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(source: &str) -> Outgoing {
        Outgoing {
            source: source.to_owned(),
            ..Outgoing::test("web-1", 1_700_000_000_000)
        }
    }

    #[test]
    fn alertmanager_labels_name_the_area_and_the_check() {
        let body = alertmanager_body(&alert("resources/disk /var"), Duration::from_secs(60));
        let labels = &body[0]["labels"];
        assert_eq!(labels["alertname"], "drd_resources");
        assert_eq!(labels["monitor"], "resources");
        assert_eq!(labels["check"], "disk /var");
        assert_eq!(labels["host"], "web-1");
        assert_eq!(body[0]["startsAt"], "2023-11-14T22:13:20.000Z");

        let body = alertmanager_body(&alert("deadman/nightly-export"), Duration::from_secs(60));
        assert_eq!(body[0]["labels"]["deadman"], "nightly-export");
        assert!(body[0]["labels"].get("monitor").is_none());
    }

    #[test]
    fn a_resolution_ends_when_it_cleared() {
        let mut resolved = alert("services/api");
        resolved.status = AlertStatus::Resolved;
        resolved.resolved_unix_ms = Some(1_700_000_060_000);
        let body = alertmanager_body(&resolved, Duration::from_secs(60));
        assert_eq!(body[0]["endsAt"], "2023-11-14T22:14:20.000Z");
        assert_eq!(body[0]["labels"]["service"], "api");
    }

    #[test]
    fn long_answers_keep_their_end() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 3), "ab");
    }
}
