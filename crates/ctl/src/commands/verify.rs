//! `drctl verify`: check the repositories' structure, and with `--read-data` their
//! content; exits 1 when it finds a problem.

use std::process::ExitCode;

use drd_proto::{text, Reply, Request};

use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::{self, Failure};

/// Flags of `drctl verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Only this job's repository and snapshots.
    #[arg(long)]
    job: Option<String>,
    /// Verify this tier (an offsite copy, say) on its own, with no fallback to
    /// another copy; by default the landing tiers are verified.
    #[arg(long)]
    tier: Option<String>,
    /// Decrypt, decompress and re-hash the stored data, not just the structure.
    #[arg(long)]
    read_data: bool,
    /// With --read-data, read only about this percentage of the data (1-100).
    #[arg(long, requires = "read_data", value_parser = drd_proto::parse_percent)]
    subset: Option<f64>,
}

/// Runs `drctl verify`.
pub async fn run(global: &Global, args: &VerifyArgs) -> Result<ExitCode, Failure> {
    let request = Request::Verify {
        job: args.job.clone(),
        tier: args.tier.clone(),
        read_data: args.read_data,
        subset_percent: args.subset,
    };
    let reports = match ask(global, request).await? {
        Reply::Verified(reports) => reports,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    print(global.json, &reports, || text::verify_reports(&reports))?;
    Ok(exit::failed_if(
        reports.iter().any(|r| !r.problems.is_empty()),
    ))
}
