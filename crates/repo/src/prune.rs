//! Retention and garbage collection: pick the snapshots a policy keeps, forget the
//! others, then prune the blobs no snapshot needs.
//!
//! Prune holds the exclusive lock throughout and removes data in the safe order: new
//! packs (the still-used blobs of mostly-empty packs) are written first, then one index
//! file covering every pack that stays, then the old index files go, and only then the
//! packs that no index lists any more. A crash at any step leaves a repository that
//! verifies: at worst duplicate index entries or reclaimable packs.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::{Id, IndexPack, Snapshot};
use crate::pack::{pack_name, PackWriter, SealedBlob};
use crate::repo::{BlobLoc, Repository};
use crate::snapshots::{read_one, DamagedSnapshot, ReadSnapshot};

/// Which snapshots to keep. Each rule keeps snapshots on its own and the results are
/// ORed; a snapshot no rule keeps is forgotten. A policy with no rule keeps everything.
/// Periods are calendar periods in UTC; in each, the newest snapshot counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// The newest n snapshots.
    pub keep_last: u32,
    /// The newest snapshot of each of the last n hours that have one.
    pub keep_hourly: u32,
    /// ... days.
    pub keep_daily: u32,
    /// ... weeks (Monday to Sunday).
    pub keep_weekly: u32,
    /// ... months.
    pub keep_monthly: u32,
    /// ... years.
    pub keep_yearly: u32,
    /// Every snapshot younger than this.
    pub keep_within: Option<Duration>,
}

impl Retention {
    /// True when no rule is set (such a policy keeps everything).
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.keep_hourly == 0
            && self.keep_daily == 0
            && self.keep_weekly == 0
            && self.keep_monthly == 0
            && self.keep_yearly == 0
            && self.keep_within.is_none()
    }
}

/// What a retention policy decides for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionDecision {
    /// Snapshot id.
    pub id: String,
    /// Job of the snapshot.
    pub job: String,
    /// Snapshot time, unix ms.
    pub time_ms: i64,
    /// Why it is kept ("last", "daily", ...); empty means it is forgotten.
    pub reasons: Vec<String>,
}

/// Days since 1970-01-01 to (year, month) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn year_month(days: i64) -> (i64, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, u32::try_from(month).unwrap_or(1))
}

/// The period keys of a time for each calendar rule.
fn periods(time_ms: i64) -> [i64; 5] {
    let hour = time_ms.div_euclid(3_600_000);
    let day = time_ms.div_euclid(86_400_000);
    // 1970-01-01 was a Thursday; shift so weeks start on Monday.
    let week = (day + 3).div_euclid(7);
    let (year, month) = year_month(day);
    [hour, day, week, year * 12 + i64::from(month), year]
}

/// Applies `policy` to `snapshots`, separately for each (job, host). Newest first.
pub fn apply_retention(
    snapshots: &[Snapshot],
    policy: &Retention,
    now_ms: i64,
) -> Vec<RetentionDecision> {
    let mut groups: BTreeMap<(&str, &str), Vec<&Snapshot>> = BTreeMap::new();
    for s in snapshots {
        groups.entry((&s.job, &s.host)).or_default().push(s);
    }
    let mut out = Vec::new();
    for (_, mut group) in groups {
        group.sort_by(|a, b| b.time_ms.cmp(&a.time_ms).then(b.id.cmp(&a.id)));
        let rules = [
            ("hourly", policy.keep_hourly),
            ("daily", policy.keep_daily),
            ("weekly", policy.keep_weekly),
            ("monthly", policy.keep_monthly),
            ("yearly", policy.keep_yearly),
        ];
        let mut last_period: [Option<i64>; 5] = [None; 5];
        let mut kept: [u32; 5] = [0; 5];
        for (i, s) in group.iter().enumerate() {
            let mut reasons = Vec::new();
            if policy.is_empty() {
                reasons.push("no retention policy".to_string());
            }
            if (i as u64) < u64::from(policy.keep_last) {
                reasons.push("last".to_string());
            }
            if let Some(within) = policy.keep_within {
                let age = now_ms.saturating_sub(s.time_ms);
                if u128::try_from(age).unwrap_or(0) <= within.as_millis() {
                    reasons.push("within".to_string());
                }
            }
            let keys = periods(s.time_ms);
            for (r, (name, n)) in rules.iter().enumerate() {
                if kept[r] < *n && last_period[r] != Some(keys[r]) {
                    last_period[r] = Some(keys[r]);
                    kept[r] += 1;
                    reasons.push((*name).to_string());
                }
            }
            out.push(RetentionDecision {
                id: s.id.clone(),
                job: s.job.clone(),
                time_ms: s.time_ms,
                reasons,
            });
        }
    }
    out
}

