//! Checkpoints: every shutdown step is written to the catalog before it runs and
//! again when it ends, so a drd that dies mid-shutdown can tell, after a restart,
//! where it stopped, carry on (`--resume`) or roll back (`abort`).
//!
//! A run whose state is still `running` while no coordinator runs in this process is
//! an interrupted run: only one drd uses a catalog, and a live run always ends by
//! writing its outcome.

use drd_proto::{RunKind, ShutdownPhase, ShutdownTrigger};
use rusqlite::{params, Connection, OptionalExtension};

use drd_core::catalog::stored;
use drd_core::catalog::{Catalog, CatalogError};
use drd_core::util::unix_ms_now;

/// A run as recorded.
#[derive(Debug, Clone)]
pub struct RunRow {
    /// Its id.
    pub id: i64,
    /// When it started (Unix milliseconds).
    pub started_ms: i64,
    /// What started it.
    pub trigger: ShutdownTrigger,
    /// Who started it.
    pub actor: String,
    /// The reason given.
    pub reason: String,
    /// Whether it was forced.
    pub force: bool,
    /// Its `--only` services.
    pub only: Vec<String>,
    /// `running` or its outcome.
    pub state: String,
    /// A shutdown or a recovery.
    pub kind: RunKind,
    /// For a recovery: the shutdown it brings back.
    pub recovers: Option<i64>,
}

/// How a step ended, as `shutdown_steps.state` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    /// It did what it was for.
    Done,
    /// It failed; the detail says why.
    Failed,
}

impl StepEnd {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            StepEnd::Done => "done",
            StepEnd::Failed => "failed",
        }
    }
}

impl StepEnd {
    /// The state stored for a step: `None` is `started`, a step that never ended.
    fn parse(text: &str) -> Option<Option<StepEnd>> {
        match text {
            "started" => Some(None),
            "done" => Some(Some(StepEnd::Done)),
            "failed" => Some(Some(StepEnd::Failed)),
            _ => None,
        }
    }
}

/// A step as recorded.
#[derive(Debug, Clone)]
pub struct StepRow {
    /// Its phase.
    pub phase: ShutdownPhase,
    /// The service, `job NAME` or `hook SERVICE #N`; empty for the phase itself.
    pub subject: String,
    /// How it ended; `None` while it runs, or when drd died during it.
    pub ended: Option<StepEnd>,
    /// Details.
    pub detail: String,
    /// JSON the step needs later (an assessment).
    pub record: Option<String>,
}

/// Records a new run and returns its id.
pub async fn begin_run(
    catalog: &Catalog,
    trigger: ShutdownTrigger,
    actor: &str,
    reason: &str,
    force: bool,
    only: &[String],
) -> Result<i64, CatalogError> {
    let (trigger, actor, reason) = (trigger.as_str(), actor.to_owned(), reason.to_owned());
    let only = only.join("\n");
    catalog
        .call("record shutdown run", move |conn| {
            conn.execute(
                "INSERT INTO shutdown_runs (started_ms, trigger, actor, reason, force, only_services, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running')",
                params![unix_ms_now(), trigger, actor, reason, force, only],
            )?;
            Ok(conn.last_insert_rowid())
        })
        .await
}

/// Records a new recovery of the shutdown `recovers` (if any) and returns its id. A
/// recovery has no reason of its own: its `reason` keeps its options (JSON), for a
/// resume.
pub async fn begin_recovery(
    catalog: &Catalog,
    trigger: ShutdownTrigger,
    actor: &str,
    only: &[String],
    recovers: Option<i64>,
    options: &str,
) -> Result<i64, CatalogError> {
    let (trigger, actor, options) = (trigger.as_str(), actor.to_owned(), options.to_owned());
    let only = only.join("\n");
    catalog
        .call("record recovery run", move |conn| {
            conn.execute(
                "INSERT INTO shutdown_runs (started_ms, trigger, actor, reason, force, only_services,
                                            state, kind, recovers)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, 'running', 'recovery', ?6)",
                params![unix_ms_now(), trigger, actor, options, only, recovers],
            )?;
            Ok(conn.last_insert_rowid())
        })
        .await
}

