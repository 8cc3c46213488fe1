//! drctl's command line: the clap definitions and the one dispatch to the command
//! module that runs each (`commands/<command>.rs`). In the library so `main.rs` stays
//! a few lines and the xtask renders the man pages and completions from the very same
//! definitions (`cargo xtask gen`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::{
    abort, alerts, audit, backup, backups, deadman, heartbeat, jobs, monitors, prune, recover,
    reload, repair, restore, shutdown, shutdowns, status, test, validate, verify, Global,
};
use crate::exit::{self, Failure};

/// drctl talks to drd, the disaster-recovery supervisor, over its Unix socket.
#[derive(Parser)]
#[command(version, about, after_long_help = exit::HELP, after_help = "Exit codes: see --help.")]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the daemon: version, uptime, config, workers and the last audit entries.
    Status(status::StatusArgs),
    /// List audit entries, or verify the audit hash chain.
    ///
    /// Every state change, refusal, signal and config reload is in the audit log, and
    /// each entry carries the hash of the one before it.
    Audit(audit::AuditArgs),
    /// Reload drd's config file; a bad config is refused with its problems and the old
    /// one stays in force.
    Reload,
    /// Run a backup now, with live progress.
    ///
    /// Examples:
    ///   drctl backup --job critical-databases   one job; prints the snapshot and its stats
    ///   drctl backup emergency                  every critical job now, in priority order
    #[command(
        verbatim_doc_comment,
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true
    )]
    Backup(backup::BackupArgs),
    /// List snapshots: id, job, time, parent, size, files.
    Backups(backups::BackupsArgs),
    /// Restore a snapshot, or part of it, into a folder.
    ///
    /// Examples:
    ///   drctl restore --backup-id latest --job db --target /srv/restore
    ///   drctl restore --backup-id latest --job db --at "2 hours ago" --target /srv/r
    ///   drctl restore --backup-id 3fa2c1d0 --path /etc/nginx --target /tmp/nginx
    ///
    /// A blob missing or damaged on the landing tier is read from the job's offsite
    /// tiers. A file that needs a blob no tier holds intact is not restored under its
    /// name: its readable parts are kept as NAME.damaged (unreadable parts as zeros,
    /// with the file's owner and mode), every other file is restored, the damaged ones
    /// are listed (in --json too, under "damaged"), and drctl exits 1.
    ///
    /// Callers other than root restore only below [restore] allowed_targets (by
    /// default STATE_DIR/restores).
    #[command(verbatim_doc_comment)]
    Restore(restore::RestoreArgs),
    /// Check the repositories: structure, and with --read-data every blob's content.
    Verify(verify::VerifyArgs),
    /// Emergency shutdown: stop the configured services in dependency order, with
    /// state saved first (preserve jobs) and drain hooks; streamed live.
    ///
    /// Examples:
    ///   drctl shutdown --dry-run
    ///   drctl shutdown --trigger data_corruption --reason "fsck errors on /srv"
    ///   drctl shutdown --trigger security_breach --force --yes
    ///   drctl shutdown --resume
    #[command(verbatim_doc_comment)]
    Shutdown(shutdown::ShutdownArgs),
    /// Stop a running (or interrupted) shutdown at its next safe point and start
    /// again what it stopped, in dependency order. A recovery is stopped at its next
    /// safe point; what it started keeps running.
    Abort(abort::AbortArgs),
    /// Bring services back after a shutdown: initiate (start order), validate (the
    /// trigger has cleared, validate hooks, SQLite integrity of the databases each
    /// service owns), optionally restore data, start level by level waiting for
    /// health, verify, undrain. Reports the measured RTO. Exits 1 unless every
    /// service came back; a no-go starts nothing.
    ///
    /// Examples:
    ///   drctl recover --dry-run                  the plan and the go / no-go now
    ///   drctl recover --yes                      what the last shutdown stopped
    ///   drctl recover --restore-data --yes       data back from the shutdown's snapshots first
    ///   drctl recover --only api --yes           api and what depends on it
    ///   drctl recover --resume                   after drd died mid-recovery
    #[command(verbatim_doc_comment)]
    Recover(recover::RecoverArgs),
    /// List the backup jobs: schedule, last success and failure, next run, and RPO
    /// now against the job's target. Exits 1 when a job is behind its RPO target.
    Jobs,
    /// Apply each job's retention: forget the snapshots no rule keeps and
    /// garbage-collect the data only they used (repacking mostly-garbage packs).
    Prune(prune::PruneArgs),
    /// Repair the repositories.
    Repair(repair::RepairArgs),
    /// Ping a deadman switch: a success, or with --start, --fail, --exit-code N.
    ///
    /// Examples:
    ///   drctl heartbeat nightly-export                       the job succeeded
    ///   drctl heartbeat nightly-export --start --run-id 42   it started
    ///   drctl heartbeat nightly-export --exit-code $? --run-id 42
    ///
    /// Operators may ping any switch; a switch's own users and groups only it. An
    /// unknown switch exits 66 with the known names.
    #[command(verbatim_doc_comment)]
    Heartbeat(heartbeat::HeartbeatArgs),
    /// List the deadman switches: state, last ping and its kind, next deadline, run
    /// in progress; or pause / resume one. Exits 1 when a switch is down.
    #[command(args_conflicts_with_subcommands = true)]
    Deadman(deadman::DeadmanArgs),
    /// List the monitor checks: state (ok, pending, firing, clearing), value,
    /// thresholds, since when, and the evidence and actions of every check that is not
    /// ok. Exits 1 while a check is firing or clearing.
    Monitors,
    /// List past emergency shutdowns and recoveries, newest first: kind, trigger,
    /// start, duration, outcome (or running, interrupted), the shutdown a recovery
    /// brought back and its measured RTO, and who started it.
    Shutdowns(shutdowns::ShutdownsArgs),
    /// List open alerts: severity, source, since, escalation level, ack, and where
    /// each delivery stands; or acknowledge one, or test a receiver.
    ///
    /// Examples:
    ///   drctl alerts                              open alerts; exits 1 if one is unacked
    ///   drctl alerts --all --json                 resolved ones too, for scripts
    ///   drctl alerts ack 12 -c "disk cleanup running"   stop escalation (responder)
    ///   drctl alerts test oncall-webhook          send a synthetic alert (operator)
    #[command(verbatim_doc_comment, args_conflicts_with_subcommands = true)]
    Alerts(alerts::AlertsArgs),
    /// Recovery drills: run them now, list the scenarios, or report what they
    /// measured (RTO and RPO against the targets, per category).
    ///
    /// Examples:
    ///   drctl test run                                  every scenario now (operator)
    ///   drctl test run --scenario database_recovery     one scenario
    ///   drctl test list                                 scenarios and what each drills here
    ///   drctl test report --since 30d                   per category: last, median, worst
    ///   drctl test report --markdown > dr-report.md     a report to attach to a review
    #[command(verbatim_doc_comment)]
    Test(test::TestArgs),
    /// Is this host ready to recover? One line per check (config, keys, tiers, RPO,
    /// drills, Docker, disk, socket, audit chain, deadman switches, watchdog): pass,
    /// warn or fail, with what to do. Exits 1 if any check fails.
    Validate,
}

