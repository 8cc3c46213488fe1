//! The restore's work cut into parts for the writer threads.
//!
//! A file is one part, written whole by one thread, unless it is large: then it is cut
//! at blob boundaries into runs of about [`PART_BYTES`], each written at its offset by
//! whichever thread takes it, so one database or disk image is restored by every
//! thread and not by one while the others wait. The thread that finishes a file's last
//! outstanding part sets its length, metadata and, when part of it could not be read,
//! its `.damaged` name: only then is all of its content written.

use std::fs::File;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use super::fallback::Reader;
use crate::format::Node;

/// A file at least twice this large is cut into parts of about this size. Large enough
/// that a part's blobs are read from a few packs in sequence, small enough that four
/// threads share a file of a few hundred MiB evenly.
pub(super) const PART_BYTES: u64 = 16 << 20;

/// One piece of work: blobs `blobs` of file `file`, written from `offset`.
pub(super) struct Part {
    pub offset: u64,
    pub file: u32,
    pub blobs: Range<u32>,
    /// The shared state of a file cut into parts; `None` for a file written whole.
    pub split: Option<u32>,
}

/// A file cut into parts, shared by the threads that write them.
pub(super) struct Split {
    state: Mutex<SplitState>,
}

struct SplitState {
    file: Option<Arc<File>>,
    parts_left: u32,
    /// The first reason a part could not be read.
    damage: Option<String>,
    /// The last blob was left as a hole (zeros, or unreadable): the length must be set.
    tail_hole: bool,
}

/// What writing a run of blobs found: a whole file's, or one part's.
pub(super) struct Run {
    /// Where the run ends.
    pub end: u64,
    /// Its last blob was left as a hole.
    pub tail_hole: bool,
    /// The first reason a blob could not be read.
    pub damage: Option<String>,
}

/// A file whose last part is done: all its content is written.
pub(super) struct Finished {
    pub file: Arc<File>,
    pub damage: Option<String>,
    pub tail_hole: bool,
}

impl Split {
    fn new(parts: usize) -> Split {
        Split {
            state: Mutex::new(SplitState {
                file: None,
                parts_left: parts as u32,
                damage: None,
                tail_hole: false,
            }),
        }
    }

    /// The file, opened by `create` for the first part that asks.
    pub fn file<E>(&self, create: impl FnOnce() -> Result<File, E>) -> Result<Arc<File>, E> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = &state.file {
            return Ok(Arc::clone(f));
        }
        let f = Arc::new(create()?);
        state.file = Some(Arc::clone(&f));
        Ok(f)
    }

    /// Records one part as written (`last`: the part holding the file's last blob),
    /// with the writer's handle of the file; the file when this was the last part
    /// outstanding.
    pub fn done(&self, file: Arc<File>, run: Run, last: bool) -> Option<Finished> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.damage.is_none() {
            state.damage = run.damage;
        }
        if last {
            state.tail_hole = run.tail_hole;
        }
        state.parts_left -= 1;
        if state.parts_left > 0 {
            return None;
        }
        state.file = None;
        Some(Finished {
            file,
            damage: state.damage.take(),
            tail_hole: state.tail_hole,
        })
    }
}

/// The restore's parts in the order given, and the shared states of the files cut.
pub(super) fn cut(
    reader: &Reader<'_>,
    files: &[(std::path::PathBuf, Node)],
    order: &[usize],
    threads: usize,
) -> (Vec<Part>, Vec<Split>) {
    let mut parts = Vec::with_capacity(order.len());
    let mut splits = Vec::new();
    for &i in order {
        let node = &files[i].1;
        let runs = if threads > 1 && node.size >= 2 * PART_BYTES {
            runs(reader, node)
        } else {
            None
        };
        match runs {
            Some(runs) => {
                let split = splits.len() as u32;
                splits.push(Split::new(runs.len()));
                parts.extend(runs.into_iter().map(|(blobs, offset)| Part {
                    offset,
                    file: i as u32,
                    blobs,
                    split: Some(split),
                }));
            }
            None => parts.push(Part {
                offset: 0,
                file: i as u32,
                blobs: 0..node.content.len() as u32,
                split: None,
            }),
        }
    }
    (parts, splits)
}

/// A large file's blobs in runs of about [`PART_BYTES`], with the offset of each. `None`
/// when a blob's length is not in any index, or the lengths do not add up to the
/// file's size: the file is then written whole, from blob to blob, as it comes.
fn runs(reader: &Reader<'_>, node: &Node) -> Option<Vec<(Range<u32>, u64)>> {
    let mut runs = Vec::new();
    let (mut start, mut start_offset, mut offset) = (0u32, 0u64, 0u64);
    for (i, id) in node.content.iter().enumerate() {
        offset += u64::from(reader.locate(id)?.entry.raw_len);
        if offset - start_offset >= PART_BYTES {
            let end = i as u32 + 1;
            runs.push((start..end, start_offset));
            (start, start_offset) = (end, offset);
        }
    }
    if offset != node.size {
        return None;
    }
    if (start as usize) < node.content.len() {
        runs.push((start..node.content.len() as u32, start_offset));
    }
    Some(runs)
}
