//! The record of every job run in the catalog: what started it, when it started and
//! ended, how it ended, the snapshot it wrote and why it failed.
//!
//! `drctl jobs` reads last successes and failures from here, and the scheduler reads
//! each job's last start to decide whether a run was missed while drd was down. A row
//! is written as `running` when a run starts and completed when it ends; a row still
//! `running` from before the daemon started belongs to a drd that died mid-run and is
//! marked `interrupted`.

use std::collections::BTreeMap;

use drd_core::catalog::stored;
use drd_proto::RunTrigger;

use rusqlite::{params, Connection, OptionalExtension, Row};

/// How a run ended (or that it has not yet); the wire type, stored under its name.
pub use drd_proto::RunOutcome as Outcome;

/// One run as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// Row id.
    pub id: i64,
    /// The job.
    pub job: String,
    /// What started it (stored by [`super::Trigger::as_str`]).
    pub trigger: RunTrigger,
    /// When it started (Unix ms).
    pub started_ms: i64,
    /// When it ended (Unix ms), if it has.
    pub ended_ms: Option<i64>,
    /// How it ended.
    pub outcome: Outcome,
    /// The snapshot written.
    pub snapshot: Option<String>,
    /// Why it failed or was skipped.
    pub error: Option<String>,
}

/// How a run ended, for [`finish`].
pub struct Finish<'a> {
    /// When it ended (Unix ms).
    pub ended_ms: i64,
    /// How.
    pub outcome: Outcome,
    /// The snapshot written and its tier.
    pub snapshot: Option<(&'a str, &'a str)>,
    /// The backup's figures, as JSON.
    pub stats: Option<String>,
    /// Why it failed, or notes (a failed `after` hook) on success.
    pub error: Option<String>,
}

/// Records that `job` started; returns the row id.
pub fn start(
    conn: &Connection,
    job: &str,
    trigger: &str,
    started_ms: i64,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO runs (job, trigger, started_ms, outcome) VALUES (?1, ?2, ?3, 'running')",
        params![job, trigger, started_ms],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Records how run `id` ended.
pub fn finish(conn: &Connection, id: i64, end: &Finish<'_>) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE runs SET ended_ms = ?2, outcome = ?3, snapshot = ?4, tier = ?5, stats = ?6,
         error = ?7 WHERE id = ?1",
        params![
            id,
            end.ended_ms,
            end.outcome.as_str(),
            end.snapshot.map(|s| s.0),
            end.snapshot.map(|s| s.1),
            end.stats,
            end.error
        ],
    )?;
    Ok(())
}

/// Marks runs left `running` by an earlier drd (started before `daemon_started_ms`) as
/// interrupted; returns how many there were.
pub fn mark_interrupted(
    conn: &Connection,
    daemon_started_ms: i64,
    now_ms: i64,
) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE runs SET outcome = 'interrupted', ended_ms = ?2,
         error = 'drd stopped during the run; no snapshot was recorded'
         WHERE outcome = 'running' AND started_ms < ?1",
        params![daemon_started_ms, now_ms],
    )
}

fn record(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: row.get(0)?,
        job: row.get(1)?,
        trigger: stored(row, 2, "runs.trigger", RunTrigger::parse)?,
        started_ms: row.get(3)?,
        ended_ms: row.get(4)?,
        outcome: stored(row, 5, "runs.outcome", Outcome::parse)?,
        snapshot: row.get(6)?,
        error: row.get(7)?,
    })
}

const COLUMNS: &str = "id, job, trigger, started_ms, ended_ms, outcome, snapshot, error";

/// A job's recent history.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The newest run of any outcome.
    pub last: Option<RunRecord>,
    /// The newest run that wrote a snapshot.
    pub last_ok: Option<RunRecord>,
    /// The newest run that failed, was skipped or was cut short.
    pub last_failure: Option<RunRecord>,
}

