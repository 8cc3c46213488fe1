//! Rolling repository verification: every pack of every tier read and checked a
//! budget at a time, with what was read when (and what was wrong) in the catalog's
//! `verify_coverage`.
//!
//! Each wake reads, in this order and until the byte budget is spent: packs known to
//! be damaged (so a repaired one clears), packs never read (new packs are read within
//! a wake or two), then packs last read more than half of `verify_within` ago, oldest
//! first. Reading every pack again at half the window leaves the other half as slack
//! for a budget that falls behind. A damaged pack stays a finding until a later read
//! finds it sound or it leaves the index (a repair or prune took it out).
//!
//! Damage found outside the packs read (a blob no index lists, a damaged snapshot or
//! index file) comes from the walk of the snapshots every read does; it counts once
//! two reads in a row see it, since a snapshot written while the walk runs can name
//! blobs of an index file that the walk had not loaded yet.

use std::collections::{BTreeMap, HashSet};

use drd_core::catalog::{Catalog, CatalogError};
use drd_repo::{Id, Problem, Repository};
use rusqlite::params;

/// A pack's row in `verify_coverage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// When the pack was first seen in the index.
    pub first_seen_ms: i64,
    /// When it was last read.
    pub checked_ms: Option<i64>,
    /// What was wrong with it, the last time it was read.
    pub problem: Option<String>,
}

/// The packs to read this wake, in order, as (pack, size), within `budget` bytes
/// (the first one always, so a pack bigger than the budget is read all the same).
pub fn choose(
    packs: &[(Id, u64)],
    coverage: &BTreeMap<String, Coverage>,
    now_ms: i64,
    within_ms: i64,
    budget: u64,
) -> Vec<(Id, u64)> {
    let stale_before = now_ms - within_ms / 2;
    // (priority, when, pack): damaged first, then never read by first sight, then
    // the longest unread.
    let mut due: Vec<(u8, i64, Id, u64)> = packs
        .iter()
        .filter_map(|(id, size)| {
            let row = coverage.get(&id.to_hex());
            match row {
                Some(Coverage {
                    problem: Some(_), ..
                }) => Some((0, 0, *id, *size)),
                None => Some((1, now_ms, *id, *size)),
                Some(Coverage {
                    checked_ms: None,
                    first_seen_ms,
                    ..
                }) => Some((1, *first_seen_ms, *id, *size)),
                Some(Coverage {
                    checked_ms: Some(at),
                    ..
                }) if *at <= stale_before => Some((2, *at, *id, *size)),
                Some(_) => None,
            }
        })
        .collect();
    due.sort();
    let mut spent = 0u64;
    let mut chosen = Vec::new();
    for (_, _, id, size) in due {
        if !chosen.is_empty() && spent.saturating_add(size) > budget {
            break;
        }
        spent = spent.saturating_add(size);
        chosen.push((id, size));
    }
    chosen
}

/// Which pack each problem is about (by the pack file verify names), and the
/// problems about none.
pub fn sort_problems(
    repo: &Repository,
    packs: &[(Id, u64)],
    problems: &[Problem],
) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let files: BTreeMap<String, String> = packs
        .iter()
        .map(|(id, _)| (repo.pack_file(id), id.to_hex()))
        .collect();
    let mut by_pack: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut other = Vec::new();
    for problem in problems {
        let pack = match problem {
            Problem::MissingPack { pack }
            | Problem::PackSize { pack, .. }
            | Problem::BadPackHeader { pack, .. }
            | Problem::BadBlob { pack, .. } => files.get(pack),
            _ => None,
        };
        match pack {
            Some(hex) => by_pack
                .entry(hex.clone())
                .or_default()
                .push(problem.to_string()),
            None => other.push(problem.to_string()),
        }
    }
    (by_pack, other)
}

