//! Commands that work without a daemon or a catalog, for a bare new machine that has
//! nothing but the repository and the key file: `drd snapshots`, `drd restore`,
//! `drd verify`, `drd repair index`, and `drd key generate`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use drd_backup::backup::{self, report, BackupError};
use drd_backup::tiers::snapshot_cache;
use drd_proto::text;
use drd_proto::SnapshotSelector;
use drd_repo::{KeySet, Repository, RestoreOptions, VerifyOptions};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// What an offline command failed at.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// Repository work failed.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The command line makes no sense.
    #[error("{0}")]
    Usage(String),
    /// Verify found damage (already printed).
    #[error("the repository is damaged; see the problems above")]
    Damaged,
    /// A repair could not index every pack (already printed).
    #[error(
        "some packs could not be indexed (their headers are damaged too); `drd verify` lists \
         the files they break"
    )]
    NotRepaired,
    /// A restore finished but some files could not be restored whole (already
    /// printed).
    #[error(
        "{0} file(s) could not be restored whole (see the list above); every other file \
         was restored. Try another copy with --repo, or restore them from an older snapshot"
    )]
    Incomplete(usize),
}

impl From<drd_repo::Error> for OfflineError {
    fn from(err: drd_repo::Error) -> Self {
        OfflineError::Backup(err.into())
    }
}

/// Where the repository is and which keys open it.
pub struct RepoArgs {
    /// The repository: a directory, or `s3://bucket/prefix` (endpoint, region and
    /// credentials from the `AWS_*` environment variables; see
    /// [`drd_repo::S3Options::from_url`]).
    pub repo: PathBuf,
    /// Key files; the first encrypts, any decrypts.
    pub keys: Vec<PathBuf>,
}

impl RepoArgs {
    fn open(&self) -> Result<Repository, OfflineError> {
        // The key files first: a wrong path is reported before any network round trip.
        let keys = KeySet::load(&self.keys)?;
        match self.repo.to_str() {
            Some(location) if drd_repo::is_s3(location) => {
                let storage = drd_repo::open_storage(location)?;
                Ok(Repository::open_on(
                    storage,
                    &keys,
                    drd_repo::RepoOptions::default(),
                )?)
            }
            _ => Ok(Repository::open(&self.repo, &keys)?),
        }
    }
}

/// `drd key generate --out FILE`.
pub fn key_generate(out: &Path) -> Result<(), OfflineError> {
    drd_repo::generate_key_file(out)?;
    eprintln!(
        "wrote a new key to {} (mode 0600). Keep a copy off this host: without it the \
         backups cannot be read.",
        out.display()
    );
    Ok(())
}

/// Says on stderr what of the index could not be read (the command goes on without it).
fn warn_about_index(repo: &Repository) {
    for warning in repo.index_warnings() {
        eprintln!("drd: warning: {warning}");
    }
}

/// `drd snapshots`: the readable snapshots (of `job`, if given) and every damaged
/// snapshot file (whose job is unknown), sorted by time.
pub fn snapshots(args: &RepoArgs, job: Option<&str>, json: bool) -> Result<(), OfflineError> {
    let repo = args.open()?;
    warn_about_index(&repo);
    let all = repo.snapshot_list()?;
    let mut list: Vec<_> = all
        .snapshots
        .iter()
        .filter(|s| job.is_none_or(|j| s.job == j))
        .map(|s| snapshot_cache::snapshot_info(s, "offline"))
        .chain(
            all.damaged
                .iter()
                .map(|d| snapshot_cache::damaged_info(d, "offline")),
        )
        .collect();
    list.sort_by(|a, b| a.unix_ms.cmp(&b.unix_ms).then(a.id.cmp(&b.id)));
    print(json, &list, || text::snapshots(&list));
    Ok(())
}

