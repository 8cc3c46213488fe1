//! The catalog's cache of snapshots: what each tier holds, as last read.
//!
//! The repository is the truth: a backup adds its snapshot here, and a replication and
//! `drctl backups` (which reads every snapshot file, to see damage that leaves the name
//! in place) bring a tier's rows in step with what they read. A snapshot file found
//! damaged keeps the job, host and time read from it while it was intact, with the
//! damage marked: that is how a listing can still say whose snapshot is damaged, and
//! how a restore of another job's `latest` knows the file is not in its way.
//! [`list`] gives the sound ones (`drctl jobs` reads each job's newest there), and
//! [`read_tier`] reads a tier and brings its rows in step.

use std::collections::{BTreeSet, HashMap};

use drd_core::catalog::Catalog;
use drd_core::config::TierConfig;
use drd_proto::SnapshotInfo;
use drd_repo::{DamagedSnapshot, KeySet, Snapshot};
use rusqlite::{params, Connection};

use super::{TierError, TierOpener};

/// A snapshot as listed.
pub fn snapshot_info(snapshot: &Snapshot, tier: &str) -> SnapshotInfo {
    SnapshotInfo {
        id: snapshot.id.clone(),
        job: snapshot.job.clone(),
        host: snapshot.host.clone(),
        unix_ms: snapshot.time_ms,
        parent: snapshot.parent.clone(),
        size: snapshot.stats.total_size,
        files: snapshot.stats.file_count,
        tier: tier.to_owned(),
        damaged: None,
        file: None,
    }
}

/// A damaged snapshot file as listed: what is known of it is its id, its file, why it
/// cannot be read, and (as a hint) when it was written.
pub fn damaged_info(damaged: &DamagedSnapshot, tier: &str) -> SnapshotInfo {
    SnapshotInfo {
        id: damaged.id.clone(),
        job: String::new(),
        host: String::new(),
        unix_ms: damaged.written_ms.unwrap_or(0),
        parent: None,
        size: 0,
        files: 0,
        tier: tier.to_owned(),
        damaged: Some(damaged.reason.clone()),
        file: Some(damaged.path.display().to_string()),
    }
}

/// What a tier holds, read from its snapshot files.
#[derive(Debug, Default)]
pub struct TierListing {
    /// The snapshots whose files read whole.
    pub sound: Vec<SnapshotInfo>,
    /// The damaged snapshot files, each with what the cache read from it while it was
    /// intact (its job, host and time), or with an empty job when it never was.
    pub damaged: Vec<SnapshotInfo>,
}

/// Reads and decrypts every snapshot file on tier `name` (without loading the
/// repository's index: a file that rots in place keeps its name), logs the damaged
/// ones, and brings the tier's rows in the cache in step with what was read.
pub async fn read_tier(
    catalog: &Catalog,
    opener: &TierOpener,
    name: &str,
    tier: &TierConfig,
    keys: &KeySet,
) -> Result<TierListing, TierError> {
    // Opening a tier's storage may block (an S3 client), so it happens on the blocking
    // pool like the reading.
    let (opener, tier, keys, tier_name) =
        (opener.clone(), tier.clone(), keys.clone(), name.to_owned());
    let read = tokio::task::spawn_blocking(move || -> Result<_, TierError> {
        let storage = opener.storage(&tier)?;
        let list = drd_repo::read_snapshots(storage.as_ref(), &keys)?;
        let sound: Vec<SnapshotInfo> = list
            .snapshots
            .iter()
            .map(|s| snapshot_info(s, &tier_name))
            .collect();
        let damaged: Vec<SnapshotInfo> = list
            .damaged
            .iter()
            .map(|d| damaged_info(d, &tier_name))
            .collect();
        Ok((sound, damaged))
    })
    .await
    .unwrap_or_else(|join| {
        Err(drd_repo::Error::Internal(format!("the snapshot listing task failed: {join}")).into())
    });
    let (sound, damaged) = read?;
    for d in &damaged {
        tracing::warn!(
            tier = name,
            file = d.file.as_deref().unwrap_or_default(),
            reason = d.damaged.as_deref().unwrap_or_default(),
            "snapshot file is damaged"
        );
    }
    // In step with what was read; a damaged file keeps (and is listed with) what was
    // read from it while it was intact.
    let (tier_name, mut fresh) = (name.to_owned(), sound.clone());
    fresh.extend(damaged.iter().cloned());
    let damaged = catalog
        .call("refresh snapshot cache", move |c| {
            replace(c, &tier_name, &fresh)?;
            let known = known(c, &tier_name)?;
            Ok(damaged
                .into_iter()
                .map(|d| match known.get(&d.id) {
                    Some(k) => SnapshotInfo {
                        damaged: d.damaged,
                        file: d.file,
                        ..k.clone()
                    },
                    None => d,
                })
                .collect())
        })
        .await?;
    Ok(TierListing { sound, damaged })
}

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
        let mut conn = drd_core::catalog::migrations::in_memory();
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
