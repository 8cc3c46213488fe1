//! Verify: check that every snapshot can be restored.
//!
//! Structure: every snapshot and index file decrypts, every indexed pack exists with the
//! indexed size and a header that decrypts and lists the indexed blobs, and every tree
//! and content blob a snapshot needs is indexed. With `read_data`, every blob of every
//! (or a random subset of) pack is decrypted, decompressed and re-hashed. Each bad or
//! missing blob is reported with the snapshots and paths it affects.
//!
//! Packs on storage that no index lists are what an interrupted backup leaves; they are
//! reported as reclaimable, not as damage. When an index file is damaged, that is
//! reported, and the packs no readable index lists are read by their own headers and
//! checked like the rest (not called reclaimable), so the report stays whole.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::format::{Id, NodeKind, Snapshot};
use crate::pack::{self, pack_name};
use crate::repo::{BlobLoc, Repository};
use crate::threads::run_reporting;

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Also read, decrypt, decompress and re-hash blob data.
    pub read_data: bool,
    /// With `read_data`: read only about this percentage of packs, chosen at random.
    pub subset_percent: Option<f64>,
    /// Only check snapshots of this job (packs are checked all the same).
    pub job: Option<String>,
    /// Reader threads for `read_data` (0 means 1).
    pub threads: usize,
}

/// A progress report during verify.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyProgress {
    /// Packs checked so far.
    pub packs_done: u64,
    /// Packs to check.
    pub packs_total: u64,
    /// Pack bytes read so far.
    pub bytes_done: u64,
    /// Time since the start.
    pub elapsed: Duration,
}

/// One snapshot path that a damaged or missing blob breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affected {
    /// Snapshot id.
    pub snapshot: String,
    /// Path inside the snapshot.
    pub path: String,
}

/// Something wrong with the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Problem {
    /// A snapshot file does not decrypt or decode.
    BadSnapshot {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// An index file does not decrypt or decode (verify, restore and the rest read the
    /// packs' headers instead; repair writes a new index).
    BadIndex {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// An indexed pack is missing.
    MissingPack {
        /// The pack file.
        pack: String,
    },
    /// An indexed pack has another size than the index says.
    PackSize {
        /// The pack file.
        pack: String,
        /// Size in the index.
        expected: u64,
        /// Size on storage.
        actual: u64,
    },
    /// A pack header does not decrypt or disagrees with the index.
    BadPackHeader {
        /// The pack file.
        pack: String,
        /// Why.
        reason: String,
    },
    /// A blob is damaged (does not decrypt, decompress, or match its id).
    BadBlob {
        /// Blob id.
        id: String,
        /// The pack file.
        pack: String,
        /// Why.
        reason: String,
        /// What it breaks.
        affected: Vec<Affected>,
    },
    /// A blob a snapshot needs is in no index.
    MissingBlob {
        /// Blob id.
        id: String,
        /// What it breaks.
        affected: Vec<Affected>,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let affected = |f: &mut fmt::Formatter<'_>, a: &[Affected]| -> fmt::Result {
            for x in a.iter().take(20) {
                write!(
                    f,
                    "\n    snapshot {} {}",
                    &x.snapshot[..x.snapshot.len().min(8)],
                    x.path
                )?;
            }
            if a.len() > 20 {
                write!(f, "\n    ... and {} more", a.len() - 20)?;
            }
            Ok(())
        };
        match self {
            Problem::BadSnapshot { file, reason } => {
                write!(f, "snapshot {file} is damaged: {reason}")
            }
            Problem::BadIndex { file, reason } => write!(
                f,
                "index file {file} is damaged ({reason}); its packs were read by their \
                 headers instead; {}",
                crate::repo::REPAIR_HINT
            ),
            Problem::MissingPack { pack } => write!(f, "pack {pack} is missing"),
            Problem::PackSize {
                pack,
                expected,
                actual,
            } => write!(
                f,
                "pack {pack} has {actual} bytes, the index says {expected}"
            ),
            Problem::BadPackHeader { pack, reason } => {
                write!(f, "pack {pack} header is damaged: {reason}")
            }
            Problem::BadBlob {
                id,
                pack,
                reason,
                affected: a,
            } => {
                write!(
                    f,
                    "blob {id} in pack {pack} is damaged ({reason}); it breaks:"
                )?;
                affected(f, a)
            }
            Problem::MissingBlob { id, affected: a } => {
                write!(f, "blob {id} is missing; it breaks:")?;
                affected(f, a)
            }
        }
    }
}

