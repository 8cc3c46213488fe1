//! Putting a job's data back where it came from, for `drctl recover --restore-data`:
//! each source of a snapshot restored at its own path rather than into a folder.
//!
//! SQLite databases are restored beside the database and renamed over it, so a
//! service sees the old file or the new one, never half of each. Folders and files
//! go through the engine's confined restore (`Repository::restore_in_place`), which
//! writes only the source's own path and what is below it. Command output and
//! container state have no place of their own to go back to, and are skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use drd_core::config::{LoadedConfig, SourceConfig};
use drd_proto::SnapshotSelector;
use drd_repo::{RestoreOptions, Snapshot};

use super::{select, sqlite, BackupError};
use crate::Backups;

/// Puts the sources of `job`'s snapshot `snapshot` (an id or unique prefix) back at
/// their original paths, and returns one line per source saying what was done.
///
/// The snapshot is read from the first of the job's tiers that has it. A SQLite
/// database is restored into a temporary file in its own folder, checked, synced, and
/// renamed over the database after its stale `-wal`, `-shm` and `-journal` files are
/// removed (the owner and mode of the database it replaces are kept). A folder or file
/// source is restored over its path: files in the way are replaced, but files that are
/// not in the snapshot are **not** deleted. Command and Docker sources are skipped
/// with a line saying why. The services using the data should be stopped.
pub async fn restore_in_place(
    backups: &Backups,
    job: &str,
    snapshot: &str,
) -> Result<Vec<String>, BackupError> {
    let config = backups.core.config();
    let opener = backups.tiers.clone();
    let (job, snapshot) = (job.to_owned(), snapshot.to_owned());
    tokio::task::spawn_blocking(move || {
        let (repo, found) = find(&config, &opener, &job, &snapshot)?;
        let threads = match config.config.daemon.restore_threads {
            0 => RestoreOptions::default_threads(),
            n => n,
        };
        let sources = config
            .job(&job)
            .map_err(BackupError::NotFound)?
            .sources
            .clone();
        restore_sources(&repo, &found, &job, &sources, threads)
    })
    .await
    .map_err(|e| BackupError::Repo(drd_repo::Error::Internal(e.to_string())))?
}

/// The id of `job`'s newest snapshot taken at or before `at_unix_ms`, on the first of
/// its tiers that can be read; `None` if it has none.
pub async fn snapshot_at(
    backups: &Backups,
    job: &str,
    at_unix_ms: i64,
) -> Result<Option<String>, BackupError> {
    let config = backups.core.config();
    let opener = backups.tiers.clone();
    let job = job.to_owned();
    tokio::task::spawn_blocking(move || {
        let tiers = config
            .job(&job)
            .map_err(BackupError::NotFound)?
            .tiers
            .clone();
        let mut first_err = None;
        for tier in &tiers {
            let repo = match opener.open_for_read(&config, tier) {
                Ok(repo) => repo,
                Err(err) => {
                    first_err.get_or_insert(BackupError::from(err));
                    continue;
                }
            };
            let selector = SnapshotSelector::At(at_unix_ms);
            return match select(&repo, &selector, Some(&job), false, &HashMap::new()) {
                Ok(selected) => Ok(Some(selected.snapshot.id)),
                Err(BackupError::NotFound(_)) => Ok(None),
                Err(err) => Err(err),
            };
        }
        match first_err {
            Some(err) => Err(err),
            None => Ok(None),
        }
    })
    .await
    .map_err(|e| BackupError::Repo(drd_repo::Error::Internal(e.to_string())))?
}

/// The repository of the first of `job`'s tiers that holds `snapshot`, and the
/// snapshot.
fn find(
    config: &LoadedConfig,
    opener: &crate::tiers::TierOpener,
    job: &str,
    snapshot: &str,
) -> Result<(drd_repo::Repository, Snapshot), BackupError> {
    let tiers = config
        .job(job)
        .map_err(BackupError::NotFound)?
        .tiers
        .clone();
    let mut last = None;
    for tier in &tiers {
        let repo = match opener.open_for_read(config, tier) {
            Ok(repo) => repo,
            Err(err) => {
                tracing::warn!(job, tier, cause = %err, "restore in place: tier unreadable");
                last = Some(BackupError::from(err));
                continue;
            }
        };
        let selector = SnapshotSelector::Id(snapshot.to_owned());
        match select(&repo, &selector, Some(job), false, &HashMap::new()) {
            Ok(selected) if selected.snapshot.job != job => {
                return Err(BackupError::NotFound(format!(
                    "snapshot {} is job {}'s, not job {job}'s; pick one of job {job}'s \
                     snapshots (drctl backups --job {job})",
                    selected.snapshot.id, selected.snapshot.job
                )))
            }
            Ok(selected) => return Ok((repo, selected.snapshot)),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| {
        BackupError::NotFound(format!(
            "job {job} writes to no tier, so there is nothing to restore"
        ))
    }))
}

