//! `drctl backups`: the snapshots on the landing tiers, or on one named tier.

use std::process::ExitCode;

use drd_proto::{text, Reply, Request};

use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::Failure;

/// Flags of `drctl backups`.
#[derive(clap::Args)]
pub struct BackupsArgs {
    /// Only this job's snapshots.
    #[arg(long)]
    job: Option<String>,
    /// The snapshots on this tier (an offsite copy) instead of the landing tiers.
    #[arg(long)]
    tier: Option<String>,
}

/// Runs `drctl backups`.
pub async fn run(global: &Global, args: &BackupsArgs) -> Result<ExitCode, Failure> {
    let request = Request::Backups {
        job: args.job.clone(),
        tier: args.tier.clone(),
    };
    let list = match ask(global, request).await? {
        Reply::Snapshots(list) => list,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    print(global.json, &list, || text::snapshots(&list))?;
    Ok(ExitCode::SUCCESS)
}
