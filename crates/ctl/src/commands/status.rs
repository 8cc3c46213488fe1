//! `drctl status`: the daemon at a glance (version, uptime, config, workers and the
//! last audit entries).

use std::process::ExitCode;

use drd_proto::{text, Reply, Request};

use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::Failure;

/// Flags of `drctl status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// How many recent audit entries to show.
    #[arg(long, default_value_t = 10)]
    audit: u32,
}

/// Runs `drctl status`.
pub async fn run(global: &Global, args: &StatusArgs) -> Result<ExitCode, Failure> {
    let request = Request::Status {
        audit_tail: args.audit,
    };
    let report = match ask(global, request).await? {
        Reply::Status(report) => report,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    print(global.json, &report, || text::status(&report))?;
    Ok(ExitCode::SUCCESS)
}
