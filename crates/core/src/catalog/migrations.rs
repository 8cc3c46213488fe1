//! The catalog's schema, as the list of migrations that build it.
//!
//! The SQL lives here rather than beside the subsystems that query each table, so the
//! catalog knows no subsystem above it (the audit log, the snapshot and index caches,
//! replication, job runs, shutdown checkpoints) and one file shows the whole schema in
//! the order it grew. The queries stay with their subsystems.
//!
//! Entries are never edited or reordered once released: a catalog records how many it
//! has applied, and a new table or column is a new entry at the end.

/// Migrations, in order: entry `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the hash-chained audit log. Triggers make it append-only for anyone who goes
    // through SQLite honestly; the hash chain catches everyone else.
    "CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        unix_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_time ON audit (unix_ms);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    // 2: the snapshot cache (tiers::snapshot_cache), rebuilt from the repositories
    // whenever it is stale.
    "CREATE TABLE snapshots (
        tier TEXT NOT NULL,
        id TEXT NOT NULL,
        job TEXT NOT NULL,
        host TEXT NOT NULL,
        unix_ms INTEGER NOT NULL,
        parent TEXT,
        size INTEGER NOT NULL,
        files INTEGER NOT NULL,
        PRIMARY KEY (tier, id)
    );
    CREATE INDEX snapshots_job ON snapshots (job, unix_ms);",
    // 3: replication state of each (landing, offsite) tier pair (tiers::replication).
    "CREATE TABLE replication (
        source TEXT NOT NULL,
        dest TEXT NOT NULL,
        last_attempt_ms INTEGER,
        last_ok_ms INTEGER,
        last_error TEXT,
        failures INTEGER NOT NULL DEFAULT 0,
        files_copied INTEGER NOT NULL DEFAULT 0,
        bytes_copied INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (source, dest)
    );",
    // 4: each tier's index files, so opening a remote repository costs one listing
    // (tiers::index_cache). Keyed by the tier's location, so a renamed tier keeps its
    // rows.
    "CREATE TABLE index_files (
        location TEXT NOT NULL,
        name TEXT NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (location, name)
    );",
    // 5: the record of every job run (trigger, start, end, outcome, snapshot, error;
    // jobs::runs).
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        trigger TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        outcome TEXT NOT NULL,
        snapshot TEXT,
        tier TEXT,
        stats TEXT,
        error TEXT
    );
    CREATE INDEX runs_job ON runs (job, started_ms);",
    // 6: emergency shutdown runs and their checkpointed steps (shutdown::checkpoints).
    "
    CREATE TABLE shutdown_runs (
        id INTEGER PRIMARY KEY,
        started_ms INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        force INTEGER NOT NULL,
        only_services TEXT NOT NULL,
        state TEXT NOT NULL,
        ended_ms INTEGER
    );
    CREATE TABLE shutdown_steps (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES shutdown_runs (id),
        phase TEXT NOT NULL,
        subject TEXT NOT NULL,
        state TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        detail TEXT NOT NULL DEFAULT '',
        record TEXT
    );
    CREATE INDEX shutdown_steps_run ON shutdown_steps (run_id);",
    // 7: snapshot cache rows that say their snapshot file was found damaged (why, and
    // the file), keeping what was read from it before.
    "ALTER TABLE snapshots ADD COLUMN damaged TEXT;
    ALTER TABLE snapshots ADD COLUMN file TEXT;",
    // 8: what the monitors and deadman switches remember across restarts (drd-watch):
    // each check's, breaker's and switch's state as JSON under its key, the rolling
    // verifier's coverage per pack, and the checksum manifest of protected files.
    "
    CREATE TABLE watch_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE verify_coverage (
        tier TEXT NOT NULL,
        pack TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        checked_ms INTEGER,
        problem TEXT,
        PRIMARY KEY (tier, pack)
    );
    CREATE TABLE protected_files (
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ms INTEGER NOT NULL,
        hash TEXT NOT NULL,
        seen_ms INTEGER NOT NULL
    );",
    // 9: recoveries are runs of the same machine as shutdowns, in the same tables:
    // `kind` tells them apart, `recovers` names the shutdown a recovery brings back,
    // and `rto_ms` is the recovery's measured RTO (from that shutdown's start until
    // every service was back, healthy and undrained).
    "ALTER TABLE shutdown_runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'shutdown';
    ALTER TABLE shutdown_runs ADD COLUMN recovers INTEGER REFERENCES shutdown_runs (id);
    ALTER TABLE shutdown_runs ADD COLUMN rto_ms INTEGER;",
    // 10: the alert outbox (drd-alerts). An alert is open until resolved, one open
    // alert per dedup key; each delivery of its firing or its resolution to one
    // receiver waits in `alert_deliveries` until it is done, so a receiver that is
    // down, or a drd that is killed, loses nothing. `alert_receivers` keeps each
    // receiver's circuit breaker across restarts.
    "
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        dedup_key TEXT NOT NULL,
        severity TEXT NOT NULL,
        source TEXT NOT NULL,
        summary TEXT NOT NULL,
        evidence TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        resolved_ms INTEGER,
        level INTEGER NOT NULL DEFAULT 0,
        acked_ms INTEGER,
        acked_by TEXT,
        ack_comment TEXT
    );
    CREATE UNIQUE INDEX alerts_open ON alerts (dedup_key) WHERE resolved_ms IS NULL;
    CREATE TABLE alert_deliveries (
        id INTEGER PRIMARY KEY,
        alert_id INTEGER NOT NULL REFERENCES alerts (id),
        receiver TEXT NOT NULL,
        status TEXT NOT NULL,
        level INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_ms INTEGER NOT NULL,
        done_ms INTEGER,
        result TEXT
    );
    CREATE INDEX alert_deliveries_waiting ON alert_deliveries (receiver, id)
        WHERE done_ms IS NULL;
    CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id);
    CREATE TABLE alert_receivers (
        name TEXT PRIMARY KEY,
        breaker TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    );",
    // 11: drills (drd-drills). A run is one pass of the chosen scenarios; each drill
    // (one scenario on one subject) is a result with what it measured. A run left
    // without `finished_ms` was cut short by a stop and is closed as cancelled at the
    // next start.
    "
    CREATE TABLE drill_runs (
        id INTEGER PRIMARY KEY,
        trigger TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        outcome TEXT
    );
    CREATE TABLE drill_results (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES drill_runs (id),
        scenario TEXT NOT NULL,
        category TEXT NOT NULL,
        subject TEXT NOT NULL,
        outcome TEXT NOT NULL,
        rto_ms INTEGER,
        rpo_ms INTEGER,
        target_rto_ms INTEGER,
        target_rpo_ms INTEGER,
        evidence TEXT NOT NULL,
        duration_ms INTEGER NOT NULL,
        finished_ms INTEGER NOT NULL
    );
    CREATE INDEX drill_results_time ON drill_results (finished_ms);
    CREATE INDEX drill_results_run ON drill_results (run_id);",
];

/// An in-memory database with the whole schema, for the unit tests of the modules
/// that query it (here and, through the `test-support` feature, in the crates above).
#[cfg(any(test, feature = "test-support"))]
pub fn in_memory() -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_in_memory().expect("open an in-memory database");
    for migration in MIGRATIONS {
        conn.execute_batch(migration).expect("apply a migration");
    }
    conn
}