/// Tunables of a prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// A pack whose unused share of bytes is above this is rewritten (0.0 to 1.0);
    /// below it the pack is kept whole, unused blobs and all.
    pub repack_threshold: f64,
    /// Only count; change nothing.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            repack_threshold: 0.25,
            dry_run: false,
        }
    }
}

/// What a prune did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneSummary {
    /// Packs removed because nothing in them is used.
    pub packs_deleted: u64,
    /// Packs rewritten to drop unused blobs.
    pub packs_repacked: u64,
    /// Packs that no index listed, and packs never finished (temporaries), left by
    /// interrupted backups, removed.
    pub orphan_packs_deleted: u64,
    /// Blobs no longer stored.
    pub blobs_removed: u64,
    /// Bytes freed on storage (net of the rewritten packs; a dry run leaves out the
    /// new packs' headers).
    pub bytes_freed: u64,
    /// Stale locks broken and similar notes.
    pub warnings: Vec<String>,
    /// Set when garbage collection did not run, and why (a damaged snapshot file
    /// whose references are unknown).
    pub skipped: Option<String>,
}

/// What forgetting did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetSummary {
    /// The policy's decision for every snapshot considered.
    pub decisions: Vec<RetentionDecision>,
    /// Snapshot ids removed.
    pub removed: Vec<String>,
    /// Stale locks broken, damaged snapshot files left alone, and similar notes.
    pub warnings: Vec<String>,
    /// Ids of the damaged snapshot files that were neither counted nor removed.
    pub damaged: Vec<String>,
}

/// The note about a damaged snapshot file that retention leaves alone.
fn damaged_note(d: &DamagedSnapshot) -> String {
    format!(
        "snapshot file {} is damaged ({}): left in place and not counted by retention; \
         restore an intact copy from an offsite tier, or remove it by hand once it is \
         certainly lost",
        d.path.display(),
        d.reason
    )
}

impl Repository {
    /// Removes the snapshots `policy` does not keep (of `job` only, if given). The data
    /// stays until [`Repository::prune`]. Takes the exclusive lock.
    pub fn forget(
        &self,
        policy: &Retention,
        job: Option<&str>,
        dry_run: bool,
    ) -> Result<ForgetSummary> {
        let mut summary = ForgetSummary::default();
        let _lock = self.lock(true, &mut summary.warnings)?;
        let list = self.snapshot_list()?;
        // A damaged file is evidence, and what it held is unknown: it is neither
        // counted by the rules nor removed, and the caller hears of it.
        for d in &list.damaged {
            summary.warnings.push(damaged_note(d));
        }
        summary.damaged = list.damaged.iter().map(|d| d.id.clone()).collect();
        let all: Vec<Snapshot> = list
            .snapshots
            .into_iter()
            .filter(|s| job.is_none_or(|j| s.job == j))
            .collect();
        summary.decisions = apply_retention(&all, policy, crate::lock::now_ms());
        for d in &summary.decisions {
            if d.reasons.is_empty() {
                if !dry_run {
                    self.storage.remove(&format!("snapshots/{}", d.id))?;
                }
                summary.removed.push(d.id.clone());
            }
        }
        Ok(summary)
    }

