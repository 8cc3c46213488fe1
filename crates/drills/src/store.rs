//! Drill runs and results in the catalog (migration 11). A result is written as soon
//! as its drill ends, so a drd killed mid-run keeps what it had measured; the run is
//! closed as cancelled at the next start.

use drd_core::catalog::{Catalog, CatalogError};
use drd_proto::{Category, DrillOutcome, DrillResult, DrillTrigger, Scenario};
use rusqlite::{params, Connection, OptionalExtension, Row};

/// Opens a run and returns its id.
pub(crate) async fn start_run(
    catalog: &Catalog,
    trigger: DrillTrigger,
    started_ms: i64,
) -> Result<i64, CatalogError> {
    catalog
        .call("record drill run start", move |c| {
            c.execute(
                "INSERT INTO drill_runs (trigger, started_ms) VALUES (?1, ?2)",
                params![trigger.as_str(), started_ms],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
}

/// Keeps one drill's result.
pub(crate) async fn add_result(
    catalog: &Catalog,
    run_id: i64,
    result: DrillResult,
    finished_ms: i64,
) -> Result<(), CatalogError> {
    catalog
        .call("record drill result", move |c| {
            c.execute(
                "INSERT INTO drill_results (run_id, scenario, category, subject, outcome, \
                 rto_ms, rpo_ms, target_rto_ms, target_rpo_ms, evidence, duration_ms, \
                 finished_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    run_id,
                    result.scenario.as_str(),
                    result.category.as_str(),
                    result.subject,
                    result.outcome.as_str(),
                    result.rto_ms.map(clamp),
                    result.rpo_ms.map(clamp),
                    result.target_rto_ms.map(clamp),
                    result.target_rpo_ms.map(clamp),
                    result.evidence,
                    clamp(result.duration_ms),
                    finished_ms,
                ],
            )?;
            Ok(())
        })
        .await
}

/// Closes a run.
pub(crate) async fn finish_run(
    catalog: &Catalog,
    run_id: i64,
    outcome: DrillOutcome,
    finished_ms: i64,
) -> Result<(), CatalogError> {
    catalog
        .call("record drill run end", move |c| {
            c.execute(
                "UPDATE drill_runs SET finished_ms = ?2, outcome = ?3 WHERE id = ?1",
                params![run_id, finished_ms, outcome.as_str()],
            )?;
            Ok(())
        })
        .await
}

/// Closes runs a stopped or killed drd left open, as cancelled; returns how many.
pub(crate) async fn close_unfinished(
    catalog: &Catalog,
    now_ms: i64,
) -> Result<usize, CatalogError> {
    catalog
        .call("close unfinished drill runs", move |c| {
            c.execute(
                "UPDATE drill_runs SET finished_ms = ?1, outcome = 'cancelled' \
                 WHERE finished_ms IS NULL",
                params![now_ms],
            )
        })
        .await
}

/// When the newest run the loop started, and that was not cancelled, began (Unix ms).
pub(crate) async fn last_scheduled(catalog: &Catalog) -> Result<Option<i64>, CatalogError> {
    catalog
        .call("read the last drill run", |c| {
            c.query_row(
                "SELECT MAX(started_ms) FROM drill_runs WHERE trigger = 'schedule' \
                 AND outcome IS NOT 'cancelled'",
                [],
                |row| row.get(0),
            )
        })
        .await
}

/// Results finished at or after `since_ms`, oldest first.
pub(crate) async fn results_since(
    catalog: &Catalog,
    since_ms: i64,
) -> Result<Vec<(i64, DrillResult)>, CatalogError> {
    catalog
        .call("read drill results", move |c| {
            let mut stmt = c.prepare(
                "SELECT finished_ms, scenario, category, subject, outcome, rto_ms, rpo_ms, \
                 target_rto_ms, target_rpo_ms, evidence, duration_ms FROM drill_results \
                 WHERE finished_ms >= ?1 ORDER BY finished_ms, id",
            )?;
            let rows = stmt.query_map([since_ms], |row| Ok((row.get(0)?, result(row, 1)?)))?;
            rows.collect()
        })
        .await
}

/// Runs started at or after `since_ms`.
pub(crate) async fn runs_since(catalog: &Catalog, since_ms: i64) -> Result<u64, CatalogError> {
    catalog
        .call("count drill runs", move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM drill_runs WHERE started_ms >= ?1",
                [since_ms],
                |row| row.get(0),
            )
        })
        .await
}