/// The result of verify.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Snapshots whose trees were walked.
    pub snapshots_checked: u64,
    /// Packs whose structure was checked.
    pub packs_checked: u64,
    /// Packs whose data was read.
    pub packs_read: u64,
    /// Blobs decrypted and re-hashed.
    pub blobs_read: u64,
    /// Damage found.
    pub problems: Vec<Problem>,
    /// Packs no index lists (left by an interrupted backup): safe to delete.
    pub reclaimable_packs: Vec<String>,
    /// Their total size.
    pub reclaimable_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Stale locks broken and similar notes.
    pub warnings: Vec<String>,
}

impl VerifyReport {
    /// True when no damage was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Repository {
    /// Checks the repository; damage is reported in the report, not as an error. An
    /// error means verify itself could not run (storage unreadable, lock held).
    pub fn verify(
        &self,
        options: &VerifyOptions,
        progress: &mut dyn FnMut(&VerifyProgress),
    ) -> Result<VerifyReport> {
        self.verify_some(options, None, progress)
    }

    /// Every pack the index lists (or, where an index file is damaged, the packs' own
    /// headers describe), with its size, sorted by id: what a rolling verifier covers
    /// a few at a time with [`Repository::verify_packs`].
    pub fn indexed_packs(&self) -> Result<Vec<(Id, u64)>> {
        let index = self.load_index(false)?;
        let mut packs: Vec<(Id, u64)> = index.packs.into_iter().collect();
        packs.extend(index.recovered_packs.iter().map(|p| (p.id, p.size)));
        packs.sort();
        Ok(packs)
    }

    /// Reads and checks only `packs` (size, header, every blob), as
    /// [`Repository::verify`] with `read_data` checks each pack; snapshots are still
    /// walked, so that a damaged blob is reported with the snapshots and files it
    /// breaks. A problem names its pack by [`Repository::pack_file`]; problems that
    /// belong to no pack (a damaged index or snapshot, a blob in no index) are
    /// reported too. Reclaimable packs are not looked for.
    pub fn verify_packs(
        &self,
        packs: &[Id],
        threads: usize,
        progress: &mut dyn FnMut(&VerifyProgress),
    ) -> Result<VerifyReport> {
        let options = VerifyOptions {
            read_data: true,
            threads,
            ..VerifyOptions::default()
        };
        let only: HashSet<Id> = packs.iter().copied().collect();
        self.verify_some(&options, Some(&only), progress)
    }

    /// The pack file of `id` as problems name it (a path, or a URL for object storage).
    pub fn pack_file(&self, id: &Id) -> String {
        self.storage.describe(&pack_name(id)).display().to_string()
    }

