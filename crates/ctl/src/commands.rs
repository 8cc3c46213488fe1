//! One function per command: build the request, send it, print the reply.

use std::process::ExitCode;
use std::time::SystemTime;

use drd_proto::text as render;
use drd_proto::{Reply, Request, SnapshotSelector};
use serde::Serialize;

use crate::client::{Client, ClientError};
use crate::progress::Bar;
use crate::{exit, AuditCommand, Cli, Command, RepairCommand};

/// Why a command did not run to its end.
pub enum Failure {
    /// Talking to drd failed, or drd refused.
    Client(ClientError),
    /// The command line makes no sense, found after parsing.
    Usage(String),
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Self {
        Failure::Client(err)
    }
}

/// Runs the command `cli` holds.
pub async fn run(cli: &Cli) -> Result<ExitCode, Failure> {
    // Check what can be checked before connecting.
    let request = request_for(&cli.command)?;
    let mut client = Client::connect(&cli.socket).await?;
    let mut bar = Bar::new(cli.json);
    let reply = client.request(request, |event| bar.show(&event)).await;
    bar.finish();
    let reply = reply?;
    let json = cli.json;
    let code = match (&cli.command, reply) {
        (Command::Status { .. }, Reply::Status(report)) => {
            print(json, &report, || render::status(&report))
        }
        (Command::Audit { command: None, .. }, Reply::AuditEntries(entries)) => {
            print(json, &entries, || {
                if entries.is_empty() {
                    "no audit entries in that window\n".to_owned()
                } else {
                    render::audit_table(&entries)
                }
            })
        }
        (Command::Audit { .. }, Reply::AuditVerified(report)) => {
            print(json, &report, || render::audit_verify(&report) + "\n");
            if report.first_mismatch.is_some() {
                return Ok(ExitCode::from(exit::FAILED));
            }
            ExitCode::SUCCESS
        }
        (Command::Reload, Reply::Reloaded { config_path }) => print(
            json,
            &serde_json::json!({ "reloaded": config_path }),
            || format!("reloaded {config_path}\n"),
        ),
        (Command::Backup { .. }, Reply::BackedUp(report)) => {
            print(json, &report, || render::backup_report(&report))
        }
        (Command::Backups { .. }, Reply::Snapshots(list)) => {
            print(json, &list, || render::snapshots(&list))
        }
        (Command::Restore { .. }, Reply::Restored(report)) => {
            print(json, &report, || render::restore_report(&report));
            if report.damaged_total > 0 {
                eprintln!(
                    "drctl: restore incomplete: {} file(s) could not be restored whole (listed \
                     above); every other file was restored",
                    report.damaged_total
                );
                return Ok(ExitCode::from(exit::FAILED));
            }
            ExitCode::SUCCESS
        }
        (Command::Verify { .. }, Reply::Verified(reports)) => {
            print(json, &reports, || render::verify_reports(&reports));
            if reports.iter().any(|r| !r.problems.is_empty()) {
                return Ok(ExitCode::from(exit::FAILED));
            }
            ExitCode::SUCCESS
        }
        (Command::Repair { .. }, Reply::IndexRepaired(reports)) => {
            print(json, &reports, || render::repair_reports(&reports));
            if reports.iter().any(|r| !r.unreadable_packs.is_empty()) {
                return Ok(ExitCode::from(exit::FAILED));
            }
            ExitCode::SUCCESS
        }
        (_, other) => {
            return Err(ClientError::Protocol(format!("unexpected reply {other:?}")).into())
        }
    };
    Ok(code)
}

fn request_for(command: &Command) -> Result<Request, Failure> {
    Ok(match command {
        Command::Status { audit } => Request::Status { audit_tail: *audit },
        Command::Audit {
            command: None,
            since,
            limit,
        } => Request::AuditList {
            since_unix_ms: since
                .map(|d| render::now_ms() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            limit: *limit,
        },
        Command::Audit {
            command: Some(AuditCommand::Verify),
            ..
        } => Request::AuditVerify,
        Command::Reload => Request::Reload,
        Command::Jobs | Command::Prune(_) => {
            return Err(Failure::Usage("jobs and prune run in jobs.rs".to_owned()))
        }
        Command::Shutdown(_) | Command::Abort(_) => {
            return Err(Failure::Usage(
                "shutdown and abort run in shutdown.rs".to_owned(),
            ))
        }
        Command::Backup { job, command } => match (job, command) {
            (Some(job), None) => Request::Backup { job: job.clone() },
            _ => return Err(Failure::Usage("use --job NAME or `emergency`".to_owned())),
        },
        Command::Backups { job, tier } => Request::Backups {
            job: job.clone(),
            tier: tier.clone(),
        },
        Command::Restore {
            backup_id,
            job,
            tier,
            at,
            paths,
            target,
            overwrite,
            allow_older,
        } => {
            let selector = SnapshotSelector::from_args(backup_id, at.as_deref(), SystemTime::now())
                .map_err(Failure::Usage)?;
            // The daemon has another working directory: send an absolute target.
            let target = std::path::absolute(target)
                .map_err(|e| Failure::Usage(format!("--target {}: {e}", target.display())))?;
            Request::Restore {
                selector,
                job: job.clone(),
                tier: tier.clone(),
                paths: paths.clone(),
                target: target.display().to_string(),
                overwrite: *overwrite,
                allow_older: *allow_older,
            }
        }
        Command::Verify {
            job,
            tier,
            read_data,
            subset,
        } => Request::Verify {
            job: job.clone(),
            tier: tier.clone(),
            read_data: *read_data,
            subset_percent: *subset,
        },
        Command::Repair {
            command: RepairCommand::Index { job, tier },
        } => Request::RepairIndex {
            job: job.clone(),
            tier: tier.clone(),
        },
    })
}

/// Prints `value` as JSON for scripts, or `text()` for people; a value that cannot be
/// formatted is an internal error (exit 70). Every command prints through this.
pub(crate) fn print<T: Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> ExitCode {
    if json {
        match serde_json::to_string_pretty(value) {
            Ok(out) => println!("{out}"),
            Err(err) => {
                eprintln!("drctl: cannot format JSON: {err}");
                return ExitCode::from(exit::SOFTWARE);
            }
        }
    } else {
        print!("{}", text());
    }
    ExitCode::SUCCESS
}
