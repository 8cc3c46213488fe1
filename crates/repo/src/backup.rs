//! Backup: walk the sources on the calling thread, read, chunk and hash files on reader
//! threads, compress and encrypt on sealing threads, write them into packs on a packer
//! thread and finish (sync, name) each full pack on another; then index, then snapshot.
//!
//! A read-ahead thread (`prefetch`) walks the same sources a bounded distance ahead and
//! asks the kernel for the files coming next, so that a cold disk serves many at once.
//!
//! Memory is bounded by the channel capacities (derived from `max_in_flight_bytes`), one
//! chunk buffer per reader (twice the largest chunk, touched only as far as a file
//! needs), each thread's batch of small blobs (256 KiB) and two packs' write buffers
//! (1 MiB each on a local disk; whole packs on S3), never by data size. A file is never
//! held whole in memory.

mod chunk;
mod prefetch;
mod read;
mod walk;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::crypto::{KeySet, LANES};
use crate::error::{Error, Result};
use crate::format::{BackupStats, BlobKind, Id, IndexPack, Snapshot};
use crate::lock;
use crate::pack::{self, Blobs, PackWriter, SealedBlob};
use crate::repo::Repository;
use crate::snapshots::select_snapshot;
use chunk::{Chunks, Shared};
use walk::{Drafts, Walker};

/// Something to back up.
pub enum Source {
    /// A directory (or single file) on this host, stored under its absolute path.
    Path {
        /// The path to back up.
        root: PathBuf,
        /// Glob patterns to leave out; each is matched against the absolute path, the
        /// path relative to `root`, and the bare name.
        excludes: Vec<String>,
    },
    /// One stream stored as a file named `name` ('/'-separated) at the snapshot root.
    /// A read error fails the whole backup and no snapshot is written.
    Stream {
        /// Name in the snapshot, e.g. "databases/app.sqlite".
        name: String,
        /// The content.
        reader: Box<dyn Read + Send>,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Path { root, .. } => format!("path:{}", root.display()),
            Source::Stream { name, .. } => format!("stream:{name}"),
        }
    }
}

/// What to back up and how it is recorded.
#[derive(Debug)]
pub struct BackupPlan {
    /// Job name recorded in the snapshot.
    pub job: String,
    /// Host recorded in the snapshot (this host's name when `None`).
    pub host: Option<String>,
    /// Parent snapshot (id or unique prefix) to be incremental against.
    pub parent: Option<String>,
    /// The sources.
    pub sources: Vec<Source>,
}

/// Tunables of a backup run.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Threads that compress and encrypt, and as many that read files.
    pub threads: usize,
    /// Upper bound on chunk bytes queued between the stages.
    pub max_in_flight_bytes: usize,
    /// zstd level.
    pub compression_level: i32,
    /// How often the progress callback is called at most.
    pub progress_interval: Duration,
    /// Set to true to stop the backup (it fails with [`Error::Cancelled`]).
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            max_in_flight_bytes: 16 * 1024 * 1024,
            compression_level: 3,
            progress_interval: Duration::from_millis(250),
            cancel: None,
        }
    }
}

/// A progress report during a backup.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct BackupProgress {
    /// Files (and streams) done so far.
    pub files_done: u64,
    /// Files seen so far (the walk runs ahead only one directory at a time).
    pub files_seen: u64,
    /// Content bytes processed (read, or reused unchanged from the parent).
    pub bytes_done: u64,
    /// Total size of the parent snapshot, a guess for the total (for an ETA).
    pub bytes_expected: Option<u64>,
    /// Bytes added to the repository so far (queued for packing).
    pub bytes_added: u64,
    /// The file being processed.
    pub current_path: String,
    /// Time since the start.
    pub elapsed: Duration,
}

/// The result of a backup.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BackupSummary {
    /// The snapshot written.
    pub snapshot: Snapshot,
    /// Things the operator should know: files that changed while read, unreadable
    /// files that were skipped, stale locks broken.
    pub warnings: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

/// A chunk to seal (its bytes are in the batch, see [`Blobs`]).
struct Job {
    id: Id,
    kind: BlobKind,
}

