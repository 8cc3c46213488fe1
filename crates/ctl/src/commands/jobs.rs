//! `drctl jobs`: the backup jobs, their last runs, next run and RPO.
//!
//! It exits 1 when any job is behind its RPO target, so a monitoring script can run
//! `drctl jobs --json` and alert on the exit code alone.

use std::fmt::Write as _;
use std::process::ExitCode;

use drd_proto::text::{ago, span, table, time};
use drd_proto::{JobInfo, Reply, Request, RunInfo};

use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::{self, Failure};

/// Runs `drctl jobs`.
pub async fn run(global: &Global) -> Result<ExitCode, Failure> {
    let list = match ask(global, Request::Jobs).await? {
        Reply::Jobs(list) => list,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    let now = drd_proto::text::now_ms();
    print(global.json, &list, || jobs_text(&list, now))?;
    Ok(exit::failed_if(list.iter().any(|j| j.behind_rpo)))
}

fn run_cell(run: Option<&RunInfo>, now: i64) -> String {
    match run {
        Some(run) => format!("{} ({})", ago(now, run.started_unix_ms), run.trigger),
        None => "never".to_owned(),
    }
}

/// The jobs table, then a line per last failure and a summary of RPO breaches.
pub fn jobs_text(list: &[JobInfo], now: i64) -> String {
    if list.is_empty() {
        return "the config defines no jobs\n".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|j| {
            let rpo = match (j.rpo_now_ms, j.rpo_target_ms) {
                (now_ms, Some(target)) => format!(
                    "{} / {}",
                    now_ms.map_or_else(|| "none".to_owned(), span),
                    span(target)
                ),
                (Some(now_ms), None) => span(now_ms),
                (None, None) => "-".to_owned(),
            };
            vec![
                format!("{}{}", j.name, if j.critical { " *" } else { "" }),
                j.schedule.clone().unwrap_or_else(|| "manual".to_owned()),
                run_cell(j.last_success.as_ref(), now),
                j.last_failure.as_ref().map_or_else(
                    || "-".to_owned(),
                    |r| format!("{} {}", run_cell(Some(r), now), r.outcome),
                ),
                if j.running {
                    "running now".to_owned()
                } else {
                    j.next_run_unix_ms.map_or_else(
                        || "-".to_owned(),
                        |at| format!("in {}", span((at - now).max(0))),
                    )
                },
                rpo,
                if j.behind_rpo { "BEHIND RPO" } else { "" }.to_owned(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "JOB",
            "SCHEDULE",
            "LAST SUCCESS",
            "LAST FAILURE",
            "NEXT RUN",
            "RPO NOW / TARGET",
            "",
        ],
        &rows,
    );
    out.push_str("(* critical: run by `drctl backup emergency`)\n");
    for j in list {
        if let Some(f) = &j.last_failure {
            let _ = writeln!(
                out,
                "{}: {} at {}: {}",
                j.name,
                f.outcome,
                time(f.started_unix_ms),
                f.error.as_deref().unwrap_or("no reason recorded")
            );
        }
    }
    let behind: Vec<&str> = list
        .iter()
        .filter(|j| j.behind_rpo)
        .map(|j| j.name.as_str())
        .collect();
    if !behind.is_empty() {
        let _ = writeln!(
            out,
            "behind RPO target: {} (the newest good snapshot is older than the job's rpo)",
            behind.join(", ")
        );
    }
    for j in list {
        for copy in &j.offsite {
            let state = if copy.missing == 0 {
                "in step".to_owned()
            } else {
                format!(
                    "{} snapshot{} behind, lag {}",
                    copy.missing,
                    if copy.missing == 1 { "" } else { "s" },
                    span(copy.lag_ms)
                )
            };
            let last = copy.last_ok_unix_ms.map_or_else(
                || "never copied".to_owned(),
                |at| format!("last copy {}", ago(now, at)),
            );
            let failing = copy
                .last_error
                .as_deref()
                .map(|e| format!("; FAILING: {e}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{} offsite {}: {state} ({last}){failing}",
                j.name, copy.tier
            );
        }
    }
    out
}
