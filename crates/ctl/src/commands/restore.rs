//! `drctl restore`: a snapshot, or part of it, into a folder. The selector and the
//! target are checked before connecting, so a bad `--at` is a usage error (exit 64)
//! even with no daemon. A restore that could not restore every file whole exits 1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use drd_proto::{text, Reply, Request, SnapshotSelector};

use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::{self, Failure};

/// Flags of `drctl restore`.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// A snapshot id (or unique prefix), or `latest`.
    #[arg(long)]
    backup_id: String,
    /// The job whose snapshots to pick from (and whose repository to read).
    #[arg(long)]
    job: Option<String>,
    /// Read from this tier, such as an offsite copy when the local disk is lost. By
    /// default the job's landing tier is read, and any blob missing or damaged
    /// there is fetched from the job's offsite tiers.
    #[arg(long)]
    tier: Option<String>,
    /// With `latest`: the newest snapshot at or before this time (RFC 3339 such as
    /// 2026-11-23T10:00:00Z, or a span back like "2 hours ago").
    #[arg(long)]
    at: Option<String>,
    /// Restore only this path inside the snapshot (repeatable).
    #[arg(long = "path")]
    paths: Vec<String>,
    /// The folder to restore into; snapshot paths are recreated below it.
    #[arg(long)]
    target: PathBuf,
    /// Allow a target that is not empty, replacing files in the way.
    #[arg(long)]
    overwrite: bool,
    /// With `latest`: when a damaged snapshot file might be newer, restore the
    /// newest readable snapshot anyway (without this, that is refused, and the
    /// refusal names the damaged file and the older snapshot's id).
    #[arg(long)]
    allow_older: bool,
}

/// Runs `drctl restore`.
pub async fn run(global: &Global, args: &RestoreArgs) -> Result<ExitCode, Failure> {
    let request = request(args)?;
    let report = match ask(global, request).await? {
        Reply::Restored(report) => report,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    print(global.json, &report, || text::restore_report(&report))?;
    if report.damaged_total > 0 {
        eprintln!(
            "drctl: restore incomplete: {} file(s) could not be restored whole (listed \
             above); every other file was restored",
            report.damaged_total
        );
    }
    Ok(exit::failed_if(report.damaged_total > 0))
}

fn request(args: &RestoreArgs) -> Result<Request, Failure> {
    let selector =
        SnapshotSelector::from_args(&args.backup_id, args.at.as_deref(), SystemTime::now())
            .map_err(Failure::Usage)?;
    // The daemon has another working directory: send an absolute target.
    let target = std::path::absolute(&args.target)
        .map_err(|e| Failure::Usage(format!("--target {}: {e}", args.target.display())))?;
    Ok(Request::Restore {
        selector,
        job: args.job.clone(),
        tier: args.tier.clone(),
        paths: args.paths.clone(),
        target: target.display().to_string(),
        overwrite: args.overwrite,
        allow_older: args.allow_older,
    })
}