/// Restores each configured source that the snapshot holds, in config order.
fn restore_sources(
    repo: &drd_repo::Repository,
    snapshot: &Snapshot,
    job: &str,
    sources: &[SourceConfig],
    threads: usize,
) -> Result<Vec<String>, BackupError> {
    let short = snapshot.short_id().to_owned();
    let holds = |stored: &str| snapshot.sources.iter().any(|s| s == stored);
    let mut lines = Vec::new();
    let mut used = Vec::new();
    for source in sources {
        match source {
            SourceConfig::Sqlite { path } => {
                let stored = format!("stream:{}", super::sources::stored_name(path));
                if !holds(&stored) {
                    lines.push(absent("db", path, &short));
                    continue;
                }
                used.push(stored);
                restore_db(repo, snapshot, job, path, threads)?;
                lines.push(format!("db: {} from snapshot {short}", path.display()));
            }
            SourceConfig::Path { path, .. } => {
                let stored = format!("path:{}", path.display());
                if !holds(&stored) {
                    lines.push(absent("path", path, &short));
                    continue;
                }
                used.push(stored);
                let summary = repo
                    .restore_in_place(snapshot, path, threads, &mut |_| {})
                    .map_err(|e| failed(job, &short, "path", path, &e.to_string()))?;
                if let Some(d) = summary.damaged.first() {
                    return Err(failed(
                        job,
                        &short,
                        "path",
                        path,
                        &format!(
                            "{} file(s) could not be restored whole, first {} ({}); the rest \
                             was put back. Run drctl verify, then restore from another \
                             snapshot",
                            summary.damaged.len(),
                            d.path,
                            d.reason
                        ),
                    ));
                }
                lines.push(format!(
                    "path: {} from snapshot {short} ({} files, {} bytes; files not in the \
                     snapshot were left)",
                    path.display(),
                    summary.files,
                    summary.bytes
                ));
            }
            SourceConfig::Command { name, .. } => lines.push(format!(
                "command {name}: skipped, its output (/commands/{name} in snapshot {short}) \
                 has no place to go back to; restore it with drctl restore and load it by hand"
            )),
            SourceConfig::Docker(_) => lines.push(format!(
                "docker: skipped, container settings and volumes are not restored in place; \
                 restore them from snapshot {short} with drctl restore into a folder"
            )),
        }
    }
    for stored in &snapshot.sources {
        let of_docker = stored.starts_with("stream:docker/");
        let command = stored.starts_with("stream:commands/");
        if !used.contains(stored) && !of_docker && !command {
            lines.push(format!(
                "{stored}: in snapshot {short} but no longer a source of job {job}; left out"
            ));
        }
    }
    Ok(lines)
}

fn absent(kind: &str, path: &Path, short: &str) -> String {
    format!(
        "{kind}: {} is not in snapshot {short} (added to the job after it was taken); left \
         as it is",
        path.display()
    )
}

fn failed(job: &str, short: &str, kind: &str, path: &Path, message: &str) -> BackupError {
    BackupError::Source {
        source_name: format!("{kind} {} (job {job}, snapshot {short})", path.display()),
        message: format!("restore in place failed: {message}"),
    }
}

