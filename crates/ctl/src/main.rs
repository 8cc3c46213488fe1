//! `drctl`: the on-call engineer's client for drd.
//!
//! Parses the command line, sends one request over the control socket, and prints the
//! answer for a person (or as JSON with `--json`). Exit codes are in `exit.rs`.

mod client;
mod commands;
mod exit;
mod jobs;
mod progress;
mod shutdown;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// drctl talks to drd, the disaster-recovery supervisor, over its Unix socket.
#[derive(Parser)]
#[command(version, about, after_long_help = exit::HELP, after_help = "Exit codes: see --help.")]
pub struct Cli {
    /// drd's control socket.
    #[arg(long, global = true, env = "DRD_SOCKET", default_value = drd_proto::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the daemon: version, uptime, config, workers and the last audit entries.
    Status {
        /// How many recent audit entries to show.
        #[arg(long, default_value_t = 10)]
        audit: u32,
    },
    /// List audit entries, or verify the audit hash chain.
    ///
    /// Every state change, refusal, signal and config reload is in the audit log, and
    /// each entry carries the hash of the one before it.
    Audit {
        #[command(subcommand)]
        command: Option<AuditCommand>,
        /// Only entries newer than this, like 30m, 2h or 7d.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// At most this many (the newest); 0 for all.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
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
    Backup {
        #[command(subcommand)]
        command: Option<jobs::BackupCommand>,
        /// The job, as named in the config ([jobs.NAME]).
        #[arg(long, required = true)]
        job: Option<String>,
    },
    /// List snapshots: id, job, time, parent, size, files.
    Backups {
        /// Only this job's snapshots.
        #[arg(long)]
        job: Option<String>,
        /// The snapshots on this tier (an offsite copy) instead of the landing tiers.
        #[arg(long)]
        tier: Option<String>,
    },
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
    Restore {
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
    },
    /// Check the repositories: structure, and with --read-data every blob's content.
    Verify {
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
    },
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
    /// again what it stopped, in dependency order.
    Abort(shutdown::AbortArgs),
    /// List the backup jobs: schedule, last success and failure, next run, and RPO
    /// now against the job's target. Exits 1 when a job is behind its RPO target.
    Jobs,
    /// Apply each job's retention: forget the snapshots no rule keeps and
    /// garbage-collect the data only they used (repacking mostly-garbage packs).
    Prune(jobs::PruneArgs),
    /// Repair the repositories.
    Repair {
        #[command(subcommand)]
        command: RepairCommand,
    },
}

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

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain; name the first entry that does not match (exit 1).
    Verify,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { exit::USAGE } else { 0 });
        }
    };
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
    let ran = match &cli.command {
        Command::Shutdown(args) => runtime.block_on(shutdown::shutdown(&cli, args)),
        Command::Abort(args) => runtime.block_on(shutdown::abort(&cli, args)),
        Command::Jobs => runtime.block_on(jobs::jobs(&cli)),
        Command::Prune(args) => runtime.block_on(jobs::prune(&cli, args)),
        Command::Backup {
            command: Some(jobs::BackupCommand::Emergency),
            ..
        } => runtime.block_on(jobs::emergency(&cli)),
        _ => runtime.block_on(commands::run(&cli)),
    };
    match ran {
        Ok(code) => code,
        Err(commands::Failure::Client(err)) => {
            eprintln!("drctl: {err:#}");
            exit::code_for(&err)
        }
        Err(commands::Failure::Usage(message)) => {
            eprintln!("drctl: {message}");
            ExitCode::from(exit::USAGE)
        }
    }
}
