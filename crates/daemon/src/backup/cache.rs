//! The catalog's cache of snapshots, for fast listing.
//!
//! The repository is the truth; the cache holds the readable snapshots of each tier,
//! as last read: a backup adds its snapshot, a replication and `drctl backups` (which
//! reads every snapshot file, to see damage that leaves the name in place) replace
//! what differs. `drctl jobs` reads it for each job's newest snapshot.

use std::collections::BTreeSet;

use drd_proto::SnapshotInfo;
use rusqlite::{params, Connection};

/// The migration that creates the cache table.
pub const MIGRATION: &str = "CREATE TABLE snapshots (
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
    CREATE INDEX snapshots_job ON snapshots (job, unix_ms);";

/// The snapshot ids present on a tier, without opening the repository (see
/// docs/repository-format.md: one file per snapshot under `snapshots/`, named by its
/// 64-digit hex id). One listing, which is cheap on a directory and on S3 alike.
pub fn ids_on_tier(storage: &dyn drd_repo::Storage) -> drd_repo::Result<BTreeSet<String>> {
    Ok(storage
        .list("snapshots")?
        .into_iter()
        .filter(|name| name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect())
}

/// The ids the cache holds for `tier`.
pub fn cached_ids(conn: &Connection, tier: &str) -> rusqlite::Result<BTreeSet<String>> {
    let mut stmt = conn.prepare("SELECT id FROM snapshots WHERE tier = ?1")?;
    let ids = stmt.query_map([tier], |r| r.get(0))?;
    ids.collect()
}

/// Replaces the cache for `tier` with `snapshots`.
pub fn replace(
    conn: &mut Connection,
    tier: &str,
    snapshots: &[SnapshotInfo],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM snapshots WHERE tier = ?1", [tier])?;
    for s in snapshots {
        insert(&tx, s)?;
    }
    tx.commit()
}

/// Adds one snapshot (after a backup).
pub fn insert(conn: &Connection, s: &SnapshotInfo) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO snapshots (tier, id, job, host, unix_ms, parent, size, files)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            s.tier,
            s.id,
            s.job,
            s.host,
            s.unix_ms,
            s.parent,
            i64::try_from(s.size).unwrap_or(i64::MAX),
            i64::try_from(s.files).unwrap_or(i64::MAX)
        ],
    )?;
    Ok(())
}

/// Cached snapshots of `tier` (of `job`, if given), oldest first.
pub fn list(
    conn: &Connection,
    tier: &str,
    job: Option<&str>,
) -> rusqlite::Result<Vec<SnapshotInfo>> {
    let mut stmt = conn.prepare(
        "SELECT id, job, host, unix_ms, parent, size, files, tier FROM snapshots
         WHERE tier = ?1 AND (?2 IS NULL OR job = ?2) ORDER BY unix_ms, id",
    )?;
    let rows = stmt.query_map(params![tier, job], |r| {
        Ok(SnapshotInfo {
            id: r.get(0)?,
            job: r.get(1)?,
            host: r.get(2)?,
            unix_ms: r.get(3)?,
            parent: r.get(4)?,
            size: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
            files: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
            tier: r.get(7)?,
            damaged: None,
            file: None,
        })
    })?;
    rows.collect()
}