/// Restores the database `db` beside itself and renames it over the old one.
fn restore_db(
    repo: &drd_repo::Repository,
    snapshot: &Snapshot,
    job: &str,
    db: &Path,
    threads: usize,
) -> Result<(), BackupError> {
    let short = snapshot.short_id();
    let fail = |message: String| failed(job, short, "sqlite", db, &message);
    let (Some(folder), Some(name)) = (db.parent(), db.file_name()) else {
        return Err(fail("the path has no folder".to_owned()));
    };
    let staging = tempfile::Builder::new()
        .prefix(".drd-restore-")
        .tempdir_in(folder)
        .map_err(|e| {
            fail(format!(
                "cannot make a temporary folder in {}: {e}; check that the folder exists \
                 and drd may write to it",
                folder.display()
            ))
        })?;
    let stored = PathBuf::from("/").join(super::sources::stored_name(db));
    let options = RestoreOptions {
        paths: vec![stored.clone()],
        target: staging.path().to_path_buf(),
        overwrite: false,
        threads,
        beneath: None,
    };
    let summary = repo
        .restore(snapshot, &options, &mut |_| {})
        .map_err(|e| fail(e.to_string()))?;
    if let Some(d) = summary.damaged.first() {
        return Err(fail(format!(
            "the stored copy is damaged ({}); the database was left as it is. Run drctl \
             verify, then restore from another snapshot",
            d.reason
        )));
    }
    let restored = staging
        .path()
        .join(stored.strip_prefix("/").unwrap_or(&stored));
    sqlite::integrity_check(&restored).map_err(|e| {
        fail(format!(
            "the restored copy is not sound ({e}); the database was left as it is"
        ))
    })?;
    if let Ok(old) = std::fs::metadata(db) {
        use std::os::unix::fs::MetadataExt;
        std::fs::set_permissions(&restored, old.permissions())
            .map_err(|e| fail(format!("cannot set the mode of the restored copy: {e}")))?;
        std::os::unix::fs::chown(&restored, Some(old.uid()), Some(old.gid())).map_err(|e| {
            fail(format!(
                "cannot give the restored copy the database's owner: {e}"
            ))
        })?;
    }
    std::fs::File::open(&restored)
        .and_then(|f| f.sync_all())
        .map_err(|e| fail(format!("cannot sync the restored copy: {e}")))?;
    // A WAL or hot journal left from the old database would be replayed into the new
    // one and corrupt it: remove them before the rename, never after.
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = name.to_os_string();
        side.push(suffix);
        let side = folder.join(side);
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(fail(format!(
                    "cannot remove the stale {}: {e}; remove it by hand, then try again",
                    side.display()
                )))
            }
        }
    }
    std::fs::rename(&restored, db)
        .map_err(|e| fail(format!("cannot rename the restored copy over it: {e}")))?;
    std::fs::File::open(folder)
        .and_then(|f| f.sync_all())
        .map_err(|e| fail(format!("cannot sync the folder {}: {e}", folder.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use drd_core::audit::Actor;
    use drd_core::catalog::Catalog;
    use drd_core::config::Config;
    use drd_core::workers::Supervisor;
    use drd_core::Core;
    use rusqlite::Connection;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::jobs::{run_job, Trigger};

    fn backups(dir: &Path) -> Backups {
        let key = dir.join("main.key");
        drd_repo::generate_key_file(&key).unwrap();
        let text = format!(
            "[daemon]\nstate_dir = \"{d}/state\"\nsocket = \"{d}/drd.sock\"\n\
             [keys]\nfiles = [\"{k}\"]\n[tiers.local]\nkind = \"dir\"\npath = \"{d}/repo\"\n\
             [jobs.app]\ntiers = [\"local\"]\nschedule = \"daily\"\nsources = [\
             {{ kind = \"sqlite\", path = \"{d}/app/app.db\" }}, \
             {{ kind = \"path\", path = \"{d}/app/files\" }}, \
             {{ kind = \"command\", name = \"echo\", run = [\"echo\", \"hi\"] }}]\n",
            d = dir.display(),
            k = key.display()
        );
        let config = Config::load_str(&dir.join("drd.toml"), &text).unwrap();
        let catalog = Catalog::open(&dir.join("catalog.db")).unwrap();
        let token = CancellationToken::new();
        let workers = Supervisor::new(token.clone(), TaskTracker::new());
        Backups::new(Arc::new(Core::new(config, catalog, workers, token)))
    }

    fn rows(db: &Path) -> Vec<String> {
        let conn = Connection::open(db).unwrap();
        let mut st = conn.prepare("SELECT x FROM t ORDER BY x").unwrap();
        let rows = st.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    }

    /// A damaged database and a changed file are put back from the snapshot, in place.
    #[tokio::test]
    async fn a_damaged_database_and_a_changed_file_are_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let backups = backups(dir.path());
        let db = dir.path().join("app/app.db");
        let files = dir.path().join("app/files");
        std::fs::create_dir_all(&files).unwrap();
        std::fs::write(files.join("settings"), b"original").unwrap();
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t (x TEXT); CREATE INDEX tx ON t (x);",
        )
        .unwrap();
        for i in 0..2000 {
            conn.execute("INSERT INTO t VALUES (?1)", [format!("row {i:05}")])
                .unwrap();
        }
        drop(conn);
        let original = rows(&db);

        let before = drd_core::clock::now_ms();
        let progress: crate::jobs::RunProgress = Arc::new(|_| {});
        let report = run_job(&backups, "app", Trigger::Manual, &Actor::Daemon, progress)
            .await
            .unwrap();
        let id = report.snapshot.id.clone();
        assert_eq!(
            snapshot_at(&backups, "app", drd_core::clock::now_ms())
                .await
                .unwrap(),
            Some(id.clone())
        );
        assert_eq!(
            snapshot_at(&backups, "app", before - 60_000).await.unwrap(),
            None
        );

        // After the backup: more rows, then damage; a changed file, an extra one.
        let conn = Connection::open(&db).unwrap();
        conn.execute("INSERT INTO t VALUES ('later')", []).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        drop(conn);
        sqlite::tests::damage(&db);
        std::fs::write(files.join("settings"), b"changed").unwrap();
        std::fs::write(files.join("extra"), b"kept").unwrap();
        let err = sqlite::integrity_check(&db).unwrap_err();
        assert!(err.contains("app.db"), "{err}");

        let lines = restore_in_place(&backups, "app", &id[..8]).await.unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(
            lines[0],
            format!("db: {} from snapshot {}", db.display(), &id[..8])
        );
        assert!(lines[1].starts_with("path: "), "{lines:?}");
        assert!(lines[2].starts_with("command echo: skipped"), "{lines:?}");
        sqlite::integrity_check(&db).unwrap();
        assert_eq!(rows(&db), original);
        assert_eq!(std::fs::read(files.join("settings")).unwrap(), b"original");
        assert_eq!(std::fs::read(files.join("extra")).unwrap(), b"kept");
        // Nothing is left beside the database.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("app"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut left = left;
        left.sort();
        assert_eq!(left, ["app.db", "files"]);

        let err = restore_in_place(&backups, "app", "ffffffff")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("ffffffff"), "{err}");
    }
}