    /// [`Repository::verify`], with pack checks limited to `only` when given.
    fn verify_some(
        &self,
        options: &VerifyOptions,
        only: Option<&HashSet<Id>>,
        progress: &mut dyn FnMut(&VerifyProgress),
    ) -> Result<VerifyReport> {
        let started = Instant::now();
        let mut report = VerifyReport::default();
        let _lock = self.lock_for_read(&mut report.warnings)?;

        // Indexes (tolerant: a damaged one is a problem, not a stop, and the packs it
        // may have listed are read by their headers, so the rest of the report is whole).
        let index = self.load_index(false)?;
        for (name, reason) in &index.damaged {
            report.problems.push(Problem::BadIndex {
                file: self
                    .storage
                    .describe(&format!("index/{name}"))
                    .display()
                    .to_string(),
                reason: reason.clone(),
            });
        }
        for (id, reason) in &index.unreadable_packs {
            report.problems.push(Problem::BadPackHeader {
                pack: self.storage.describe(&pack_name(id)).display().to_string(),
                reason: format!(
                    "{reason}; no readable index file lists this pack either, so its blobs \
                     cannot be found"
                ),
            });
        }
        if !index.damaged.is_empty() {
            report.warnings.push(format!(
                "{} packs that no readable index file lists were read by their headers \
                 ({} blobs) and checked with the rest",
                index.recovered_packs.len(),
                index.recovered.len()
            ));
        }
        let mut by_pack: HashMap<Id, Vec<BlobLoc>> = HashMap::new();
        for loc in index.blobs.values().chain(index.recovered.values()) {
            by_pack.entry(loc.pack).or_default().push(loc);
        }
        let mut pack_sizes = index.packs.clone();
        for p in &index.recovered_packs {
            pack_sizes.insert(p.id, p.size);
        }
        let unreadable: HashSet<Id> = index.unreadable_packs.iter().map(|(id, _)| *id).collect();
        *self.index.write().map_err(|_| crate::repo::poisoned())? = index;

        // Packs: presence, size, header.
        // Reclaimable packs are looked for only by a whole verify.
        let on_storage: HashSet<String> = match only {
            None => self.storage.list("data")?.into_iter().collect(),
            Some(_) => HashSet::new(),
        };
        let mut good_packs = Vec::new();
        let mut packs: Vec<(&Id, &u64)> = pack_sizes.iter().collect();
        packs.sort();
        for (id, size) in packs {
            if only.is_some_and(|only| !only.contains(id)) {
                continue;
            }
            let name = pack_name(id);
            let shown = self.storage.describe(&name).display().to_string();
            report.packs_checked += 1;
            match self.storage.size(&name)? {
                None => {
                    report.problems.push(Problem::MissingPack { pack: shown });
                    continue;
                }
                Some(actual) if actual != *size => {
                    report.problems.push(Problem::PackSize {
                        pack: shown,
                        expected: *size,
                        actual,
                    });
                    continue;
                }
                Some(_) => {}
            }
            match pack::read_header(&*self.storage, &self.keys, id, *size) {
                Ok(entries) => {
                    let listed: HashSet<(Id, u64)> =
                        entries.iter().map(|e| (e.id, e.offset)).collect();
                    let missing = by_pack
                        .get(id)
                        .map(|v| {
                            v.iter()
                                .filter(|l| !listed.contains(&(l.entry.id, l.entry.offset)))
                                .count()
                        })
                        .unwrap_or(0);
                    if missing > 0 {
                        report.problems.push(Problem::BadPackHeader {
                            pack: shown,
                            reason: format!("{missing} indexed blobs are not in the header"),
                        });
                    }
                    good_packs.push(*id);
                }
                Err(e) => report.problems.push(Problem::BadPackHeader {
                    pack: shown,
                    reason: e.to_string(),
                }),
            }
        }
        for name in &on_storage {
            let id = name.split('/').nth(1).and_then(Id::from_hex);
            if id.is_none_or(|id| !pack_sizes.contains_key(&id) && !unreadable.contains(&id)) {
                let rel = format!("data/{name}");
                report.reclaimable_bytes += self.storage.size(&rel)?.unwrap_or(0);
                report
                    .reclaimable_packs
                    .push(self.storage.describe(&rel).display().to_string());
            }
        }

        // Snapshots and their trees.
        let mut snapshots = Vec::new();
        for name in self.storage.list("snapshots")? {
            match self.read_snapshot(&name) {
                Ok(s) => {
                    if options.job.as_ref().is_none_or(|j| &s.job == j) {
                        snapshots.push(s);
                    }
                }
                Err(e) => report.problems.push(Problem::BadSnapshot {
                    file: self
                        .storage
                        .describe(&format!("snapshots/{name}"))
                        .display()
                        .to_string(),
                    reason: e.to_string(),
                }),
            }
        }
        let mut missing: HashSet<Id> = HashSet::new();
        let mut bad: HashMap<Id, (String, String)> = HashMap::new();
        let mut seen_trees = HashSet::new();
        for snap in &snapshots {
            report.snapshots_checked += 1;
            self.check_tree(&snap.tree, &mut seen_trees, &mut missing, &mut bad);
        }

        // Data.
        if options.read_data {
            let mut chosen = good_packs.clone();
            if let Some(pct) = options.subset_percent {
                let p = (pct / 100.0).clamp(0.0, 1.0);
                let mut rng = rand::thread_rng();
                chosen.retain(|_| rng.gen_bool(p));
                if chosen.is_empty() && !good_packs.is_empty() && p > 0.0 {
                    chosen.push(good_packs[rng.gen_range(0..good_packs.len())]);
                }
            }
            let results =
                self.read_packs(&chosen, &by_pack, options.threads.max(1), progress, started);
            report.packs_read = chosen.len() as u64;
            for (loc, outcome) in results {
                report.blobs_read += 1;
                if let Err(reason) = outcome {
                    bad.insert(
                        loc.entry.id,
                        (
                            self.storage
                                .describe(&pack_name(&loc.pack))
                                .display()
                                .to_string(),
                            reason,
                        ),
                    );
                }
            }
        }

        if !missing.is_empty() || !bad.is_empty() {
            let mut affected: HashMap<Id, Vec<Affected>> = HashMap::new();
            for snap in &snapshots {
                self.map_affected(
                    snap,
                    &snap.tree,
                    &mut Vec::new(),
                    &missing,
                    &bad,
                    &mut affected,
                );
            }
            let mut missing: Vec<Id> = missing.into_iter().collect();
            missing.sort();
            for id in missing {
                report.problems.push(Problem::MissingBlob {
                    id: id.to_hex(),
                    affected: affected.remove(&id).unwrap_or_default(),
                });
            }
            let mut bad: Vec<(Id, (String, String))> = bad.into_iter().collect();
            bad.sort();
            for (id, (pack, reason)) in bad {
                report.problems.push(Problem::BadBlob {
                    id: id.to_hex(),
                    pack,
                    reason,
                    affected: affected.remove(&id).unwrap_or_default(),
                });
            }
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Structure walk: each tree once across all snapshots.
    fn check_tree(
        &self,
        id: &Id,
        seen: &mut HashSet<Id>,
        missing: &mut HashSet<Id>,
        bad: &mut HashMap<Id, (String, String)>,
    ) {
        if !seen.insert(*id) {
            return;
        }
        let Some(loc) = self.locate(id) else {
            missing.insert(*id);
            return;
        };
        let tree = match self.read_tree(id, "verify") {
            Ok(t) => t,
            Err(e) => {
                let pack = self
                    .storage
                    .describe(&pack_name(&loc.pack))
                    .display()
                    .to_string();
                bad.insert(*id, (pack, e.to_string()));
                return;
            }
        };
        for node in &tree.nodes {
            for c in &node.content {
                if self.locate(c).is_none() {
                    missing.insert(*c);
                }
            }
            if let Some(sub) = &node.subtree {
                self.check_tree(sub, seen, missing, bad);
            }
        }
    }

    /// Finds the snapshot paths that need the missing or bad blobs.
    fn map_affected(
        &self,
        snap: &Snapshot,
        tree_id: &Id,
        path: &mut Vec<u8>,
        missing: &HashSet<Id>,
        bad: &HashMap<Id, (String, String)>,
        out: &mut HashMap<Id, Vec<Affected>>,
    ) {
        let shown = |p: &[u8]| {
            if p.is_empty() {
                "/".to_string()
            } else {
                std::ffi::OsStr::from_bytes(p)
                    .to_string_lossy()
                    .into_owned()
            }
        };
        if missing.contains(tree_id) || bad.contains_key(tree_id) {
            out.entry(*tree_id).or_default().push(Affected {
                snapshot: snap.id.clone(),
                path: format!("{} (directory)", shown(path)),
            });
            return;
        }
        let Ok(tree) = self.read_tree(tree_id, "verify") else {
            return;
        };
        for node in &tree.nodes {
            let len = path.len();
            path.push(b'/');
            path.extend_from_slice(&node.name);
            if node.kind == NodeKind::File {
                for c in &node.content {
                    if missing.contains(c) || bad.contains_key(c) {
                        let list = out.entry(*c).or_default();
                        let p = shown(path);
                        if list.len() < 1000
                            && !list.iter().any(|a| a.snapshot == snap.id && a.path == p)
                        {
                            list.push(Affected {
                                snapshot: snap.id.clone(),
                                path: p,
                            });
                        }
                    }
                }
            }
            if let Some(sub) = &node.subtree {
                self.map_affected(snap, sub, path, missing, bad, out);
            }
            path.truncate(len);
        }
    }

    /// Reads packs and checks every blob; returns one outcome per indexed blob.
    fn read_packs(
        &self,
        packs: &[Id],
        by_pack: &HashMap<Id, Vec<BlobLoc>>,
        threads: usize,
        progress: &mut dyn FnMut(&VerifyProgress),
        started: Instant,
    ) -> Vec<(BlobLoc, std::result::Result<(), String>)> {
        let next = AtomicUsize::new(0);
        let done = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        let results = Mutex::new(Vec::new());
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(id) = packs.get(i) else { return };
            let locs = by_pack.get(id).map(Vec::as_slice).unwrap_or(&[]);
            let local = self.check_pack(id, locs, &bytes);
            done.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut r) = results.lock() {
                r.extend(local);
            }
        };
        run_reporting(threads, &work, &mut || {
            progress(&VerifyProgress {
                packs_done: done.load(Ordering::Relaxed),
                packs_total: packs.len() as u64,
                bytes_done: bytes.load(Ordering::Relaxed),
                elapsed: started.elapsed(),
            });
        });
        results.into_inner().unwrap_or_default()
    }

