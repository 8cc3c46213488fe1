//! Checkpoints: every shutdown step is written to the catalog before it runs and
//! again when it ends, so a drd that dies mid-shutdown can tell, after a restart,
//! where it stopped, carry on (`--resume`) or roll back (`abort`).
//!
//! A run whose state is still `running` while no coordinator runs in this process is
//! an interrupted run: only one drd uses a catalog, and a live run always ends by
//! writing its outcome.

use rusqlite::{params, Connection, OptionalExtension};

use crate::catalog::{Catalog, CatalogError};
use crate::util::unix_ms_now;

/// A run as recorded.
#[derive(Debug, Clone)]
pub struct RunRow {
    /// Its id.
    pub id: i64,
    /// When it started (Unix milliseconds).
    pub started_ms: i64,
    /// The trigger's name.
    pub trigger: String,
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
}

/// A step as recorded.
#[derive(Debug, Clone)]
pub struct StepRow {
    /// The phase's name.
    pub phase: String,
    /// The service, `job NAME` or `hook SERVICE #N`; empty for the phase itself.
    pub subject: String,
    /// `started`, `done` or `failed`.
    pub state: String,
    /// Details.
    pub detail: String,
    /// JSON the step needs later (an assessment).
    pub record: Option<String>,
}

/// Records a new run and returns its id.
pub async fn begin_run(
    catalog: &Catalog,
    trigger: &str,
    actor: &str,
    reason: &str,
    force: bool,
    only: &[String],
) -> Result<i64, CatalogError> {
    let (trigger, actor, reason) = (trigger.to_owned(), actor.to_owned(), reason.to_owned());
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

/// Records how a step ended (`done` or `failed`), with details and an optional
/// JSON record.
pub async fn end_step(
    catalog: &Catalog,
    step_id: i64,
    state: &'static str,
    detail: String,
    record: Option<String>,
) -> Result<(), CatalogError> {
    catalog
        .call("record shutdown step", move |conn| {
            conn.execute(
                "UPDATE shutdown_steps SET state = ?1, ended_ms = ?2, detail = ?3, record = ?4
                 WHERE id = ?5",
                params![state, unix_ms_now(), detail, record, step_id],
            )
            .map(drop)
        })
        .await
}

/// The newest run still marked `running`, if any.
pub async fn unfinished_run(catalog: &Catalog) -> Result<Option<RunRow>, CatalogError> {
    catalog
        .call("read shutdown runs", |conn| {
            conn.query_row(
                "SELECT id, started_ms, trigger, actor, reason, force, only_services, state
                 FROM shutdown_runs WHERE state = 'running' ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    let only: String = r.get(6)?;
                    Ok(RunRow {
                        id: r.get(0)?,
                        started_ms: r.get(1)?,
                        trigger: r.get(2)?,
                        actor: r.get(3)?,
                        reason: r.get(4)?,
                        force: r.get(5)?,
                        only: only.lines().map(str::to_owned).collect(),
                        state: r.get(7)?,
                    })
                },
            )
            .optional()
        })
        .await
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
            phase: r.get(0)?,
            subject: r.get(1)?,
            state: r.get(2)?,
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
