//! `drctl monitors`: every monitor check with its state, value, thresholds, since
//! when, and for each check that is not ok the evidence and the actions it took.
//!
//! It exits 1 while any check is firing or clearing, so a script can alert on the
//! exit code of `drctl monitors --json` alone.

use std::fmt::Write as _;
use std::process::ExitCode;

use drd_proto::text::{ago, table};
use drd_proto::{CheckState, MonitorCheck, Reply, Request};

use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::{self, Failure};

/// Runs `drctl monitors`.
pub async fn run(global: &Global) -> Result<ExitCode, Failure> {
    let checks = match ask(global, Request::Monitors).await? {
        Reply::Monitors(checks) => checks,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    let now = drd_proto::text::now_ms();
    print(global.json, &checks, || monitors_text(&checks, now))?;
    Ok(exit::failed_if(checks.iter().any(|c| {
        matches!(c.state, CheckState::Firing | CheckState::Clearing)
    })))
}

/// The checks table, then the evidence and actions of every check that is not ok.
pub fn monitors_text(checks: &[MonitorCheck], now: i64) -> String {
    if checks.is_empty() {
        return "no monitor has sampled anything yet; the [monitors.*] tables say what to \
                check (see docs/configuration.md)\n"
            .to_owned();
    }
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            let state = match c.breaker {
                Some(breaker) => format!("{} (breaker {})", c.state.as_str(), breaker.as_str()),
                None => c.state.as_str().to_owned(),
            };
            vec![
                c.monitor.clone(),
                c.check.clone(),
                state,
                match &c.error {
                    Some(_) => "unreadable".to_owned(),
                    None if c.value.is_empty() => "-".to_owned(),
                    None => c.value.clone(),
                },
                c.fire.clone(),
                c.clear.clone(),
                c.since_unix_ms
                    .map_or_else(|| "-".to_owned(), |t| ago(now, t)),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "MONITOR", "CHECK", "STATE", "VALUE", "FIRE", "CLEAR", "SINCE",
        ],
        &rows,
    );
    for c in checks {
        if let Some(err) = &c.error {
            let _ = writeln!(out, "\n{}/{}: cannot sample: {err}", c.monitor, c.check);
        }
        if c.state == CheckState::Ok && c.actions.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n{}/{} is {}: {}",
            c.monitor,
            c.check,
            c.state.as_str(),
            c.evidence
        );
        for action in &c.actions {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                ago(now, action.at_unix_ms),
                action.action,
                action.outcome
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use drd_proto::ActionTaken;

    use super::*;

    #[test]
    fn a_firing_check_shows_its_evidence_and_actions() {
        let check = MonitorCheck {
            monitor: "resources".to_owned(),
            check: "disk /var".to_owned(),
            state: CheckState::Firing,
            value: "96.0% used".to_owned(),
            fire: ">= 95%".to_owned(),
            clear: "<= 90%".to_owned(),
            since_unix_ms: Some(1_000),
            evidence: "/var: 96.0% used, 40 MiB free of 1.0 GiB".to_owned(),
            breaker: None,
            error: None,
            actions: vec![ActionTaken {
                at_unix_ms: 1_000,
                action: "alert critical".to_owned(),
                outcome: "sent".to_owned(),
            }],
        };
        let text = monitors_text(&[check], 61_000);
        assert!(text.contains("disk /var"), "{text}");
        assert!(
            text.contains("resources/disk /var is firing: /var: 96.0% used"),
            "{text}"
        );
        assert!(text.contains("alert critical: sent"), "{text}");
    }
}