/// Brings `tier`'s rows in line with the packs the index lists (new ones first seen
/// `now_ms`, gone ones removed) and returns them by pack.
pub fn sync(
    catalog: &Catalog,
    tier: &str,
    packs: &[(Id, u64)],
    now_ms: i64,
) -> Result<BTreeMap<String, Coverage>, CatalogError> {
    let tier = tier.to_owned();
    let listed: HashSet<String> = packs.iter().map(|(id, _)| id.to_hex()).collect();
    catalog.call_blocking("read verify coverage", move |c| {
        let tx = c.transaction()?;
        let mut rows = BTreeMap::new();
        {
            let mut stmt = tx.prepare(
                "SELECT pack, first_seen_ms, checked_ms, problem FROM verify_coverage
                 WHERE tier = ?1",
            )?;
            let found = stmt.query_map([&tier], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Coverage {
                        first_seen_ms: r.get(1)?,
                        checked_ms: r.get(2)?,
                        problem: r.get(3)?,
                    },
                ))
            })?;
            for row in found {
                let (pack, coverage) = row?;
                rows.insert(pack, coverage);
            }
            let mut del =
                tx.prepare("DELETE FROM verify_coverage WHERE tier = ?1 AND pack = ?2")?;
            rows.retain(|pack, _| {
                listed.contains(pack) || del.execute(params![tier, pack]).is_err()
            });
            let mut put = tx.prepare(
                "INSERT INTO verify_coverage (tier, pack, first_seen_ms) VALUES (?1, ?2, ?3)",
            )?;
            for pack in &listed {
                if !rows.contains_key(pack) {
                    put.execute(params![tier, pack, now_ms])?;
                    rows.insert(
                        pack.clone(),
                        Coverage {
                            first_seen_ms: now_ms,
                            checked_ms: None,
                            problem: None,
                        },
                    );
                }
            }
        }
        tx.commit()?;
        Ok(rows)
    })
}

/// Records that `read` were read `now_ms` with `found` (by pack); packs not read but
/// named by a problem get it too.
pub fn record(
    catalog: &Catalog,
    tier: &str,
    read: &[(Id, u64)],
    found: BTreeMap<String, Vec<String>>,
    now_ms: i64,
) -> Result<(), CatalogError> {
    let tier = tier.to_owned();
    let read: Vec<String> = read.iter().map(|(id, _)| id.to_hex()).collect();
    catalog.call_blocking("write verify coverage", move |c| {
        let tx = c.transaction()?;
        {
            let mut checked = tx.prepare(
                "UPDATE verify_coverage SET checked_ms = ?3, problem = ?4
                 WHERE tier = ?1 AND pack = ?2",
            )?;
            for pack in &read {
                let problem = found.get(pack).map(|p| p.join("\n"));
                checked.execute(params![tier, pack, now_ms, problem])?;
            }
            let mut named = tx
                .prepare("UPDATE verify_coverage SET problem = ?3 WHERE tier = ?1 AND pack = ?2")?;
            for (pack, problems) in &found {
                if !read.contains(pack) {
                    named.execute(params![tier, pack, problems.join("\n")])?;
                }
            }
        }
        tx.commit()
    })
}

/// How far the rolling verifier has come on one tier: what the metrics show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoverageSummary {
    /// Packs read and found sound.
    pub sound: u64,
    /// Packs not read yet.
    pub unread: u64,
    /// Packs found damaged at their last read.
    pub damaged: u64,
    /// The oldest of each pack's last read (or, for a pack never read, when it was
    /// first seen): from then on, everything on the tier has been read at least once.
    pub oldest_ms: Option<i64>,
}

