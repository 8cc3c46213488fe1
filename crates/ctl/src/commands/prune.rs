//! `drctl prune`: apply each job's retention and garbage-collect what no snapshot
//! uses any more. `--dry-run` changes nothing and shows which rule keeps each
//! snapshot that stays.

use std::fmt::Write as _;
use std::process::ExitCode;

use drd_proto::text::{bytes, short, table, time};
use drd_proto::{PruneReport, Reply, Request};

use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::Failure;

/// Flags of `drctl prune`.
#[derive(clap::Args)]
pub struct PruneArgs {
    /// Only this job's snapshots (the garbage collection still covers its tier).
    #[arg(long)]
    job: Option<String>,
    /// List what would be forgotten and which rule keeps each snapshot that stays;
    /// change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs `drctl prune`.
pub async fn run(global: &Global, args: &PruneArgs) -> Result<ExitCode, Failure> {
    let request = Request::Prune {
        job: args.job.clone(),
        dry_run: args.dry_run,
    };
    let report = match ask(global, request).await? {
        Reply::Pruned(report) => report,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    print(global.json, &report, || prune_text(&report))?;
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
