//! One SQLite database checked without holding its writers back.
//!
//! A long read transaction on the database itself would block every writer in
//! rollback-journal mode for as long as `integrity_check` runs (minutes on a big
//! file). So the check runs on a copy: SQLite's online backup API copies a few
//! hundred pages per step, each step a short read lock, with a pause between steps for
//! writers to get in. The copy is page for page, damage included, and the pragma then
//! reads the copy at whatever pace it likes. A writer that changes the database
//! restarts the copy; one that never stops writing for `COPY_DEADLINE` leaves the
//! check undecided this time, which is not a finding. A database in WAL mode is copied
//! in one step instead: there a reader never blocks a writer, and one step cannot be
//! restarted.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio_util::sync::CancellationToken;

/// Pages copied per step: 256 pages of 4 KiB is a millisecond's read.
const PAGES_PER_STEP: i32 = 256;
/// The pause between steps, for writers.
const PAUSE: Duration = Duration::from_millis(5);
/// How long a copy may take, restarts and locks included.
const COPY_DEADLINE: Duration = Duration::from_secs(600);
/// How many of SQLite's error lines a finding keeps.
const LINES_KEPT: usize = 20;

/// Which pragma.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pragma {
    /// `PRAGMA quick_check`: every page and b-tree, not index content.
    Quick,
    /// `PRAGMA integrity_check`: also that every index matches its table.
    Integrity,
}

impl Pragma {
    /// The pragma's name.
    pub fn name(self) -> &'static str {
        match self {
            Pragma::Quick => "quick_check",
            Pragma::Integrity => "integrity_check",
        }
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The database is damaged or cannot be opened.
    pub damaged: bool,
    /// What SQLite (or the file system) said.
    pub said: String,
}

/// Runs `pragma` on a stepped copy of `db` made in `scratch`. `Err` means the check
/// could not be decided this time (the database stayed busy, drd is stopping, the
/// scratch folder is unusable); a database that cannot be opened or read is a
/// damaged [`Verdict`] that says why.
pub fn check(
    db: &Path,
    pragma: Pragma,
    scratch: &Path,
    cancel: &CancellationToken,
) -> Result<Verdict, String> {
    let damaged = |said: String| {
        Ok(Verdict {
            damaged: true,
            said,
        })
    };
    match std::fs::metadata(db) {
        Err(err) => return damaged(format!("cannot open {}: {err}", db.display())),
        Ok(meta) if !meta.is_file() => {
            return damaged(format!("cannot open {}: not a file", db.display()))
        }
        Ok(_) => {}
    }
    std::fs::create_dir_all(scratch)
        .map_err(|e| format!("cannot create scratch folder {}: {e}", scratch.display()))?;
    let copy = tempfile::Builder::new()
        .prefix("corruption-")
        .suffix(".db")
        .tempfile_in(scratch)
        .map_err(|e| format!("cannot create a scratch file in {}: {e}", scratch.display()))?;

    let source = match Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(source) => source,
        Err(err) => return damaged(format!("cannot open {}: {err}", db.display())),
    };
    // A step waits this long for a writer's lock, then yields and tries again.
    let _ = source.busy_timeout(Duration::from_millis(100));
    let wal = source
        .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
        .is_ok_and(|mode| mode.eq_ignore_ascii_case("wal"));
    let pages = if wal { -1 } else { PAGES_PER_STEP };
    let mut dest = Connection::open(copy.path()).map_err(|e| e.to_string())?;
    match copy_in_steps(&source, &mut dest, pages, cancel) {
        Ok(()) => {}
        Err(Failure::Undecided(why)) => return Err(why),
        Err(Failure::Damaged(why)) => {
            return damaged(format!("cannot read {}: {why}", db.display()))
        }
    }
    drop(source);
    if cancel.is_cancelled() {
        return Err("drd is stopping".to_owned());
    }
    // SQLite lists what it finds row by row, and may give up with an error after a
    // few: both are its words.
    let mut rows = Vec::new();
    match dest.prepare(&format!("PRAGMA {}({LINES_KEPT})", pragma.name())) {
        Ok(mut stmt) => match stmt.query_map([], |r| r.get::<_, String>(0)) {
            Ok(found) => {
                for row in found {
                    match row {
                        Ok(line) => rows.push(line),
                        Err(err) => {
                            rows.push(err.to_string());
                            break;
                        }
                    }
                }
            }
            Err(err) => rows.push(err.to_string()),
        },
        Err(err) => rows.push(err.to_string()),
    }
    let rows: Vec<String> = rows
        .iter()
        .flat_map(|row| row.lines())
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(Verdict {
            damaged: false,
            said: format!("{}: ok", pragma.name()),
        })
    } else {
        damaged(format!("{}: {}", pragma.name(), rows.join("; ")))
    }
}

enum Failure {
    Undecided(String),
    Damaged(String),
}