/// Per category, when a drill of it last passed.
pub(crate) async fn last_passes(catalog: &Catalog) -> Result<Vec<(Category, i64)>, CatalogError> {
    catalog
        .call("read the last passing drills", |c| {
            let mut stmt = c.prepare(
                "SELECT category, MAX(finished_ms) FROM drill_results \
                 WHERE outcome = 'pass' GROUP BY category",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?;
            let mut found = Vec::new();
            for row in rows {
                let (name, at) = row?;
                if let Some(category) = Category::parse(&name) {
                    found.push((category, at));
                }
            }
            Ok(found)
        })
        .await
}

/// A category's newest drill that ran to an end (not cancelled).
#[derive(Debug, Clone)]
pub(crate) struct Latest {
    pub category: Category,
    pub outcome: DrillOutcome,
    pub rto_ms: Option<u64>,
    pub rpo_ms: Option<u64>,
    pub finished_ms: i64,
}

/// Per category, its newest drill that was not cancelled.
pub(crate) async fn latest_per_category(catalog: &Catalog) -> Result<Vec<Latest>, CatalogError> {
    catalog
        .call("read the newest drills", |c| {
            let mut stmt = c.prepare(
                "SELECT category, outcome, rto_ms, rpo_ms, finished_ms FROM drill_results r \
                 WHERE outcome != 'cancelled' AND id = (SELECT MAX(id) FROM drill_results \
                 WHERE category = r.category AND outcome != 'cancelled')",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                    row.get::<_, Option<i64>>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })?;
            let mut found = Vec::new();
            for row in rows {
                let (category, outcome, rto, rpo, finished_ms) = row?;
                if let (Some(category), Some(outcome)) =
                    (Category::parse(&category), DrillOutcome::parse(&outcome))
                {
                    found.push(Latest {
                        category,
                        outcome,
                        rto_ms: rto.map(|v| v.max(0) as u64),
                        rpo_ms: rpo.map(|v| v.max(0) as u64),
                        finished_ms,
                    });
                }
            }
            Ok(found)
        })
        .await
}

/// The newest RTO a restore drill of `subject` (`job app`) measured, with when: its
/// own drills and those of its parts (`job app /var/lib/app.db`, `job app from
/// tier offsite`).
pub(crate) fn last_restore_rto(
    c: &Connection,
    subject: &str,
) -> rusqlite::Result<Option<(u64, i64)>> {
    c.query_row(
        "SELECT rto_ms, finished_ms FROM drill_results \
         WHERE (subject = ?1 OR substr(subject, 1, length(?1) + 1) = ?1 || ' ') \
           AND rto_ms IS NOT NULL \
           AND scenario IN ('backup_validation', 'database_recovery', 'storage_failure') \
         ORDER BY finished_ms DESC, id DESC LIMIT 1",
        [subject],
        |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)),
    )
    .optional()
}

fn clamp(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A stored result from `row`, its columns starting at `at`; a name this build does
/// not know is an error naming it (a catalog from a newer drd).
fn result(row: &Row<'_>, at: usize) -> rusqlite::Result<DrillResult> {
    let named = |i: usize, text: String, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown drill {what} {text:?} in the catalog").into(),
        )
    };
    let scenario: String = row.get(at)?;
    let category: String = row.get(at + 1)?;
    let outcome: String = row.get(at + 3)?;
    let ms = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(row.get::<_, Option<i64>>(i)?.map(|v| v.max(0) as u64))
    };
    Ok(DrillResult {
        scenario: Scenario::parse(&scenario)
            .ok_or_else(|| named(at, scenario.clone(), "scenario"))?,
        category: Category::parse(&category)
            .ok_or_else(|| named(at + 1, category.clone(), "category"))?,
        subject: row.get(at + 2)?,
        outcome: DrillOutcome::parse(&outcome)
            .ok_or_else(|| named(at + 3, outcome.clone(), "outcome"))?,
        rto_ms: ms(at + 4)?,
        rpo_ms: ms(at + 5)?,
        target_rto_ms: ms(at + 6)?,
        target_rpo_ms: ms(at + 7)?,
        evidence: row.get(at + 8)?,
        duration_ms: ms(at + 9)?.unwrap_or(0),
    })
}
