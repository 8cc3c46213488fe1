//! `drctl jobs`, `drctl prune` and `drctl backup emergency`: the backup coordinator
//! from the terminal.
//!
//! `jobs` exits 1 when any job is behind its RPO target, so a monitoring script can
//! run `drctl jobs --json` and alert on the exit code alone. `backup emergency` exits 1
//! when any critical job failed. `prune --dry-run` changes nothing and shows which
//! rule keeps each snapshot that stays.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use drd_proto::text::{ago, bytes, short, span, table, time};
use drd_proto::{EmergencyReport, JobInfo, PruneReport, Reply, Request, RunInfo};

use crate::client::{Client, ClientError};
use crate::commands::{print, Failure};
use crate::progress::Bar;
use crate::{exit, Cli};

/// `drctl backup` subcommands.
#[derive(Subcommand)]
pub enum BackupCommand {
    /// Run every critical job now, one after another in priority order (lower
    /// first), with live progress; ends with a table of each job's snapshot,
    /// duration and outcome, and exits 1 if any failed.
    Emergency,
}

/// Flags of `drctl prune`.
#[derive(Args)]
pub struct PruneArgs {
    /// Only this job's snapshots (the garbage collection still covers its tier).
    #[arg(long)]
    job: Option<String>,
    /// List what would be forgotten and which rule keeps each snapshot that stays;
    /// change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Sends `request`, with live progress unless `--json`.
async fn ask(cli: &Cli, request: Request) -> Result<Reply, Failure> {
    let mut client = Client::connect(&cli.socket).await?;
    let mut bar = Bar::new(cli.json);
    let reply = client.request(request, |event| bar.show(&event)).await;
    bar.finish();
    Ok(reply?)
}

fn unexpected(reply: &Reply) -> Failure {
    Failure::Client(ClientError::Protocol(format!("unexpected reply {reply:?}")))
}

/// `drctl jobs`.
pub async fn jobs(cli: &Cli) -> Result<ExitCode, Failure> {
    let list = match ask(cli, Request::Jobs).await? {
        Reply::Jobs(list) => list,
        other => return Err(unexpected(&other)),
    };
    let now = drd_proto::text::now_ms();
    let printed = print(cli.json, &list, || jobs_text(&list, now));
    if printed != ExitCode::SUCCESS {
        return Ok(printed);
    }
    Ok(if list.iter().any(|j| j.behind_rpo) {
        ExitCode::from(exit::FAILED)
    } else {
        ExitCode::SUCCESS
    })
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

/// `drctl prune`.
pub async fn prune(cli: &Cli, args: &PruneArgs) -> Result<ExitCode, Failure> {
    let request = Request::Prune {
        job: args.job.clone(),
        dry_run: args.dry_run,
    };
    let report = match ask(cli, request).await? {
        Reply::Pruned(report) => report,
        other => return Err(unexpected(&other)),
    };
    let printed = print(cli.json, &report, || prune_text(&report));
    if printed != ExitCode::SUCCESS {
        return Ok(printed);
    }
    Ok(ExitCode::SUCCESS)
}

/// Per tier and job: each snapshot, kept (and by which rules) or going.
pub fn prune_text(report: &PruneReport) -> String {
    let mut out = String::new();
    let (mut gone, mut kept) = (0, 0);
    for tier in &report.tiers {
        let _ = writeln!(out, "tier {} ({})", tier.tier, tier.location);
        for job in &tier.jobs {
            let _ = writeln!(out, "  job {}: {}", job.job, job.policy);
            let rows: Vec<Vec<String>> = job
                .snapshots
                .iter()
                .map(|s| {
                    let verdict = if s.kept_by.is_empty() {
                        gone += 1;
                        if report.dry_run {
                            "would go"
                        } else {
                            "forgotten"
                        }
                        .to_owned()
                    } else {
                        kept += 1;
                        format!("kept: {}", s.kept_by.join(", "))
                    };
                    vec![short(&s.id).to_owned(), time(s.unix_ms), verdict]
                })
                .collect();
            if rows.is_empty() {
                out.push_str("    no snapshots\n");
            } else {
                for line in table(&["SNAPSHOT", "TIME", "DECISION"], &rows).lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
        if let Some(gc) = &tier.gc {
            let _ = writeln!(
                out,
                "  garbage collected: {} packs deleted, {} repacked, {} orphan packs removed, {} blobs removed, {} freed",
                gc.packs_deleted,
                gc.packs_repacked,
                gc.orphan_packs_deleted,
                gc.blobs_removed,
                bytes(gc.bytes_freed)
            );
        }
        for warning in &tier.warnings {
            let _ = writeln!(out, "  note: {warning}");
        }
    }
    if report.dry_run {
        let _ = writeln!(
            out,
            "dry run: {gone} snapshots would go, {kept} stay; nothing was changed"
        );
    } else {
        let _ = writeln!(out, "{gone} snapshots forgotten, {kept} kept");
    }
    out
}

/// `drctl backup emergency`.
pub async fn emergency(cli: &Cli) -> Result<ExitCode, Failure> {
    let report = match ask(cli, Request::EmergencyBackup).await? {
        Reply::EmergencyBackedUp(report) => report,
        other => return Err(unexpected(&other)),
    };
    let printed = print(cli.json, &report, || emergency_text(&report));
    if printed != ExitCode::SUCCESS {
        return Ok(printed);
    }
    Ok(if report.runs.iter().any(|r| r.outcome != "ok") {
        ExitCode::from(exit::FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// The final table of an emergency backup, then the errors.
pub fn emergency_text(report: &EmergencyReport) -> String {
    let rows: Vec<Vec<String>> = report
        .runs
        .iter()
        .map(|r| {
            vec![
                r.job.clone(),
                r.priority.to_string(),
                r.snapshot.as_deref().map_or("-", short).to_owned(),
                duration(r.elapsed_ms),
                r.outcome.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &["JOB", "PRIORITY", "SNAPSHOT", "DURATION", "OUTCOME"],
        &rows,
    );
    for r in &report.runs {
        if let Some(error) = &r.error {
            let _ = writeln!(out, "{}: {error}", r.job);
        }
    }
    let failed = report.runs.iter().filter(|r| r.outcome != "ok").count();
    let _ = writeln!(
        out,
        "emergency backup: {} of {} critical jobs backed up in {}",
        report.runs.len() - failed,
        report.runs.len(),
        duration(report.elapsed_ms)
    );
    out
}

/// A run's length: tenths of a second under a minute, else [`span`].
fn duration(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        span(i64::try_from(ms).unwrap_or(i64::MAX))
    }
}