/// What the packer hands back.
struct PackerOutcome {
    bytes_added: u64,
    blobs_added: u64,
}

/// Seals batches until the readers are done or the packer stops. A batch of a large
/// file holds one chunk, and one chunk is one CBC chain, so the batches already queued
/// are taken along, up to [`LANES`] blobs or `gather` bytes, and their tokens are
/// encrypted side by side. It never waits for more than the first batch.
fn seal_batches(
    rx: &Receiver<Blobs<Job>>,
    tx: &Sender<Blobs<SealedBlob>>,
    keys: &KeySet,
    level: i32,
    gather: usize,
) {
    let mut batches = Vec::new();
    for first in rx {
        let (mut blobs, mut bytes) = (first.len(), first.bytes_len());
        batches.push(first);
        while blobs < LANES && bytes < gather {
            let Ok(next) = rx.try_recv() else { break };
            blobs += next.len();
            bytes += next.bytes_len();
            batches.push(next);
        }
        let all: Vec<_> = batches
            .iter()
            .flat_map(Blobs::iter)
            .map(|(job, data)| (job.id, job.kind, data))
            .collect();
        let sealed = pack::seal_all(keys, all, level, bytes);
        batches.clear();
        if tx.send(sealed).is_err() {
            break;
        }
    }
}

