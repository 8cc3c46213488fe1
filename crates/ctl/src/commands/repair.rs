//! `drctl repair index`: rebuild a repository's index from its pack headers; exits 1
//! when a pack could not be indexed.

use std::process::ExitCode;

use clap::Subcommand;
use drd_proto::{text, Reply, Request};

use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::{self, Failure};

/// Flags of `drctl repair`.
#[derive(clap::Args)]
pub struct RepairArgs {
    #[command(subcommand)]
    command: RepairCommand,
}

/// `drctl repair` subcommands.
#[derive(Subcommand)]
enum RepairCommand {
    /// Rebuild the index from the pack headers: index every pack that no readable
    /// index file lists, then remove the damaged index files (what `verify` reports
    /// as "index file ... is damaged"). Exits 1 when a pack could not be indexed.
    Index {
        /// Only this job's repository.
        #[arg(long)]
        job: Option<String>,
        /// Repair this tier (an offsite copy, say); by default the landing tiers.
        #[arg(long)]
        tier: Option<String>,
    },
}

/// Runs `drctl repair index`.
pub async fn run(global: &Global, args: &RepairArgs) -> Result<ExitCode, Failure> {
    let RepairCommand::Index { job, tier } = &args.command;
    let request = Request::RepairIndex {
        job: job.clone(),
        tier: tier.clone(),
    };
    let reports = match ask(global, request).await? {
        Reply::IndexRepaired(reports) => reports,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    print(global.json, &reports, || text::repair_reports(&reports))?;
    Ok(exit::failed_if(
        reports.iter().any(|r| !r.unreadable_packs.is_empty()),
    ))
}