/// Records how a recovery ended and its measured RTO.
pub async fn end_recovery(
    catalog: &Catalog,
    run_id: i64,
    state: &str,
    rto_ms: Option<u64>,
) -> Result<(), CatalogError> {
    let state = state.to_owned();
    let rto_ms = rto_ms.and_then(|ms| i64::try_from(ms).ok());
    catalog
        .call("record recovery outcome", move |conn| {
            conn.execute(
                "UPDATE shutdown_runs SET state = ?1, ended_ms = ?2, rto_ms = ?3 WHERE id = ?4",
                params![state, unix_ms_now(), rto_ms, run_id],
            )
            .map(drop)
        })
        .await
}

/// The shutdown `id`, or the newest one that ran to its end (completed, incomplete
/// or halted: services it stopped may be down); `None` if there is none.
pub async fn ended_shutdown(
    catalog: &Catalog,
    id: Option<i64>,
) -> Result<Option<RunRow>, CatalogError> {
    catalog
        .call("read shutdown runs", move |conn| {
            let filter = match id {
                Some(_) => "kind = 'shutdown' AND id = ?1",
                None => {
                    "kind = 'shutdown' AND ?1 IS NULL
                     AND state IN ('completed', 'incomplete', 'halted')"
                }
            };
            read_run(conn, filter, params![id])
        })
        .await
}

/// Records how a run ended.
pub async fn end_run(catalog: &Catalog, run_id: i64, state: &str) -> Result<(), CatalogError> {
    let state = state.to_owned();
    catalog
        .call("record shutdown outcome", move |conn| {
            conn.execute(
                "UPDATE shutdown_runs SET state = ?1, ended_ms = ?2 WHERE id = ?3",
                params![state, unix_ms_now(), run_id],
            )
            .map(drop)
        })
        .await
}

/// Records steps as started, all in one transaction; returns their ids in order.
pub async fn begin_steps(
    catalog: &Catalog,
    run_id: i64,
    phase: &str,
    subjects: Vec<String>,
) -> Result<Vec<i64>, CatalogError> {
    let phase = phase.to_owned();
    catalog
        .call("record shutdown steps", move |conn| {
            let tx = conn.transaction()?;
            let mut ids = Vec::with_capacity(subjects.len());
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO shutdown_steps (run_id, phase, subject, state, started_ms)
                     VALUES (?1, ?2, ?3, 'started', ?4)",
                )?;
                for subject in &subjects {
                    insert.execute(params![run_id, phase, subject, unix_ms_now()])?;
                    ids.push(tx.last_insert_rowid());
                }
            }
            tx.commit()?;
            Ok(ids)
        })
        .await
}

/// Records how a step ended, with details and an optional JSON record.
pub async fn end_step(
    catalog: &Catalog,
    step_id: i64,
    state: StepEnd,
    detail: String,
    record: Option<String>,
) -> Result<(), CatalogError> {
    catalog
        .call("record shutdown step", move |conn| {
            conn.execute(
                "UPDATE shutdown_steps SET state = ?1, ended_ms = ?2, detail = ?3, record = ?4
                 WHERE id = ?5",
                params![state.as_str(), unix_ms_now(), detail, record, step_id],
            )
            .map(drop)
        })
        .await
}

/// The newest run still marked `running`, if any.
pub async fn unfinished_run(catalog: &Catalog) -> Result<Option<RunRow>, CatalogError> {
    catalog.call("read shutdown runs", read_unfinished).await
}

fn read_unfinished(conn: &mut Connection) -> rusqlite::Result<Option<RunRow>> {
    read_run(conn, "state = 'running'", [])
}