    /// Checks the blobs `locs` of pack `id`, reading the pack in windows of up to
    /// [`VERIFY_WINDOW`] (a whole 16 MiB pack per thread was most of a verify's memory).
    /// A window that cannot be read is read again blob by blob, so that each blob gets
    /// its own verdict. Adds the bytes read to `bytes`.
    fn check_pack(
        &self,
        id: &Id,
        locs: &[BlobLoc],
        bytes: &AtomicU64,
    ) -> Vec<(BlobLoc, std::result::Result<(), String>)> {
        let name = pack_name(id);
        let mut sorted: Vec<&BlobLoc> = locs.iter().collect();
        sorted.sort_by_key(|l| l.entry.offset);
        let end_of = |l: &BlobLoc| l.entry.offset + u64::from(l.entry.length);
        let mut out = Vec::with_capacity(locs.len());
        let mut rest = &sorted[..];
        while let Some(first) = rest.first() {
            let start = first.entry.offset;
            let mut end = end_of(first);
            let mut take = 1;
            while let Some(next) = rest.get(take) {
                if end_of(next).max(end) - start > VERIFY_WINDOW {
                    break;
                }
                end = end.max(end_of(next));
                take += 1;
            }
            let (window, after) = rest.split_at(take);
            rest = after;
            let len = usize::try_from(end - start).unwrap_or(usize::MAX);
            match self.storage.read_at(&name, start, len) {
                Ok(data) => {
                    bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                    for loc in window {
                        let from = (loc.entry.offset - start) as usize;
                        let token = &data[from..from + loc.entry.length as usize];
                        out.push((**loc, self.check_token(loc, token)));
                    }
                }
                Err(_) => {
                    for loc in window {
                        let outcome = self
                            .storage
                            .read_at(&name, loc.entry.offset, loc.entry.length as usize)
                            .map_err(|e| e.to_string())
                            .and_then(|token| self.check_token(loc, &token));
                        out.push((**loc, outcome));
                    }
                }
            }
        }
        out
    }

    /// Decrypts, decompresses and hashes one blob's token.
    fn check_token(&self, loc: &BlobLoc, token: &[u8]) -> std::result::Result<(), String> {
        let plain = pack::open_blob(&self.keys, &loc.entry, token)?;
        if pack::blob_id(&self.id_key, &plain) == loc.entry.id {
            Ok(())
        } else {
            Err("content does not match its id".to_string())
        }
    }
}

/// Bytes of a pack a verify thread reads at once (a larger blob is read alone).
const VERIFY_WINDOW: u64 = 4 * 1024 * 1024;