/// What `drd restore` was asked.
pub struct RestoreArgs {
    /// A snapshot id (or prefix) or `latest`.
    pub backup_id: String,
    /// Only this job's snapshots.
    pub job: Option<String>,
    /// With `latest`: at or before this time.
    pub at: Option<String>,
    /// Paths inside the snapshot.
    pub paths: Vec<PathBuf>,
    /// Where to.
    pub target: PathBuf,
    /// Allow a non-empty target.
    pub overwrite: bool,
    /// With `latest`: pass over damaged snapshot files to the newest readable one.
    pub allow_older: bool,
}

/// `drd restore`.
pub fn restore(args: &RepoArgs, restore: RestoreArgs, json: bool) -> Result<(), OfflineError> {
    let selector =
        SnapshotSelector::from_args(&restore.backup_id, restore.at.as_deref(), SystemTime::now())
            .map_err(OfflineError::Usage)?;
    let repo = args.open()?;
    warn_about_index(&repo);
    let selected = backup::select(
        &repo,
        &selector,
        restore.job.as_deref(),
        restore.allow_older,
        // No catalog here: nothing is known of a damaged file's job or time.
        &std::collections::HashMap::new(),
    )?;
    let snapshot = selected.snapshot;
    let options = RestoreOptions {
        paths: restore.paths,
        target: restore.target,
        overwrite: restore.overwrite,
        threads: RestoreOptions::default_threads(),
        beneath: None,
    };
    let bar = bar(
        json,
        "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
    );
    bar.set_prefix(format!("restore {}", snapshot.short_id()));
    let summary = repo.restore(&snapshot, &options, &mut |p| {
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_done);
        bar.set_message(format!("{}/{} files", p.files_done, p.files_total));
    });
    bar.finish_and_clear();
    let summary = summary?;
    let mut report = report::restore_report(&summary, &snapshot, "offline", &options.target);
    report.warnings.splice(0..0, selected.warnings);
    // Printed here, not sent in a frame: list every damaged file.
    report.damaged = summary.damaged.iter().map(report::damaged_file).collect();
    print(json, &report, || text::restore_report(&report));
    if !summary.damaged.is_empty() {
        return Err(OfflineError::Incomplete(summary.damaged.len()));
    }
    Ok(())
}

/// `drd verify`.
pub fn verify(
    args: &RepoArgs,
    job: Option<String>,
    read_data: bool,
    subset_percent: Option<f64>,
    json: bool,
) -> Result<(), OfflineError> {
    let repo = args.open()?;
    let options = VerifyOptions {
        read_data,
        subset_percent,
        job,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let bar = bar(json, "{prefix} [{bar:30}] {pos}/{len} packs {msg}");
    bar.set_prefix("verify");
    let result = repo.verify(&options, &mut |p| {
        bar.set_length(p.packs_total);
        bar.set_position(p.packs_done);
        bar.set_message(text::bytes(p.bytes_done));
    });
    bar.finish_and_clear();
    let reports = vec![report::verify_report(
        &result?,
        "offline",
        &args.repo.display().to_string(),
    )];
    print(json, &reports, || text::verify_reports(&reports));
    if reports.iter().any(|r| !r.problems.is_empty()) {
        return Err(OfflineError::Damaged);
    }
    Ok(())
}

/// `drd repair index`.
pub fn repair_index(args: &RepoArgs, json: bool) -> Result<(), OfflineError> {
    let repo = args.open()?;
    let summary = repo.repair_index()?;
    let reports = vec![report::repair_report(
        &summary,
        "offline",
        &args.repo.display().to_string(),
    )];
    print(json, &reports, || text::repair_reports(&reports));
    if !summary.unreadable_packs.is_empty() {
        return Err(OfflineError::NotRepaired);
    }
    Ok(())
}

fn bar(json: bool, template: &str) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn print<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        match serde_json::to_string_pretty(value) {
            Ok(out) => println!("{out}"),
            Err(err) => eprintln!("drd: cannot format JSON: {err}"),
        }
    } else {
        print!("{}", text());
    }
}
