//! The history of runs, for `drctl shutdowns`: every shutdown and recovery the
//! catalog remembers, newest first, with how each ended.
//!
//! The catalog alone cannot tell a run that is under way from one whose drd died:
//! both are `running`. [`mark_interrupted`] settles that with what
//! [`crate::status`] knows about the run in this process.

use drd_proto::{RunKind, RunState, RunSummary, ShutdownStatus, ShutdownTrigger};
use rusqlite::Connection;

use drd_core::catalog::stored;
use drd_core::catalog::{Catalog, CatalogError};

/// At most `limit` runs, shutdowns and recoveries alike, newest first.
pub async fn history(catalog: &Catalog, limit: u32) -> Result<Vec<RunSummary>, CatalogError> {
    catalog
        .call("read shutdown history", move |conn| {
            read_history(conn, limit)
        })
        .await
}

fn read_history(conn: &Connection, limit: u32) -> rusqlite::Result<Vec<RunSummary>> {
    let mut stmt = conn.prepare(
        "SELECT id, kind, trigger, actor, started_ms, ended_ms, state, recovers, rto_ms
         FROM shutdown_runs ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        let rto_ms: Option<i64> = r.get(8)?;
        Ok(RunSummary {
            run_id: r.get(0)?,
            kind: stored(r, 1, "shutdown_runs.kind", RunKind::parse)?,
            trigger: stored(r, 2, "shutdown_runs.trigger", |t| {
                ShutdownTrigger::parse(t).ok()
            })?,
            actor: r.get(3)?,
            started_unix_ms: r.get(4)?,
            ended_unix_ms: r.get(5)?,
            state: r.get(6)?,
            recovers: r.get(7)?,
            rto_ms: rto_ms.and_then(|ms| u64::try_from(ms).ok()),
        })
    })?;
    rows.collect()
}

/// Turns the `running` rows that run nowhere into `interrupted`. `newest` is
/// [`crate::status`] read *before* the history: the newest unfinished run and whether
/// it runs here. An unfinished run older than it is interrupted (only one runs at a
/// time, and it is the newest); one newer started after `newest` was read, so it runs.
pub fn mark_interrupted(runs: &mut [RunSummary], newest: Option<&ShutdownStatus>) {
    for run in runs
        .iter_mut()
        .filter(|r| r.state == RunState::Running.as_str())
    {
        let interrupted = match newest {
            Some(n) if n.run_id == run.run_id => n.state == RunState::Interrupted,
            Some(n) => run.run_id < n.run_id,
            None => false,
        };
        if interrupted {
            RunState::Interrupted.as_str().clone_into(&mut run.state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(conn: &Connection, sql_values: &str) {
        conn.execute_batch(&format!(
            "INSERT INTO shutdown_runs (started_ms, trigger, actor, reason, force, only_services,
                                        state, ended_ms, kind, recovers, rto_ms)
             VALUES {sql_values};"
        ))
        .unwrap();
    }

    #[test]
    fn runs_come_newest_first_with_kind_outcome_and_rto() {
        let conn = drd_core::catalog::migrations::in_memory();
        assert!(read_history(&conn, 20).unwrap().is_empty());
        insert(
            &conn,
            "(1000, 'manual', 'uid 0', '', 0, '', 'completed', 4000, 'shutdown', NULL, NULL),
             (9000, 'manual', 'uid 0', '', 0, '', 'recovered', 12000, 'recovery', 1, 11000),
             (20000, 'data_corruption', 'monitor', '', 1, '', 'running', NULL, 'shutdown', NULL, NULL)",
        );
        let runs = read_history(&conn, 20).unwrap();
        let ids: Vec<i64> = runs.iter().map(|r| r.run_id).collect();
        assert_eq!(ids, [3, 2, 1]);
        let recovery = &runs[1];
        assert_eq!(recovery.kind, RunKind::Recovery);
        assert_eq!(recovery.state, "recovered");
        assert_eq!(
            (recovery.recovers, recovery.rto_ms, recovery.ended_unix_ms),
            (Some(1), Some(11_000), Some(12_000))
        );
        assert_eq!(runs[0].trigger, ShutdownTrigger::DataCorruption);
        assert_eq!(runs[0].ended_unix_ms, None);
        assert_eq!(runs[2].started_unix_ms, 1000);

        let newest_two = read_history(&conn, 2).unwrap();
        assert_eq!(newest_two.len(), 2);
        assert_eq!(newest_two[1].run_id, 2);
    }

    #[test]
    fn a_kind_this_drd_does_not_know_is_an_error_naming_it() {
        let conn = drd_core::catalog::migrations::in_memory();
        insert(
            &conn,
            "(1, 'manual', 'root', '', 0, '', 'completed', 2, 'teleport', NULL, NULL)",
        );
        let err = read_history(&conn, 20).unwrap_err().to_string();
        assert!(
            err.contains("shutdown_runs.kind holds \"teleport\""),
            "{err}"
        );
    }

    fn summary(run_id: i64, state: &str) -> RunSummary {
        RunSummary {
            run_id,
            kind: RunKind::Shutdown,
            trigger: ShutdownTrigger::Manual,
            actor: "root".to_owned(),
            started_unix_ms: run_id,
            ended_unix_ms: None,
            state: state.to_owned(),
            recovers: None,
            rto_ms: None,
        }
    }

    fn status(run_id: i64, state: RunState) -> ShutdownStatus {
        ShutdownStatus {
            run_id,
            kind: RunKind::Shutdown,
            trigger: ShutdownTrigger::Manual,
            started_unix_ms: run_id,
            state,
            last_step: String::new(),
        }
    }

    #[test]
    fn only_the_run_under_way_stays_running() {
        let states = |newest: Option<ShutdownStatus>| {
            let mut runs = vec![
                summary(4, "running"),
                summary(3, "running"),
                summary(2, "completed"),
                summary(1, "running"),
            ];
            mark_interrupted(&mut runs, newest.as_ref());
            runs.into_iter().map(|r| r.state).collect::<Vec<_>>()
        };
        // 3 runs here; 4 started after status was read; 1 was left by a dead drd.
        assert_eq!(
            states(Some(status(3, RunState::Running))),
            ["running", "running", "completed", "interrupted"]
        );
        assert_eq!(
            states(Some(status(3, RunState::Interrupted))),
            ["running", "interrupted", "completed", "interrupted"]
        );
        // Nothing unfinished when status was read: whatever runs started since.
        assert_eq!(states(None), ["running", "running", "completed", "running"]);
    }
}
