//! SQLite sources: a consistent copy taken with SQLite's online backup API while the
//! database stays in use.
//!
//! The copy is made in one step, inside one read transaction: in WAL mode writers go
//! on undisturbed; in rollback-journal mode a writer waits (with its busy timeout) for
//! the length of the copy, which is a plain sequential read. Copying in small steps
//! instead would let writers in between, but SQLite restarts a stepped backup whenever
//! another connection writes, so a busy database might never finish. The copy is then
//! checked with `PRAGMA quick_check` before anything is stored.

use std::path::Path;
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use tempfile::NamedTempFile;

use super::BackupError;

/// Copies the database at `db` into a new file in `scratch`.
pub(super) fn online_copy(db: &Path, scratch: &Path) -> Result<NamedTempFile, BackupError> {
    let fail = |message: String| BackupError::Source {
        source_name: format!("sqlite {}", db.display()),
        message,
    };
    if let Err(err) = std::fs::metadata(db) {
        return Err(fail(format!("cannot read the database file: {err}")));
    }
    std::fs::create_dir_all(scratch).map_err(|e| {
        fail(format!(
            "cannot create scratch folder {}: {e}",
            scratch.display()
        ))
    })?;
    let copy = tempfile::Builder::new()
        .prefix("sqlite-")
        .suffix(".db")
        .tempfile_in(scratch)
        .map_err(|e| {
            fail(format!(
                "cannot create a scratch file in {}: {e}",
                scratch.display()
            ))
        })?;

    let source = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| fail(format!("cannot open: {e}")))?;
    source
        .busy_timeout(Duration::from_secs(30))
        .map_err(|e| fail(e.to_string()))?;
    let mut dest = Connection::open(copy.path()).map_err(|e| fail(e.to_string()))?;
    {
        let backup = Backup::new(&source, &mut dest)
            .map_err(|e| fail(format!("cannot start the online backup: {e}")))?;
        copy_all(&backup).map_err(fail)?;
    }
    // The copy is a standalone database: no WAL to carry along.
    dest.pragma_update(None, "journal_mode", "DELETE")
        .map_err(|e| fail(e.to_string()))?;
    let check: String = dest
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| fail(format!("cannot check the copy: {e}")))?;
    if check != "ok" {
        return Err(fail(format!(
            "the copy fails SQLite's quick_check ({check}); the source database may be corrupt"
        )));
    }
    drop(dest);
    Ok(copy)
}

/// Checks the SQLite database at `path` with `PRAGMA integrity_check`, opened
/// read-only. The error names the file and what SQLite found wrong with it.
pub fn integrity_check(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let problems = integrity_problems(path)?;
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "sqlite {shown} fails its integrity check: {}; restore it from a snapshot \
         (drctl recover --restore-data, or drctl restore)",
        problems.join("; ")
    ))
}

/// What `PRAGMA integrity_check` finds wrong with the SQLite database at `path`
/// (opened read-only), at most 20 lines; empty when it says "ok". The error says why
/// the check could not run.
pub fn integrity_problems(path: &Path) -> Result<Vec<String>, String> {
    let shown = path.display();
    if let Err(err) = std::fs::metadata(path) {
        return Err(format!(
            "sqlite {shown}: cannot read the database file: {err}"
        ));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("sqlite {shown}: cannot open it read-only: {e}"))?;
    let _ = conn.busy_timeout(Duration::from_secs(30));
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check(20)")
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(|e| format!("sqlite {shown} fails its integrity check: {e}"))?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(Vec::new());
    }
    Ok(problems)
}

/// How long to keep retrying while a writer holds a lock that stops the copy.
const LOCKED_FOR: Duration = Duration::from_secs(30);

/// Every page in one step (-1), retrying while the database is locked.
fn copy_all(backup: &Backup<'_, '_>) -> Result<(), String> {
    let deadline = std::time::Instant::now() + LOCKED_FOR;
    loop {
        match backup.step(-1) {
            Ok(StepResult::Done) => return Ok(()),
            Ok(StepResult::More) => {}
            Ok(StepResult::Busy | StepResult::Locked) => {
                if std::time::Instant::now() > deadline {
                    return Err(format!(
                        "the database stayed locked for {}; try again when it is less busy",
                        humantime::format_duration(LOCKED_FOR)
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(other) => return Err(format!("online backup stopped unexpectedly ({other:?})")),
            Err(err) => return Err(format!("online backup failed: {err}")),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn copies_a_database_that_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let writer = Connection::open(&db).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; CREATE TABLE t (x INTEGER);
                 INSERT INTO t VALUES (1), (2), (3);",
            )
            .unwrap();
        let copy = online_copy(&db, &dir.path().join("scratch")).unwrap();
        writer.execute("INSERT INTO t VALUES (4)", []).unwrap();
        let read = Connection::open(copy.path()).unwrap();
        let n: i64 = read
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3);
    }

    #[test]
    fn integrity_check_finds_a_damaged_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE t (x TEXT); CREATE INDEX tx ON t (x);")
            .unwrap();
        for i in 0..2000 {
            conn.execute("INSERT INTO t VALUES (?1)", [format!("row {i:05}")])
                .unwrap();
        }
        drop(conn);
        integrity_check(&db).unwrap();
        damage(&db);
        let err = integrity_check(&db).unwrap_err();
        assert!(err.contains(&db.display().to_string()), "{err}");
        let err = integrity_check(&dir.path().join("nope.db")).unwrap_err();
        assert!(err.contains("cannot read the database file"), "{err}");
    }

    /// Overwrites bytes in the middle of `db`, past its header.
    pub(crate) fn damage(db: &Path) {
        let mut bytes = std::fs::read(db).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 4096] {
            *b = 0x5a;
        }
        std::fs::write(db, bytes).unwrap();
    }

    #[test]
    fn a_missing_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = online_copy(&dir.path().join("nope.db"), dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("cannot read the database file"),
            "{err}"
        );
    }
}