/// Each tier's [`CoverageSummary`], by tier, from `verify_coverage` as it stands
/// (read only; the verifier brings the rows in line with the index).
pub async fn summaries(
    catalog: &Catalog,
) -> Result<BTreeMap<String, CoverageSummary>, CatalogError> {
    catalog
        .call("read verify coverage summary", |c| {
            let mut stmt = c.prepare(
                "SELECT tier,
                        SUM(checked_ms IS NOT NULL AND problem IS NULL),
                        SUM(checked_ms IS NULL AND problem IS NULL),
                        SUM(problem IS NOT NULL),
                        MIN(COALESCE(checked_ms, first_seen_ms))
                 FROM verify_coverage GROUP BY tier",
            )?;
            let rows = stmt.query_map([], |r| {
                let count = |i| r.get::<_, i64>(i).map(|n| u64::try_from(n).unwrap_or(0));
                Ok((
                    r.get::<_, String>(0)?,
                    CoverageSummary {
                        sound: count(1)?,
                        unread: count(2)?,
                        damaged: count(3)?,
                        oldest_ms: r.get(4)?,
                    },
                ))
            })?;
            rows.collect()
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3600 * 1000;

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    fn row(checked_ms: Option<i64>, problem: Option<&str>) -> Coverage {
        Coverage {
            first_seen_ms: 0,
            checked_ms,
            problem: problem.map(str::to_owned),
        }
    }

    #[test]
    fn damaged_then_new_then_oldest_stale_within_the_budget() {
        let now = 100 * DAY;
        let packs = [
            (id(1), 10),
            (id(2), 10),
            (id(3), 10),
            (id(4), 10),
            (id(5), 10),
        ];
        let coverage: BTreeMap<String, Coverage> = [
            (id(1).to_hex(), row(Some(now - DAY), None)), // fresh: not due
            (id(2).to_hex(), row(Some(now - 20 * DAY), None)), // stale
            (id(3).to_hex(), row(Some(now - 16 * DAY), None)), // stale, newer
            (id(4).to_hex(), row(Some(now - DAY), Some("bad"))), // damaged
        ]
        .into();
        // id(5) has no row: new.
        let all = choose(&packs, &coverage, now, 30 * DAY, 1000);
        let order: Vec<Id> = all.iter().map(|(id, _)| *id).collect();
        assert_eq!(order, [id(4), id(5), id(2), id(3)]);
        let two = choose(&packs, &coverage, now, 30 * DAY, 25);
        assert_eq!(two.len(), 2);
        // A pack bigger than the budget is read on its own.
        let one = choose(&[(id(9), 500)], &BTreeMap::new(), now, 30 * DAY, 10);
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn every_pack_is_read_within_the_window_when_the_budget_allows() {
        // 100 packs of 10 bytes, 50 bytes a wake, a wake an hour, a 30-day window.
        let packs: Vec<(Id, u64)> = (0..100).map(|n| (id(n), 10)).collect();
        let mut coverage: BTreeMap<String, Coverage> = BTreeMap::new();
        let mut last_read: BTreeMap<Id, Vec<i64>> = BTreeMap::new();
        let hour = DAY / 24;
        for wake in 0..(24 * 90) {
            let now = wake * hour;
            for (id, _) in choose(&packs, &coverage, now, 30 * DAY, 50) {
                coverage.insert(id.to_hex(), row(Some(now), None));
                last_read.entry(id).or_default().push(now);
            }
        }
        for (id, times) in &last_read {
            assert!(times[0] < DAY, "{id:?} first read late");
            for pair in times.windows(2) {
                assert!(pair[1] - pair[0] <= 30 * DAY, "{id:?} unread too long");
            }
        }
        assert_eq!(last_read.len(), 100);
    }

    #[test]
    fn rows_follow_the_index_and_keep_what_was_found() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("c.db")).unwrap();
        let packs = [(id(1), 10), (id(2), 10)];
        let rows = sync(&catalog, "local", &packs, 5).unwrap();
        assert_eq!(rows.len(), 2);
        let found: BTreeMap<String, Vec<String>> =
            [(id(2).to_hex(), vec!["blob x is damaged".to_owned()])].into();
        record(&catalog, "local", &packs[..1], found, 6).unwrap();
        let rows = sync(&catalog, "local", &packs, 7).unwrap();
        assert_eq!(rows[&id(1).to_hex()].checked_ms, Some(6));
        assert_eq!(
            rows[&id(2).to_hex()].problem.as_deref(),
            Some("blob x is damaged")
        );
        // A pack gone from the index leaves coverage; another tier is untouched.
        sync(&catalog, "offsite", &packs, 7).unwrap();
        let rows = sync(&catalog, "local", &packs[..1], 8).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(sync(&catalog, "offsite", &packs, 9).unwrap().len(), 2);
    }

    #[test]
    fn summaries_count_packs_by_state_and_find_the_oldest_read() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("c.db")).unwrap();
        let packs = [(id(1), 10), (id(2), 10), (id(3), 10)];
        sync(&catalog, "local", &packs, 5).unwrap();
        let found: BTreeMap<String, Vec<String>> =
            [(id(2).to_hex(), vec!["bad".to_owned()])].into();
        record(&catalog, "local", &packs[..2], found, 9).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let all = runtime.block_on(summaries(&catalog)).unwrap();
        assert_eq!(
            all["local"],
            CoverageSummary {
                sound: 1,
                unread: 1,
                damaged: 1,
                oldest_ms: Some(5),
            }
        );
    }
}