impl Repository {
    /// Runs a backup and writes a snapshot. See [`Source`] for what each source stores.
    pub fn backup(
        &self,
        plan: BackupPlan,
        options: &BackupOptions,
        progress: &mut dyn FnMut(&BackupProgress),
    ) -> Result<BackupSummary> {
        let started = Instant::now();
        let time_ms = lock::now_ms();
        let mut warnings = Vec::new();
        let _lock = self.lock(false, &mut warnings)?;
        // See what other processes stored since we opened.
        self.refresh()?;
        if plan.sources.is_empty() {
            return Err(Error::InvalidPlan("no sources".into()));
        }
        // A parent that is gone (forgotten by retention) only costs reading everything.
        let parent = match &plan.parent {
            Some(sel) => match select_snapshot(&self.snapshots()?, sel) {
                Ok(p) => Some(p.clone()),
                Err(Error::NoSnapshot(_)) => {
                    warnings.push(format!(
                        "parent snapshot {sel} is not in the repository; every file is read"
                    ));
                    None
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        let parent_root = match &parent {
            Some(p) => Some(self.read_tree(&p.tree, "parent snapshot root")?),
            None => None,
        };
        let source_names: Vec<String> = plan.sources.iter().map(Source::describe).collect();

        let threads = options.threads.max(1);
        let chunker = self.chunker();
        let job_cap = (options.max_in_flight_bytes / chunker.max as usize).max(2);
        let (job_tx, job_rx) = bounded::<Blobs<Job>>(job_cap);
        let (seal_tx, seal_rx) = bounded::<Blobs<SealedBlob>>(threads * 2);
        // Enough files queued that no reader waits for the walk between two.
        let (task_tx, task_rx) = bounded::<read::Task>(threads * 64);
        let (outcome_tx, outcome_rx) = unbounded::<read::Outcome>();
        let shared = Shared {
            repo: self,
            chunker,
            pending: Mutex::new(HashSet::new()),
            bytes_read: AtomicU64::new(0),
            bytes_added: AtomicU64::new(0),
            cancel: options.cancel.clone(),
            abort: AtomicBool::new(false),
        };
        // The read-ahead's view of the sources; one it cannot resolve fails the walk.
        let ahead_sources: Vec<prefetch::Source> = plan
            .sources
            .iter()
            .map(|s| match s {
                Source::Path { root, excludes } => walk::absolute(root)
                    .and_then(|root| {
                        let globs = walk::build_excludes(&root, excludes)?;
                        Ok(prefetch::Source::Path { root, globs })
                    })
                    .unwrap_or(prefetch::Source::Stream),
                Source::Stream { .. } => prefetch::Source::Stream,
            })
            .collect();
        let files_started = AtomicU64::new(0);
        let walk_over = AtomicBool::new(false);
        let window = prefetch::Window {
            started: &files_started,
            stop: &walk_over,
            content: parent_root.is_none(),
        };

        let (walk, packed) = std::thread::scope(|s| {
            for _ in 0..threads {
                let rx = job_rx.clone();
                let tx = seal_tx.clone();
                let level = options.compression_level;
                let keys = &self.keys;
                let gather = chunker.max as usize * 2;
                spawn(s, "drd-seal", move || {
                    seal_batches(&rx, &tx, keys, level, gather);
                });
            }
            drop(seal_tx);
            drop(job_rx);
            let shared = &shared;
            let packer = spawn(s, "drd-pack", move || self.run_packer(&seal_rx, shared));
            let readers: Vec<_> = (0..threads)
                .map(|_| {
                    let (jobs, tasks, outcomes) =
                        (job_tx.clone(), task_rx.clone(), outcome_tx.clone());
                    spawn(s, "drd-read", move || {
                        read::run(shared, jobs, tasks, outcomes)
                    })
                })
                .collect();
            drop((task_rx, outcome_tx));
            let window = &window;
            let ahead_sources = &ahead_sources;
            spawn(s, "drd-readahead", move || {
                prefetch::run(ahead_sources, window);
            });

            let mut walker = Walker {
                shared,
                chunks: Chunks::new(shared, job_tx),
                tasks: task_tx,
                outcomes: outcome_rx,
                drafts: Drafts::default(),
                hardlinks: HashMap::new(),
                linking: HashSet::new(),
                stats: BackupStats::default(),
                bytes_reused: 0,
                warnings: Vec::new(),
                progress,
                last_progress: Instant::now(),
                interval: options.progress_interval,
                started,
                report: BackupProgress {
                    bytes_expected: parent.as_ref().map(|p| p.stats.total_size),
                    ..BackupProgress::default()
                },
                time_ns: time_ms.saturating_mul(1_000_000),
                files_started: &files_started,
            };
            // Stops the read-ahead however the walk ends, a panic included.
            let over = prefetch::StopOnDrop(&walk_over);
            let result = walker.run(plan.sources, parent_root.as_ref());
            drop(over);
            if result.is_err() {
                shared.abort.store(true, Ordering::SeqCst);
            }
            let Walker {
                chunks,
                tasks,
                mut stats,
                warnings,
                ..
            } = walker;
            drop((chunks, tasks));
            // A reader that could not hand on its last blobs fails the backup.
            let mut result = result;
            for reader in readers {
                let ended = reader
                    .join()
                    .unwrap_or_else(|_| Err(Error::Internal("file reader thread panicked".into())));
                if let (Ok(_), Err(e)) = (&result, ended) {
                    result = Err(e);
                }
            }
            if result.is_err() {
                shared.abort.store(true, Ordering::SeqCst);
            }
            stats.bytes_read = shared.bytes_read.load(Ordering::Relaxed);
            let packed = packer
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("packer thread panicked".into())));
            (result.map(|tree| (tree, stats, warnings)), packed)
        });
        let packed = packed?;
        // The packer's error first: when it fails, the walker only sees a closed channel.
        let (tree, mut stats, walk_warnings) = walk?;
        warnings.extend(walk_warnings);
        stats.bytes_added = packed.bytes_added;
        stats.blobs_added = packed.blobs_added;
        let snapshot = Snapshot {
            id: Id::random().to_hex(),
            job: plan.job,
            host: plan.host.unwrap_or_else(lock::hostname),
            time_ms,
            parent: parent.map(|p| p.id),
            sources: source_names,
            tree,
            stats,
        };
        self.write_snapshot(&snapshot)?;
        Ok(BackupSummary {
            snapshot,
            warnings,
            elapsed: started.elapsed(),
        })
    }

    /// Packs sealed blobs on this thread (each goes to the pack's temporary file as it
    /// comes) and finishes the full packs on another (`write_packs`: header, fsync,
    /// rename), so that sealing goes on while a pack is synced: the fsyncs of a 1 GiB
    /// first backup took over a second, and the sealers stalled behind each one.
    fn run_packer(
        &self,
        rx: &Receiver<Blobs<SealedBlob>>,
        shared: &Shared<'_>,
    ) -> Result<PackerOutcome> {
        let (full_tx, full_rx) = bounded::<PackWriter<'_>>(0);
        std::thread::scope(|s| {
            let writer = spawn(s, "drd-pack-write", move || {
                self.write_packs(&full_rx, &shared.pending)
            });
            let storage = &*self.storage;
            let mut filling = PackWriter::new(storage, self.pack_size());
            let mut blobs_added = 0u64;
            let mut stopped = None;
            'batches: for batch in rx {
                for (blob, token) in batch.iter() {
                    if let Err(e) = filling.add(blob, token) {
                        stopped = Some(e);
                        break 'batches;
                    }
                    blobs_added += 1;
                    if filling.is_full() {
                        let next = PackWriter::new(storage, self.pack_size());
                        let full = std::mem::replace(&mut filling, next);
                        if full_tx.send(full).is_err() {
                            stopped = Some(chunk::pipeline_stopped());
                            break 'batches;
                        }
                    }
                }
            }
            if stopped.is_some() {
                // The sealers see a closed channel and stop; the walk then fails.
                shared.abort.store(true, Ordering::SeqCst);
            } else if !shared.abort.load(Ordering::SeqCst) && !filling.is_empty() {
                // A send that fails means the writer failed; its error is returned below.
                let _ = full_tx.send(filling);
            }
            drop(full_tx);
            let bytes_added = writer
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("pack writer thread panicked".into())))?;
            match stopped {
                Some(e) => Err(e),
                None => Ok(PackerOutcome {
                    bytes_added,
                    blobs_added,
                }),
            }
        })
    }

    /// Finishes full packs; writes an index file every 16 packs (256 MiB by default, so
    /// a killed backup's work is mostly reused by the next run) and at the end. Packs
    /// already written are indexed even when a later one fails, so that the next run
    /// can reuse their blobs.
    ///
    /// Each index file written goes into the in-memory index at once and its blobs
    /// leave `pending`: nothing of the run is kept twice until its end (at a million
    /// small files that was over 100 MiB).
    fn write_packs(
        &self,
        rx: &Receiver<PackWriter<'_>>,
        pending: &Mutex<HashSet<Id>>,
    ) -> Result<u64> {
        const INDEX_EVERY: usize = 16;
        let mut unindexed = Vec::new();
        let mut bytes_added = 0u64;
        for mut full in rx {
            match full.flush(&self.keys) {
                Ok(p) => {
                    bytes_added += p.size;
                    unindexed.push(p);
                }
                Err(e) => {
                    self.index_written(&mut unindexed, pending)?;
                    return Err(e);
                }
            }
            if unindexed.len() >= INDEX_EVERY {
                self.index_written(&mut unindexed, pending)?;
            }
        }
        self.index_written(&mut unindexed, pending)?;
        Ok(bytes_added)
    }

    /// Writes an index file of `packs`, then adds them to the in-memory index.
    fn index_written(
        &self,
        packs: &mut Vec<IndexPack>,
        pending: &Mutex<HashSet<Id>>,
    ) -> Result<()> {
        self.write_index(packs)?;
        let mut index = self.index.write().map_err(|_| crate::repo::poisoned())?;
        let mut pending = pending.lock().map_err(|_| crate::repo::poisoned())?;
        for p in packs.drain(..) {
            for e in &p.entries {
                pending.remove(&e.id);
            }
            index.add(&p);
        }
        Ok(())
    }
}

/// Starts a scoped thread with a name, so that `top -H` and `perf` tell a backup's
/// threads apart. Like `Scope::spawn`, panics if the system cannot start a thread.
fn spawn<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: &str,
    f: impl FnOnce() -> T + Send + 'scope,
) -> std::thread::ScopedJoinHandle<'scope, T> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn_scoped(scope, f)
        .unwrap_or_else(|e| panic!("could not start a {name} thread: {e}"))
}
