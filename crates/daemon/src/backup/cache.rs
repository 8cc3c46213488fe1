//! The catalog's cache of snapshots: what each tier holds, as last read.
//!
//! The repository is the truth: a backup adds its snapshot here, and a replication and
//! `drctl backups` (which reads every snapshot file, to see damage that leaves the name
//! in place) bring a tier's rows in step with what they read. A snapshot file found
//! damaged keeps the job, host and time read from it while it was intact, with the
//! damage marked: that is how a listing can still say whose snapshot is damaged, and
//! how a restore of another job's `latest` knows the file is not in its way.
//! [`list`] gives the sound ones (`drctl jobs` reads each job's newest there).

use std::collections::{BTreeSet, HashMap};

use drd_proto::SnapshotInfo;
use rusqlite::{params, Connection};

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

/// Brings the rows of `tier` in step with `snapshots`, everything read from the tier:
/// rows of snapshots no longer there go; sound ones are written whole; a damaged one
/// (with `damaged` set) marks the row that is there, keeping what was read before the
/// damage, or is added with what little is known.
pub fn replace(
    conn: &mut Connection,
    tier: &str,
    snapshots: &[SnapshotInfo],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let present: BTreeSet<&str> = snapshots.iter().map(|s| s.id.as_str()).collect();
    let stored: Vec<String> = {
        let mut stmt = tx.prepare("SELECT id FROM snapshots WHERE tier = ?1")?;
        let ids = stmt.query_map([tier], |r| r.get(0))?;
        ids.collect::<rusqlite::Result<_>>()?
    };
    for id in stored.iter().filter(|id| !present.contains(id.as_str())) {
        tx.execute(
            "DELETE FROM snapshots WHERE tier = ?1 AND id = ?2",
            params![tier, id],
        )?;
    }
    for s in snapshots {
        let marked = match &s.damaged {
            None => 0,
            Some(why) => tx.execute(
                "UPDATE snapshots SET damaged = ?3, file = ?4 WHERE tier = ?1 AND id = ?2",
                params![tier, s.id, why, s.file],
            )?,
        };
        if marked == 0 {
            insert(&tx, s)?;
        }
    }
    tx.commit()
}

/// Adds one snapshot (after a backup), or writes it whole.
pub fn insert(conn: &Connection, s: &SnapshotInfo) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO snapshots
            (tier, id, job, host, unix_ms, parent, size, files, damaged, file)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            s.tier,
            s.id,
            s.job,
            s.host,
            s.unix_ms,
            s.parent,
            i64::try_from(s.size).unwrap_or(i64::MAX),
            i64::try_from(s.files).unwrap_or(i64::MAX),
            s.damaged,
            s.file,
        ],
    )?;
    Ok(())
}

const COLUMNS: &str = "id, job, host, unix_ms, parent, size, files, tier, damaged, file";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SnapshotInfo> {
    Ok(SnapshotInfo {
        id: r.get(0)?,
        job: r.get(1)?,
        host: r.get(2)?,
        unix_ms: r.get(3)?,
        parent: r.get(4)?,
        size: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
        files: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
        tier: r.get(7)?,
        damaged: r.get(8)?,
        file: r.get(9)?,
    })
}

/// Sound cached snapshots of `tier` (of `job`, if given), oldest first.
pub fn list(
    conn: &Connection,
    tier: &str,
    job: Option<&str>,
) -> rusqlite::Result<Vec<SnapshotInfo>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM snapshots
         WHERE tier = ?1 AND (?2 IS NULL OR job = ?2) AND damaged IS NULL
         ORDER BY unix_ms, id"
    ))?;
    let rows = stmt.query_map(params![tier, job], row)?;
    rows.collect()
}

/// Every row of `tier` with a known job, damaged or not, by id: what was read from
/// each snapshot file while it was intact.
pub fn known(conn: &Connection, tier: &str) -> rusqlite::Result<HashMap<String, SnapshotInfo>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM snapshots WHERE tier = ?1 AND job != ''"
    ))?;
    let rows = stmt.query_map([tier], row)?;
    rows.map(|r| r.map(|s| (s.id.clone(), s))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::OptionalExtension;

    fn get(conn: &Connection, tier: &str, id: &str) -> rusqlite::Result<Option<SnapshotInfo>> {
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM snapshots WHERE tier = ?1 AND id = ?2"),
            params![tier, id],
            row,
        )
        .optional()
    }

    fn info(id: &str, job: &str, damaged: Option<&str>) -> SnapshotInfo {
        SnapshotInfo {
            id: id.into(),
            job: job.into(),
            host: "h".into(),
            unix_ms: 5,
            parent: None,
            size: 1,
            files: 1,
            tier: "local".into(),
            damaged: damaged.map(Into::into),
            file: damaged.map(|_| format!("/r/snapshots/{id}")),
        }
    }

    #[test]
    fn a_damaged_snapshot_keeps_what_was_read_before_and_leaves_the_sound_list() {
        let mut conn = crate::catalog::migrations::in_memory();
        insert(&conn, &info("a", "db", None)).unwrap();
        insert(&conn, &info("b", "db", None)).unwrap();
        insert(&conn, &info("gone", "db", None)).unwrap();
        // A listing finds b damaged (job unknown from the file) and c damaged, never
        // read before; "gone" is no longer on the tier.
        replace(
            &mut conn,
            "local",
            &[
                info("a", "db", None),
                info("b", "", Some("does not decrypt")),
                info("c", "", Some("does not parse")),
            ],
        )
        .unwrap();
        let b = get(&conn, "local", "b").unwrap().unwrap();
        assert_eq!(
            (b.job.as_str(), b.damaged.as_deref()),
            ("db", Some("does not decrypt"))
        );
        assert!(get(&conn, "local", "gone").unwrap().is_none());
        let sound: Vec<String> = list(&conn, "local", None)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(sound, ["a"]);
        let known = known(&conn, "local").unwrap();
        assert!(known.contains_key("b") && !known.contains_key("c"));
        // Repaired: written whole again, sound.
        replace(
            &mut conn,
            "local",
            &[info("a", "db", None), info("b", "db", None)],
        )
        .unwrap();
        assert!(get(&conn, "local", "b").unwrap().unwrap().damaged.is_none());
    }
}