/// Copies `source` into `dest`, `pages` at a time (-1: all at once).
fn copy_in_steps(
    source: &Connection,
    dest: &mut Connection,
    pages: i32,
    cancel: &CancellationToken,
) -> Result<(), Failure> {
    let backup = Backup::new(source, dest).map_err(|e| classify(&e))?;
    let deadline = Instant::now() + COPY_DEADLINE;
    loop {
        if cancel.is_cancelled() {
            return Err(Failure::Undecided("drd is stopping".to_owned()));
        }
        if Instant::now() > deadline {
            return Err(Failure::Undecided(format!(
                "the database kept changing or stayed locked for {}; it is checked again \
                 next time",
                humantime::format_duration(COPY_DEADLINE)
            )));
        }
        match backup.step(pages) {
            Ok(StepResult::Done) => return Ok(()),
            Ok(StepResult::More | StepResult::Busy | StepResult::Locked) => {
                std::thread::sleep(PAUSE);
            }
            Ok(other) => {
                return Err(Failure::Undecided(format!(
                    "the copy stopped unexpectedly ({other:?})"
                )))
            }
            Err(err) => return Err(classify(&err)),
        }
    }
}

/// Busy and locked are "try later"; anything else (not a database, malformed, an I/O
/// error, no permission) says what is wrong with the file.
fn classify(err: &rusqlite::Error) -> Failure {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            Failure::Undecided(format!("the database is locked: {err}"))
        }
        _ => Failure::Damaged(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    fn make_db(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO t SELECT i, printf('row %d with some text to fill pages', i) FROM n;",
        )
        .unwrap();
    }

    #[test]
    fn a_sound_database_is_ok_and_a_damaged_page_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        make_db(&db);
        let cancel = CancellationToken::new();
        let scratch = dir.path().join("scratch");
        let ok = check(&db, Pragma::Quick, &scratch, &cancel).unwrap();
        assert!(!ok.damaged, "{ok:?}");
        assert_eq!(ok.said, "quick_check: ok");

        // Garbage over the cell pointers of a page in the middle, not the file's header.
        let file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        let pages = file.metadata().unwrap().len() / 4096;
        file.write_all_at(&[0xa5; 32], 4096 * (pages / 2) + 8)
            .unwrap();
        for pragma in [Pragma::Quick, Pragma::Integrity] {
            let bad = check(&db, pragma, &scratch, &cancel).unwrap();
            assert!(bad.damaged, "{bad:?}");
            assert!(bad.said.starts_with(pragma.name()), "{bad:?}");
            assert!(bad.said.contains(" page "), "{bad:?}");
        }
        // A root page whose header is garbage.
        file.write_all_at(&[0xff; 64], 4096).unwrap();
        let bad = check(&db, Pragma::Quick, &scratch, &cancel).unwrap();
        assert!(bad.damaged, "{bad:?}");
        assert!(bad.said.contains("page 2"), "{bad:?}");
        // The copies are gone.
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    }

    #[test]
    fn a_database_that_cannot_be_opened_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let missing = check(
            &dir.path().join("nope.db"),
            Pragma::Quick,
            dir.path(),
            &cancel,
        )
        .unwrap();
        assert!(missing.damaged);
        assert!(missing.said.contains("No such file"), "{missing:?}");

        let text = dir.path().join("notes.db");
        std::fs::write(
            &text,
            "this is not a database, just a long enough text file ".repeat(20),
        )
        .unwrap();
        let not_db = check(&text, Pragma::Quick, dir.path(), &cancel).unwrap();
        assert!(not_db.damaged);
        assert!(not_db.said.contains("not a database"), "{not_db:?}");
    }

    #[test]
    fn a_busy_writer_goes_on_while_the_check_copies_and_the_check_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("busy.db");
        make_db(&db);
        // A bigger file, so the copy takes many steps.
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
             INSERT INTO t (body) SELECT hex(randomblob(200)) FROM n;",
        )
        .unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        let cancel = CancellationToken::new();
        let scratch = dir.path().join("scratch");
        let checker = std::thread::spawn(move || check(&db, Pragma::Integrity, &scratch, &cancel));
        let mut slowest = Duration::ZERO;
        // Writes for a while (each one restarts the copy), then lets it finish.
        let writing = Instant::now();
        while !checker.is_finished() && writing.elapsed() < Duration::from_millis(400) {
            let started = Instant::now();
            conn.execute("INSERT INTO t (body) VALUES ('w')", [])
                .unwrap();
            slowest = slowest.max(started.elapsed());
            std::thread::sleep(Duration::from_millis(2));
        }
        let verdict = checker.join().unwrap().unwrap();
        assert!(!verdict.damaged, "{verdict:?}");
        assert!(
            slowest < Duration::from_millis(500),
            "a write waited {slowest:?}"
        );
    }
}
