//! drd's command line: the clap definitions `main.rs` parses with, here in the library
//! so the xtask renders the man pages and shell completions from the very same
//! definitions (`cargo xtask gen`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;
use crate::offline;

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
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of `drd`.
#[derive(Subcommand)]
pub enum Command {
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
        /// The repository and its keys.
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
        /// The repository and its keys.
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
        /// The repository and its keys.
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
        /// What to do with keys.
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Repair a repository (offline).
    Repair {
        /// What to repair.
        #[command(subcommand)]
        command: RepairCommand,
    },
}

/// `drd repair ...`.
#[derive(Subcommand)]
pub enum RepairCommand {
    /// Rebuild the index from the pack headers: index every pack that no readable
    /// index file lists, then remove the damaged index files. Takes the repository's
    /// exclusive lock; safe to interrupt and run again.
    ///
    /// Example: drd repair index --repo /var/backups/drd --key main.key
    Index {
        /// The repository and its keys.
        #[command(flatten)]
        repo: RepoFlags,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where an offline command finds the repository, and the keys that open it.
#[derive(clap::Args)]
pub struct RepoFlags {
    /// The repository: a directory, or s3://BUCKET/PREFIX for S3-compatible storage
    /// (endpoint and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION; AWS_ALLOW_HTTP=true for a plain http:// endpoint).
    #[arg(long)]
    pub repo: PathBuf,
    /// A Fernet key file (repeatable: the first encrypts, any decrypts).
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
}

/// `drd key ...`.
#[derive(Subcommand)]
pub enum KeyCommand {
    /// Write a new random Fernet key (the format of Python's Fernet.generate_key()),
    /// mode 0600; refuses to overwrite a file.
    Generate {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
}

impl From<RepoFlags> for offline::RepoArgs {
    fn from(flags: RepoFlags) -> Self {
        offline::RepoArgs {
            repo: flags.repo,
            keys: flags.keys,
        }
    }
}
