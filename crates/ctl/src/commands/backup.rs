//! `drctl backup --job NAME` and `drctl backup emergency`: run backups now, with
//! live progress.
//!
//! `backup --job` prints the snapshot and its stats. `backup emergency` runs every
//! critical job in priority order, ends with a table of each job's snapshot,
//! duration and outcome, and exits 1 when any of them failed.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Subcommand;
use drd_proto::text::{self, short, span, table};
use drd_proto::{EmergencyReport, EmergencyRun, Reply, Request, RunOutcome};

use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::{self, Failure};

/// Flags of `drctl backup`.
#[derive(clap::Args)]
pub struct BackupArgs {
    #[command(subcommand)]
    command: Option<BackupCommand>,
    /// The job, as named in the config ([jobs.NAME]).
    #[arg(long, required = true)]
    job: Option<String>,
}

/// `drctl backup` subcommands.
#[derive(Subcommand)]
enum BackupCommand {
    /// Run every critical job now, one after another in priority order (lower
    /// first), with live progress; ends with a table of each job's snapshot,
    /// duration and outcome, and exits 1 if any failed.
    Emergency,
}

/// Runs `drctl backup --job NAME` or `drctl backup emergency`.
pub async fn run(global: &Global, args: &BackupArgs) -> Result<ExitCode, Failure> {
    match (&args.command, &args.job) {
        (Some(BackupCommand::Emergency), _) => emergency(global).await,
        (None, Some(job)) => job_now(global, job).await,
        // clap requires one of the two; this arm only keeps the types honest.
        (None, None) => Err(Failure::Usage("use --job NAME or `emergency`".to_owned())),
    }
}

async fn job_now(global: &Global, job: &str) -> Result<ExitCode, Failure> {
    let request = Request::Backup {
        job: job.to_owned(),
    };
    let report = match ask(global, request).await? {
        Reply::BackedUp(report) => report,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    print(global.json, &report, || text::backup_report(&report))?;
    Ok(ExitCode::SUCCESS)
}

async fn emergency(global: &Global) -> Result<ExitCode, Failure> {
    let report = match ask(global, Request::EmergencyBackup).await? {
        Reply::EmergencyBackedUp(report) => report,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    print(global.json, &report, || emergency_text(&report))?;
    Ok(exit::failed_if(report.runs.iter().any(failed)))
}

/// Whether a critical job's run in an emergency backup failed.
fn failed(run: &EmergencyRun) -> bool {
    run.outcome != RunOutcome::Ok
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
                r.outcome.to_string(),
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
    let failures = report.runs.iter().filter(|r| failed(r)).count();
    let _ = writeln!(
        out,
        "emergency backup: {} of {} critical jobs backed up in {}",
        report.runs.len() - failures,
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
