//! `drctl alerts`: open alerts (with `--all`, recently resolved ones too): severity,
//! source, since when, escalation level reached, who acknowledged it, and where each
//! delivery stands; `drctl alerts ack ID` stops an alert's escalation; `drctl alerts
//! test RECEIVER` sends a synthetic alert and shows what the receiver answered.
//!
//! The list exits 1 while an alert is firing and unacknowledged, and `test` exits 1
//! when the receiver did not take the alert, so scripts can act on the code alone.

use std::fmt::Write as _;
use std::process::ExitCode;

use drd_proto::text::{ago, table, time};
use drd_proto::{AlertInfo, AlertTestReport, Reply, Request};

use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::{self, Failure};

/// Flags of `drctl alerts`.
#[derive(clap::Args)]
pub struct AlertsArgs {
    /// Resolved alerts too (the newest 50).
    #[arg(long)]
    all: bool,
    #[command(subcommand)]
    action: Option<AlertsAction>,
}

/// What to do to one alert or receiver.
#[derive(clap::Subcommand)]
enum AlertsAction {
    /// Acknowledge an alert: its escalation stops; it still resolves when its
    /// condition clears. Needs the responder role; audited with who acked.
    Ack {
        /// The alert's number, as `drctl alerts` shows it.
        id: i64,
        /// What you are doing about it, for the audit log and the next responder.
        #[arg(long, short)]
        comment: Option<String>,
    },
    /// Send a synthetic alert (firing, then resolved) to one receiver now and show
    /// what it answered. Needs the operator role.
    Test {
        /// The receiver, as in `[alerts.receivers.NAME]`.
        receiver: String,
    },
}

/// Runs `drctl alerts`.
pub async fn run(global: &Global, args: &AlertsArgs) -> Result<ExitCode, Failure> {
    let now = drd_proto::text::now_ms();
    match &args.action {
        None => {
            let list = match ask(global, Request::Alerts { all: args.all }).await? {
                Reply::Alerts(list) => list,
                other => return Err(ClientError::unexpected(&other).into()),
            };
            print(global.json, &list, || alerts_text(&list, now))?;
            Ok(exit::failed_if(
                list.iter()
                    .any(|a| a.resolved_unix_ms.is_none() && a.ack.is_none()),
            ))
        }
        Some(AlertsAction::Ack { id, comment }) => {
            let request = Request::AlertAck {
                id: *id,
                comment: comment.clone(),
            };
            let info = match ask(global, request).await? {
                Reply::AlertAcked(info) => info,
                other => return Err(ClientError::unexpected(&other).into()),
            };
            print(global.json, &info, || {
                format!(
                    "alert #{} ({}) acknowledged; escalation stopped at level {} of {}\n",
                    info.id, info.source, info.level, info.levels
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Some(AlertsAction::Test { receiver }) => {
            let request = Request::AlertTest {
                receiver: receiver.clone(),
            };
            let report = match ask(global, request).await? {
                Reply::AlertTested(report) => report,
                other => return Err(ClientError::unexpected(&other).into()),
            };
            print(global.json, &report, || test_text(&report))?;
            Ok(exit::failed_if(!report.ok))
        }
    }
}

/// The alerts table, then each alert's deliveries.
pub fn alerts_text(list: &[AlertInfo], now: i64) -> String {
    if list.is_empty() {
        return "no open alerts\n".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            let state = match (&a.resolved_unix_ms, &a.ack) {
                (Some(at), _) => format!("resolved {}", ago(now, *at)),
                (None, Some(ack)) => format!("acked by {}", ack.by),
                (None, None) => "firing".to_owned(),
            };
            vec![
                a.id.to_string(),
                a.severity.as_str().to_owned(),
                a.source.clone(),
                ago(now, a.started_unix_ms),
                format!("{}/{}", a.level, a.levels),
                state,
            ]
        })
        .collect();
    let mut out = table(
        &["ID", "SEVERITY", "SOURCE", "SINCE", "LEVEL", "STATE"],
        &rows,
    );
    for a in list {
        let _ = writeln!(out, "\n#{} {}\n  {}", a.id, a.summary, a.evidence);
        if let Some(ack) = &a.ack {
            let _ = write!(out, "  acked by {} at {}", ack.by, time(ack.at_unix_ms));
            if let Some(comment) = &ack.comment {
                let _ = write!(out, ": {comment}");
            }
            out.push('\n');
        }
        for d in &a.deliveries {
            let state = match (d.delivered_unix_ms, d.next_unix_ms) {
                (Some(at), _) => format!("delivered {}", ago(now, at)),
                (None, Some(next)) if next > now => {
                    format!("waiting, next try in {}", drd_proto::text::span(next - now))
                }
                _ => "waiting".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {} {} (level {}): {state}, {} {}{}",
                d.receiver,
                d.status.as_str(),
                d.level,
                d.attempts,
                if d.attempts == 1 { "try" } else { "tries" },
                d.result
                    .as_deref()
                    .map(|r| format!("; last answer {r}"))
                    .unwrap_or_default()
            );
        }
    }
    out
}

fn test_text(r: &AlertTestReport) -> String {
    format!(
        "{} ({} {}): {}\n  firing:   {}\n  resolved: {}\n",
        r.receiver,
        r.kind,
        r.target,
        if r.ok { "reached" } else { "NOT reached" },
        r.firing,
        r.resolved
    )
}

#[cfg(test)]
mod tests {
    use drd_proto::{AlertAck, AlertStatus, DeliveryInfo, Severity};

    use super::*;

    #[test]
    fn an_alert_shows_its_level_ack_and_each_delivery() {
        let alert = AlertInfo {
            id: 7,
            dedup_key: "web-1/deadman/export".to_owned(),
            severity: Severity::Critical,
            source: "deadman/export".to_owned(),
            summary: "deadman/export down".to_owned(),
            evidence: "overdue since 02:00".to_owned(),
            started_unix_ms: 1_000_000,
            resolved_unix_ms: None,
            level: 2,
            levels: 3,
            ack: Some(AlertAck {
                at_unix_ms: 1_060_000,
                by: "uid=1000 gid=1000 pid=4".to_owned(),
                comment: Some("on it".to_owned()),
            }),
            deliveries: vec![DeliveryInfo {
                receiver: "oncall".to_owned(),
                status: AlertStatus::Firing,
                level: 1,
                attempts: 1,
                delivered_unix_ms: Some(1_001_000),
                next_unix_ms: None,
                result: Some("HTTP 200".to_owned()),
            }],
        };
        let text = alerts_text(&[alert], 1_120_000);
        assert!(text.contains("2/3"), "{text}");
        assert!(text.contains("acked by uid=1000"), "{text}");
        assert!(text.contains(": on it"), "{text}");
        assert!(
            text.contains(
                "oncall firing (level 1): delivered 1m 59s ago, 1 try; last answer HTTP 200"
            ),
            "{text}"
        );
        assert_eq!(alerts_text(&[], 0), "no open alerts\n");
    }
}