    /// Removes the given snapshots (ids, or unique prefixes). Takes the exclusive lock.
    pub fn forget_ids(&self, ids: &[String]) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        let _lock = self.lock(true, &mut warnings)?;
        let all = self.snapshots()?;
        let mut removed = Vec::new();
        for sel in ids {
            let s = crate::snapshots::select_snapshot(&all, sel)?;
            removed.push(s.id.clone());
        }
        for id in &removed {
            self.storage.remove(&format!("snapshots/{id}"))?;
        }
        Ok(removed)
    }

    /// Deletes the blobs no snapshot needs. Refuses to run (and changes nothing) if a
    /// readable snapshot's tree cannot be read, since it could not tell what is still
    /// used. A damaged snapshot file is read from an intact copy on a replica if there is
    /// one; if not, what it refers to is unknown, so nothing is deleted at all: the run
    /// returns with [`PruneSummary::skipped`] saying why, and the file stays.
    pub fn prune(&self, options: &PruneOptions) -> Result<PruneSummary> {
        let mut summary = PruneSummary::default();
        let _lock = self.lock(true, &mut summary.warnings)?;

        // Every pack as the index files list it, and the index files themselves.
        let index_files = self.storage.list("index")?;
        let mut packs: BTreeMap<Id, IndexPack> = BTreeMap::new();
        for name in &index_files {
            for p in self.read_index_file(name)?.packs {
                packs.entry(p.id).or_insert(p);
            }
        }
        self.refresh()?;

        // Everything the snapshots use.
        let mut used: HashSet<Id> = HashSet::new();
        let mut unknown = Vec::new();
        for name in self.storage.list("snapshots")? {
            let snap = match read_one(&*self.storage, &self.keys, &name)? {
                ReadSnapshot::Sound(snap) => snap,
                ReadSnapshot::Gone => continue,
                ReadSnapshot::Damaged(d) => match self.intact_copy(&d.id) {
                    Some((copy, _)) => copy,
                    None => {
                        unknown.push(d);
                        continue;
                    }
                },
            };
            self.mark_used(&snap.tree, &mut used, &snap.id)?;
        }
        if !unknown.is_empty() {
            let files: Vec<String> = unknown
                .iter()
                .map(|d| d.path.display().to_string())
                .collect();
            let reason = format!(
                "garbage collection skipped, nothing was deleted: {} damaged ({}), so the \
                 data it refers to is unknown and is kept. Put an intact copy of the file \
                 back (from an offsite tier), or, once it is certainly lost, remove it by \
                 hand; the next prune then collects",
                if files.len() == 1 {
                    format!("snapshot file {} is", files[0])
                } else {
                    format!("snapshot files {} are", files.join(", "))
                },
                unknown[0].reason
            );
            summary.warnings.push(reason.clone());
            summary.skipped = Some(reason);
            return Ok(summary);
        }

        // Keep packs that are mostly used, whole; their blobs count as kept.
        let mut kept: HashSet<Id> = HashSet::new();
        let mut keep_whole: Vec<IndexPack> = Vec::new();
        let mut rewrite: Vec<IndexPack> = Vec::new();
        let mut delete: Vec<(Id, u64)> = Vec::new();
        for p in packs.into_values() {
            let total: u64 = p.entries.iter().map(|e| u64::from(e.length)).sum();
            let live: u64 = p
                .entries
                .iter()
                .filter(|e| used.contains(&e.id))
                .map(|e| u64::from(e.length))
                .sum();
            if live == 0 {
                summary.blobs_removed += p.entries.len() as u64;
                delete.push((p.id, p.size));
            } else if (total - live) as f64 > options.repack_threshold * total as f64 {
                rewrite.push(p);
            } else {
                kept.extend(p.entries.iter().map(|e| e.id));
                keep_whole.push(p);
            }
        }

        // Rewrite: copy the still-needed tokens (checked first) into new packs.
        let mut writer = PackWriter::new(&*self.storage, self.pack_size());
        let mut new_packs: Vec<IndexPack> = Vec::new();
        let mut copied = 0u64;
        for p in &rewrite {
            for e in &p.entries {
                if !used.contains(&e.id) || !kept.insert(e.id) {
                    summary.blobs_removed += 1;
                    continue;
                }
                let token = self
                    .storage
                    .read_at(&pack_name(&p.id), e.offset, e.length as usize)?;
                let loc = BlobLoc {
                    pack: p.id,
                    entry: *e,
                };
                // A damaged blob must not be copied as if it were good: stop here.
                self.open_token(&loc, &token, "prune")?;
                copied += u64::from(e.length);
                if options.dry_run {
                    continue;
                }
                let blob = SealedBlob {
                    id: e.id,
                    kind: e.kind,
                    compressed: e.compressed,
                    raw_len: e.raw_len,
                };
                writer.add(&blob, &token)?;
                if writer.is_full() {
                    new_packs.push(writer.flush(&self.keys)?);
                }
            }
            summary.packs_repacked += 1;
            delete.push((p.id, p.size));
        }
        if !options.dry_run && !writer.is_empty() {
            new_packs.push(writer.flush(&self.keys)?);
        }
        // A dry run estimates the new packs by the tokens they would hold.
        let written: u64 = if options.dry_run {
            copied
        } else {
            new_packs.iter().map(|p| p.size).sum()
        };

        // Orphans: packs on storage that no index lists.
        let listed: HashSet<Id> = keep_whole
            .iter()
            .chain(new_packs.iter())
            .map(|p| p.id)
            .chain(delete.iter().map(|(id, _)| *id))
            .collect();
        let mut orphans = Vec::new();
        for name in self.storage.list("data")? {
            if let Some(id) = name.split('/').nth(1).and_then(Id::from_hex) {
                if !listed.contains(&id) {
                    let size = self.storage.size(&pack_name(&id))?.unwrap_or(0);
                    orphans.push((id, size));
                }
            }
        }
        // Under the exclusive lock nothing else writes: a temporary is a killed write.
        let unfinished = self.storage.unfinished("data")?;
        summary.orphan_packs_deleted = (orphans.len() + unfinished.len()) as u64;
        let freed: u64 = delete
            .iter()
            .chain(orphans.iter())
            .map(|(_, s)| s)
            .sum::<u64>()
            + unfinished.iter().map(|(_, s)| s).sum::<u64>();
        summary.bytes_freed = freed.saturating_sub(written);
        summary.packs_deleted = delete.len() as u64 - summary.packs_repacked;
        if options.dry_run {
            return Ok(summary);
        }
        for (name, _) in &unfinished {
            self.storage.remove(name)?;
        }
        if delete.is_empty() && orphans.is_empty() {
            return Ok(summary);
        }

        // New index first, then the old index files go, then the packs.
        let mut all_packs = keep_whole;
        all_packs.extend(new_packs);
        let new_index = self.write_index(&all_packs)?;
        for name in &index_files {
            if !new_index.contains(name) {
                self.storage.remove(&format!("index/{name}"))?;
            }
        }
        for (id, _) in delete.iter().chain(orphans.iter()) {
            self.storage.remove(&pack_name(id))?;
        }
        self.refresh()?;
        Ok(summary)
    }

    fn mark_used(&self, tree_id: &Id, used: &mut HashSet<Id>, snapshot: &str) -> Result<()> {
        if !used.insert(*tree_id) {
            return Ok(());
        }
        let tree = self
            .read_tree(tree_id, &format!("snapshot {snapshot}"))
            .map_err(|e| {
                Error::Internal(format!(
                    "prune stopped, nothing was removed: {e} (run verify)"
                ))
            })?;
        for node in &tree.nodes {
            used.extend(node.content.iter().copied());
            if let Some(sub) = &node.subtree {
                self.mark_used(sub, used, snapshot)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::BackupStats;

    fn snap(id: &str, time_ms: i64) -> Snapshot {
        Snapshot {
            id: id.into(),
            job: "j".into(),
            host: "h".into(),
            time_ms,
            parent: None,
            sources: vec![],
            tree: Id::default(),
            stats: BackupStats::default(),
        }
    }

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    fn kept(d: &[RetentionDecision]) -> Vec<&str> {
        let mut v: Vec<&str> = d
            .iter()
            .filter(|d| !d.reasons.is_empty())
            .map(|d| d.id.as_str())
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn calendar_keys() {
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(year_month(31), (1970, 2));
        // 2024-02-29 is day 19782.
        assert_eq!(year_month(19_782), (2024, 2));
        assert_eq!(year_month(19_783), (2024, 3));
        // 1970-01-04 (Sunday) and 01-05 (Monday) are in different weeks.
        assert_ne!(periods(3 * DAY)[2], periods(4 * DAY)[2]);
        assert_eq!(periods(4 * DAY)[2], periods(10 * DAY)[2]);
    }

    #[test]
    fn hourly_and_daily_keep_the_newest_of_each_period() {
        // Every 30 minutes for three days, starting at day 100.
        let snaps: Vec<Snapshot> = (0..144)
            .map(|i| snap(&format!("{i:03}"), 100 * DAY + i * HOUR / 2))
            .collect();
        let policy = Retention {
            keep_hourly: 3,
            keep_daily: 2,
            ..Retention::default()
        };
        let d = apply_retention(&snaps, &policy, 104 * DAY);
        // Hourly: 143, 141, 139 (newest in each of the last three hours);
        // daily: 143 (day 102), 095 (newest of day 101).
        assert_eq!(kept(&d), vec!["095", "139", "141", "143"]);
    }

    #[test]
    fn last_within_and_empty_policy() {
        let snaps: Vec<Snapshot> = (0..5).map(|i| snap(&format!("{i}"), i * DAY)).collect();
        let last2 = Retention {
            keep_last: 2,
            ..Retention::default()
        };
        assert_eq!(
            kept(&apply_retention(&snaps, &last2, 10 * DAY)),
            vec!["3", "4"]
        );
        let within = Retention {
            keep_within: Some(Duration::from_secs(36 * 3600)),
            ..Retention::default()
        };
        assert_eq!(kept(&apply_retention(&snaps, &within, 5 * DAY)), vec!["4"]);
        let all = apply_retention(&snaps, &Retention::default(), 5 * DAY);
        assert_eq!(kept(&all).len(), 5);
    }
}
