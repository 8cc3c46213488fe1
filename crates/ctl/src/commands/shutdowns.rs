//! `drctl shutdowns`: past emergency shutdowns and recoveries, newest first: what
//! started each, when, how long it took, how it ended, and for a recovery the
//! shutdown it brought back and the measured RTO.
//!
//! It exits 0 whatever the runs' outcomes: it is a record, not a check (`drctl
//! status` names a run that is under way or interrupted).

use std::fmt::Write as _;
use std::process::ExitCode;

use drd_proto::text::{span, table, time};
use drd_proto::{Reply, Request, RunKind, RunState, RunSummary};

use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::Failure;

/// Flags of `drctl shutdowns`.
#[derive(clap::Args)]
pub struct ShutdownsArgs {
    /// At most this many runs (the newest).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
}

/// Runs `drctl shutdowns`.
pub async fn run(global: &Global, args: &ShutdownsArgs) -> Result<ExitCode, Failure> {
    let request = Request::Shutdowns { limit: args.limit };
    let runs = match ask(global, request).await? {
        Reply::Shutdowns(runs) => runs,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    let now = drd_proto::text::now_ms();
    print(global.json, &runs, || shutdowns_text(&runs, now))?;
    Ok(ExitCode::SUCCESS)
}

/// A run's length for people: milliseconds matter for a short run, not a long one.
fn duration(ms: i64) -> String {
    match ms {
        ..=999 => format!("{}ms", ms.max(0)),
        1000..=59_999 => format!("{}.{}s", ms / 1000, ms % 1000 / 100),
        _ => span(ms),
    }
}

/// The runs table, then what to do about an interrupted run.
pub fn shutdowns_text(runs: &[RunSummary], now: i64) -> String {
    if runs.is_empty() {
        return "no emergency shutdown or recovery has run yet\n".to_owned();
    }
    let dash = || "-".to_owned();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let took = match r.ended_unix_ms {
                Some(end) => duration(end - r.started_unix_ms),
                None if r.state == RunState::Running.as_str() => {
                    format!("{} so far", duration(now - r.started_unix_ms))
                }
                None => dash(),
            };
            vec![
                format!("#{}", r.run_id),
                r.kind.as_str().to_owned(),
                r.trigger.as_str().to_owned(),
                time(r.started_unix_ms),
                took,
                r.state.clone(),
                r.recovers.map_or_else(dash, |id| format!("#{id}")),
                r.rto_ms
                    .map_or_else(dash, |ms| duration(i64::try_from(ms).unwrap_or(i64::MAX))),
                r.actor.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "KIND",
            "TRIGGER",
            "STARTED (UTC)",
            "DURATION",
            "OUTCOME",
            "RECOVERS",
            "RTO",
            "ACTOR",
        ],
        &rows,
    );
    for r in runs {
        if r.state == RunState::Interrupted.as_str() {
            let (what, resume) = match r.kind {
                RunKind::Shutdown => ("shutdown", "drctl shutdown --resume"),
                RunKind::Recovery => ("recovery", "drctl recover --resume"),
            };
            let _ = writeln!(
                out,
                "\n{what} #{} was interrupted when drd died or was stopped; carry on with \
                 `{resume}` or stop it with `drctl abort`",
                r.run_id
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use drd_proto::ShutdownTrigger;

    use super::*;

    fn run(run_id: i64, kind: RunKind, state: &str, ended: Option<i64>) -> RunSummary {
        RunSummary {
            run_id,
            kind,
            trigger: ShutdownTrigger::Manual,
            actor: "uid 0".to_owned(),
            started_unix_ms: 1_000,
            ended_unix_ms: ended,
            state: state.to_owned(),
            recovers: (kind == RunKind::Recovery).then_some(1),
            rto_ms: (kind == RunKind::Recovery).then_some(95_000),
        }
    }

    #[test]
    fn each_run_shows_its_duration_outcome_and_a_recovery_its_rto() {
        let runs = [
            run(3, RunKind::Shutdown, "interrupted", None),
            run(2, RunKind::Recovery, "recovered", Some(31_000)),
            run(1, RunKind::Shutdown, "completed", Some(1_450)),
        ];
        let text = shutdowns_text(&runs, 100_000);
        let line = |id: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(id))
                .unwrap_or_else(|| panic!("no {id} in {text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            line("#1"),
            [
                "#1",
                "shutdown",
                "manual",
                "1970-01-01T00:00:01Z",
                "450ms",
                "completed",
                "-",
                "-",
                "uid",
                "0"
            ]
        );
        assert_eq!(
            line("#2")[4..8],
            ["30.0s", "recovered", "#1", "1m"],
            "{text}"
        );
        assert!(
            text.contains("shutdown #3 was interrupted")
                && text.contains("drctl shutdown --resume"),
            "{text}"
        );
        assert_eq!(
            shutdowns_text(&[], 0),
            "no emergency shutdown or recovery has run yet\n"
        );
    }
}