/// The history of every job that has runs, by job.
pub fn histories(conn: &Connection) -> rusqlite::Result<BTreeMap<String, History>> {
    let mut out: BTreeMap<String, History> = BTreeMap::new();
    let queries = [
        ("last", "1 = 1"),
        ("ok", "outcome = 'ok'"),
        (
            "failure",
            "outcome IN ('failed', 'skipped', 'cancelled', 'interrupted')",
        ),
    ];
    for (which, filter) in queries {
        // The newest row per job (SQLite returns the bare columns of the max row).
        let sql = format!(
            "SELECT {COLUMNS}, MAX(started_ms * 1000000 + id) FROM runs WHERE {filter}
             GROUP BY job"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], record)?;
        for row in rows {
            let row = row?;
            let entry = out.entry(row.job.clone()).or_default();
            match which {
                "last" => entry.last = Some(row),
                "ok" => entry.last_ok = Some(row),
                _ => entry.last_failure = Some(row),
            }
        }
    }
    Ok(out)
}

/// The figures (the backup report, as JSON) of each job's newest run that wrote a
/// snapshot, by job: what the metrics show as the last backup's bytes and files.
pub fn last_ok_stats(conn: &Connection) -> rusqlite::Result<BTreeMap<String, String>> {
    let mut stmt = conn.prepare(
        "SELECT job, stats, MAX(started_ms * 1000000 + id) FROM runs
         WHERE outcome = 'ok' AND stats IS NOT NULL GROUP BY job",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// The newest runs of `job` (of every job if `None`), newest first.
pub fn recent(
    conn: &Connection,
    job: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Vec<RunRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM runs WHERE (?1 IS NULL OR job = ?1)
         ORDER BY started_ms DESC, id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![job, limit], record)?;
    rows.collect()
}

/// The run with row id `id`.
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<RunRecord>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM runs WHERE id = ?1"),
        [id],
        record,
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        drd_core::catalog::migrations::in_memory()
    }

    fn end(outcome: Outcome, at: i64, error: Option<&str>) -> Finish<'static> {
        Finish {
            ended_ms: at,
            outcome,
            snapshot: (outcome == Outcome::Ok).then_some(("abc", "local")),
            stats: None,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn histories_pick_the_newest_of_each_kind() {
        let conn = db();
        let a = start(&conn, "db", "schedule", 1_000).unwrap();
        finish(&conn, a, &end(Outcome::Ok, 1_500, None)).unwrap();
        let b = start(&conn, "db", "schedule", 2_000).unwrap();
        finish(
            &conn,
            b,
            &end(Outcome::Skipped, 2_100, Some("before hook failed")),
        )
        .unwrap();
        let c = start(&conn, "db", "manual", 3_000).unwrap();
        let other = start(&conn, "logs", "manual", 500).unwrap();
        finish(&conn, other, &end(Outcome::Failed, 600, Some("disk"))).unwrap();

        let h = histories(&conn).unwrap();
        let db = &h["db"];
        assert_eq!(db.last.as_ref().unwrap().id, c);
        assert_eq!(db.last.as_ref().unwrap().outcome, Outcome::Running);
        assert_eq!(db.last_ok.as_ref().unwrap().id, a);
        assert_eq!(
            db.last_ok.as_ref().unwrap().snapshot.as_deref(),
            Some("abc")
        );
        let failure = db.last_failure.as_ref().unwrap();
        assert_eq!((failure.id, failure.outcome), (b, Outcome::Skipped));
        assert_eq!(failure.error.as_deref(), Some("before hook failed"));
        assert!(h["logs"].last_ok.is_none());

        // A later drd finds the run still `running` and marks it.
        assert_eq!(
            mark_interrupted(&conn, 2_500, 9_000).unwrap(),
            0,
            "started after"
        );
        assert_eq!(mark_interrupted(&conn, 4_000, 9_000).unwrap(), 1);
        let c = get(&conn, c).unwrap().unwrap();
        assert_eq!((c.outcome, c.ended_ms), (Outcome::Interrupted, Some(9_000)));
        assert_eq!(recent(&conn, Some("db"), 10).unwrap().len(), 3);
    }

    #[test]
    fn a_stored_name_this_drd_does_not_know_is_an_error_naming_it() {
        let conn = db();
        let id = start(&conn, "db", "hourly-ish", 1_000).unwrap();
        let err = get(&conn, id).unwrap_err().to_string();
        assert!(err.contains("runs.trigger holds \"hourly-ish\""), "{err}");
        conn.execute("UPDATE runs SET trigger = 'manual', outcome = 'okay'", [])
            .unwrap();
        let err = get(&conn, id).unwrap_err().to_string();
        assert!(err.contains("runs.outcome holds \"okay\""), "{err}");
    }
}
