//! `drd`: parse flags, set up logging, load the config, call the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use drd::logging::{self, LogFormat};
use drd::offline;
use drd_core::config::{Config, ConfigError};

/// drd, the disaster-recovery supervisor.
///
/// Runs under systemd (`drd run`), protects the host's services and data, and is
/// driven by `drctl` over a Unix socket.
///
/// Exit codes: 0 success; 1 an offline command failed (wrong key, damage found by
/// verify, a restore that could not finish, a repair that could not index every
/// pack); 64 the config is invalid or the command line is wrong; 66 the repository
/// or snapshot does not exist; 70 an internal error; 73 the socket, state directory
/// or catalog cannot be set up (for example another drd is running).
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (what systemd's ExecStart calls).
    Run {
        /// The config file.
        #[arg(long, short, default_value = "/etc/drd/drd.toml")]
        config: PathBuf,
        /// Where logs go: auto picks the journal when its socket exists, else stderr.
        #[arg(long, value_enum, default_value = "auto")]
        log_format: LogFormat,
    },
    /// Check a config file and print every problem with its field and line.
    CheckConfig {
        /// The config file.
        #[arg(long, short, default_value = "/etc/drd/drd.toml")]
        config: PathBuf,
    },
    /// List the snapshots in a repository (offline: no daemon, no catalog).
    Snapshots {
        #[command(flatten)]
        repo: RepoFlags,
        /// Only this job's.
        #[arg(long)]
        job: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore from a repository with only the key file (offline: for a bare machine).
    ///
    /// Example: drd restore --repo /mnt/offsite/web-1 --key main.key --backup-id latest --target /
    ///
    /// From S3, with AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set:
    /// drd restore --repo s3://host-backups/web-1 --key main.key --backup-id latest --target /
    ///
    /// A file that needs a blob that is missing or damaged is not restored under its
    /// name: its readable parts are kept as NAME.damaged (unreadable parts as zeros),
    /// every other file is restored, the damaged ones are listed, and drd exits 1.
    Restore {
        #[command(flatten)]
        repo: RepoFlags,
        /// A snapshot id (or unique prefix), or `latest`.
        #[arg(long)]
        backup_id: String,
        /// Only this job's snapshots.
        #[arg(long)]
        job: Option<String>,
        /// With `latest`: the newest snapshot at or before this time (RFC 3339, or
        /// "2 hours ago").
        #[arg(long)]
        at: Option<String>,
        /// Restore only this path inside the snapshot (repeatable).
        #[arg(long = "path")]
        paths: Vec<PathBuf>,
        /// The folder to restore into.
        #[arg(long)]
        target: PathBuf,
        /// Allow a target that is not empty.
        #[arg(long)]
        overwrite: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// With `latest`: when a damaged snapshot file might be newer, restore the
        /// newest readable snapshot anyway (without this, that is refused).
        #[arg(long)]
        allow_older: bool,
    },
    /// Verify a repository (offline): structure, and with --read-data every blob.
    Verify {
        #[command(flatten)]
        repo: RepoFlags,
        /// Only this job's snapshots.
        #[arg(long)]
        job: Option<String>,
        /// Decrypt, decompress and re-hash the stored data.
        #[arg(long)]
        read_data: bool,
        /// With --read-data, read only about this percentage of the data.
        #[arg(long, requires = "read_data", value_parser = drd_proto::parse_percent)]
        subset: Option<f64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage key files.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Repair a repository (offline).
    Repair {
        #[command(subcommand)]
        command: RepairCommand,
    },
}

#[derive(Subcommand)]
enum RepairCommand {
    /// Rebuild the index from the pack headers: index every pack that no readable
    /// index file lists, then remove the damaged index files. Takes the repository's
    /// exclusive lock; safe to interrupt and run again.
    ///
    /// Example: drd repair index --repo /var/backups/drd --key main.key
    Index {
        #[command(flatten)]
        repo: RepoFlags,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct RepoFlags {
    /// The repository: a directory, or s3://BUCKET/PREFIX for S3-compatible storage
    /// (endpoint and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION; AWS_ALLOW_HTTP=true for a plain http:// endpoint).
    #[arg(long)]
    repo: PathBuf,
    /// A Fernet key file (repeatable: the first encrypts, any decrypts).
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Write a new random Fernet key (the format of Python's Fernet.generate_key()),
    /// mode 0600; refuses to overwrite a file.
    Generate {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
}

const EX_USAGE: u8 = 64;
const EX_NOINPUT: u8 = 66;
const EX_SOFTWARE: u8 = 70;
const EX_CANTCREAT: u8 = 73;

fn main() -> ExitCode {
    // Before any thread starts: see drd_memory::one_arena.
    drd_memory::one_arena();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { EX_USAGE } else { 0 });
        }
    };
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Run { config, log_format } => run(&config, log_format),
        Command::Snapshots { repo, job, json } => {
            offline_exit(offline::snapshots(&repo.into(), job.as_deref(), json))
        }
        Command::Restore {
            repo,
            backup_id,
            job,
            at,
            paths,
            target,
            overwrite,
            json,
            allow_older,
        } => {
            let args = offline::RestoreArgs {
                backup_id,
                job,
                at,
                paths,
                target,
                overwrite,
                allow_older,
            };
            offline_exit(offline::restore(&repo.into(), args, json))
        }
        Command::Verify {
            repo,
            job,
            read_data,
            subset,
            json,
        } => offline_exit(offline::verify(&repo.into(), job, read_data, subset, json)),
        Command::Key {
            command: KeyCommand::Generate { out },
        } => offline_exit(offline::key_generate(&out)),
        Command::Repair {
            command: RepairCommand::Index { repo, json },
        } => offline_exit(offline::repair_index(&repo.into(), json)),
    }
}

impl From<RepoFlags> for offline::RepoArgs {
    fn from(flags: RepoFlags) -> Self {
        offline::RepoArgs {
            repo: flags.repo,
            keys: flags.keys,
        }
    }
}

fn offline_exit(result: Result<(), offline::OfflineError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("drd: {err}");
            ExitCode::from(match &err {
                offline::OfflineError::Usage(_) => EX_USAGE,
                offline::OfflineError::Backup(e) if e.is_not_found() => EX_NOINPUT,
                _ => 1,
            })
        }
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(EX_USAGE)
        }
    }
}

fn run(path: &std::path::Path, log_format: LogFormat) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(err @ (ConfigError::Invalid { .. } | ConfigError::Read { .. })) => {
            eprintln!("drd: {err}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let log = match logging::init(log_format, &config.config.daemon.log_level) {
        Ok(log) => log,
        Err(err) => {
            eprintln!("drd: cannot set up logging: {err:#}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("drd: cannot start the async runtime: {err}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    let result = runtime.block_on(drd::daemon::run(config, Some(log)));
    // Work still running on the blocking pool was given its deadline inside `run`;
    // do not let it hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("drd: {err}");
            ExitCode::from(EX_CANTCREAT)
        }
    }
}