/// The newest run matching `filter` (an SQL condition on `shutdown_runs`).
fn read_run(
    conn: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Option<RunRow>> {
    conn.query_row(
        &format!(
            "SELECT id, started_ms, trigger, actor, reason, force, only_services, state, kind,
                    recovers
             FROM shutdown_runs WHERE {filter} ORDER BY id DESC LIMIT 1"
        ),
        params,
        |r| {
            let only: String = r.get(6)?;
            Ok(RunRow {
                id: r.get(0)?,
                started_ms: r.get(1)?,
                trigger: stored(r, 2, "shutdown_runs.trigger", |t| {
                    ShutdownTrigger::parse(t).ok()
                })?,
                actor: r.get(3)?,
                reason: r.get(4)?,
                force: r.get(5)?,
                only: only.lines().map(str::to_owned).collect(),
                state: r.get(7)?,
                kind: stored(r, 8, "shutdown_runs.kind", RunKind::parse)?,
                recovers: r.get(9)?,
            })
        },
    )
    .optional()
}

/// Every step of `run_id`, in the order they were recorded.
pub async fn steps(catalog: &Catalog, run_id: i64) -> Result<Vec<StepRow>, CatalogError> {
    catalog
        .call("read shutdown steps", move |conn| read_steps(conn, run_id))
        .await
}

fn read_steps(conn: &Connection, run_id: i64) -> rusqlite::Result<Vec<StepRow>> {
    let mut stmt = conn.prepare(
        "SELECT phase, subject, state, detail, record FROM shutdown_steps
         WHERE run_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([run_id], |r| {
        Ok(StepRow {
            phase: stored(r, 0, "shutdown_steps.phase", ShutdownPhase::parse)?,
            subject: r.get(1)?,
            ended: stored(r, 2, "shutdown_steps.state", StepEnd::parse)?,
            detail: r.get(3)?,
            record: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// The last step of `run_id` as a line for people: `stop api: started`.
pub async fn last_step(catalog: &Catalog, run_id: i64) -> Result<String, CatalogError> {
    catalog
        .call("read shutdown steps", move |conn| {
            conn.query_row(
                "SELECT phase, subject, state FROM shutdown_steps WHERE run_id = ?1
                 ORDER BY COALESCE(ended_ms, started_ms) DESC, id DESC LIMIT 1",
                [run_id],
                |r| {
                    let (phase, subject, state): (String, String, String) =
                        (r.get(0)?, r.get(1)?, r.get(2)?);
                    Ok(if subject.is_empty() {
                        format!("{phase}: {state}")
                    } else {
                        format!("{phase} {subject}: {state}")
                    })
                },
            )
            .optional()
            .map(|line| line.unwrap_or_else(|| "before its first step".to_owned()))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_name_this_drd_does_not_know_is_an_error_naming_it() {
        let mut conn = drd_core::catalog::migrations::in_memory();
        conn.execute_batch(
            "INSERT INTO shutdown_runs (started_ms, trigger, actor, reason, force, only_services, state)
             VALUES (1, 'meteor', 'root', '', 0, '', 'running');
             INSERT INTO shutdown_steps (run_id, phase, subject, state, started_ms)
             VALUES (1, 'stop', 'web', 'halfway', 2);",
        )
        .unwrap();
        let err = read_unfinished(&mut conn).unwrap_err().to_string();
        assert!(
            err.contains("shutdown_runs.trigger holds \"meteor\""),
            "{err}"
        );
        let err = read_steps(&conn, 1).unwrap_err().to_string();
        assert!(
            err.contains("shutdown_steps.state holds \"halfway\""),
            "{err}"
        );
        conn.execute("UPDATE shutdown_runs SET trigger = 'manual'", [])
            .unwrap();
        conn.execute("UPDATE shutdown_steps SET state = 'started'", [])
            .unwrap();
        let run = read_unfinished(&mut conn).unwrap().unwrap();
        assert_eq!(run.trigger, ShutdownTrigger::Manual);
        let steps = read_steps(&conn, 1).unwrap();
        assert_eq!(
            (steps[0].phase, steps[0].ended),
            (ShutdownPhase::Stop, None)
        );
    }
}