/// Runs the one command the command line names.
async fn dispatch(cli: &Cli) -> Result<ExitCode, Failure> {
    let global = &cli.global;
    match &cli.command {
        Command::Status(args) => status::run(global, args).await,
        Command::Audit(args) => audit::run(global, args).await,
        Command::Reload => reload::run(global).await,
        Command::Backup(args) => backup::run(global, args).await,
        Command::Backups(args) => backups::run(global, args).await,
        Command::Restore(args) => restore::run(global, args).await,
        Command::Verify(args) => verify::run(global, args).await,
        Command::Shutdown(args) => shutdown::run(global, args).await,
        Command::Abort(args) => abort::run(global, args).await,
        Command::Recover(args) => recover::run(global, args).await,
        Command::Jobs => jobs::run(global).await,
        Command::Prune(args) => prune::run(global, args).await,
        Command::Repair(args) => repair::run(global, args).await,
        Command::Heartbeat(args) => heartbeat::run(global, args).await,
        Command::Deadman(args) => deadman::run(global, args).await,
        Command::Monitors => monitors::run(global).await,
        Command::Shutdowns(args) => shutdowns::run(global, args).await,
        Command::Alerts(args) => alerts::run(global, args).await,
        Command::Test(args) => test::run(global, args).await,
        Command::Validate => validate::run(global).await,
    }
}

impl Cli {
    /// Runs the command on a current-thread runtime, prints why it failed if it did,
    /// and returns the exit code (`exit.rs`).
    pub fn run(&self) -> ExitCode {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("drctl: cannot start: {err}");
                return ExitCode::from(exit::SOFTWARE);
            }
        };
        runtime
            .block_on(dispatch(self))
            .unwrap_or_else(Failure::report)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_command_flags_and_their_rules_are_consistent() {
        // Flags now live beside each command; a `requires` or conflict naming a flag
        // that moved or was renamed would only fail when a user typed it.
        Cli::command().debug_assert();
    }
}
