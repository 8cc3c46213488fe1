//! `drctl audit` and `drctl audit verify`: read the audit log, or check its hash
//! chain (exit 1 at the first entry that does not match).

use std::process::ExitCode;

use clap::Subcommand;
use drd_proto::{text, Reply, Request};

use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::{self, Failure};

/// Flags of `drctl audit`.
#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    /// Only entries newer than this, like 30m, 2h or 7d.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<std::time::Duration>,
    /// At most this many (the newest); 0 for all.
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

/// `drctl audit` subcommands.
#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain; name the first entry that does not match (exit 1).
    Verify,
}

/// Runs `drctl audit` or `drctl audit verify`.
pub async fn run(global: &Global, args: &AuditArgs) -> Result<ExitCode, Failure> {
    match args.command {
        None => list(global, args).await,
        Some(AuditCommand::Verify) => verify(global).await,
    }
}

async fn list(global: &Global, args: &AuditArgs) -> Result<ExitCode, Failure> {
    let request = Request::AuditList {
        since_unix_ms: args
            .since
            .map(|d| text::now_ms() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        limit: args.limit,
    };
    let entries = match ask(global, request).await? {
        Reply::AuditEntries(entries) => entries,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    print(global.json, &entries, || {
        if entries.is_empty() {
            "no audit entries in that window\n".to_owned()
        } else {
            text::audit_table(&entries)
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn verify(global: &Global) -> Result<ExitCode, Failure> {
    let report = match ask(global, Request::AuditVerify).await? {
        Reply::AuditVerified(report) => report,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    print(global.json, &report, || text::audit_verify(&report) + "\n")?;
    Ok(exit::failed_if(report.first_mismatch.is_some()))
}
