//! Chunking and queueing new blobs: what the walk (streams, trees) and each file reader
//! do, each with its own buffer and batch, over one set of blobs queued in this run.

use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;

use super::Job;
use crate::error::{Error, Result};
use crate::format::{BlobKind, ChunkerParams, Id};
use crate::pack::{self, Blobs};
use crate::repo::Repository;

/// Bytes of small blobs sent to the sealing workers in one message (at most).
///
/// A batch of a large file's chunks holds one; the sealer takes the queued batches along
/// to encrypt several side by side (`seal_batches`). Batches of two largest chunks did
/// that too, but raised the daemon's peak on `random` from 67 to 104-122 MiB.
const BATCH_BYTES: usize = 256 * 1024;
/// Blobs sent in one message (at most).
const BATCH_JOBS: usize = 128;

pub(super) fn pipeline_stopped() -> Error {
    Error::Internal("the pack writer stopped".into())
}

/// What every thread that makes blobs shares in one backup.
pub(super) struct Shared<'a> {
    pub repo: &'a Repository,
    pub chunker: ChunkerParams,
    /// Blobs queued in this run (not yet in the index).
    pub pending: Mutex<HashSet<Id>>,
    /// Content bytes read and chunked so far.
    pub bytes_read: AtomicU64,
    /// Bytes of new blobs queued for packing so far.
    pub bytes_added: AtomicU64,
    /// The operator's cancel flag.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Set when the backup failed elsewhere: stop early, the error is already known.
    pub abort: AtomicBool,
}

impl Shared<'_> {
    /// Fails when the run was cancelled or has failed elsewhere.
    pub fn check_stop(&self) -> Result<()> {
        if matches!(&self.cancel, Some(c) if c.load(Ordering::Relaxed)) {
            return Err(Error::Cancelled);
        }
        if self.abort.load(Ordering::Relaxed) {
            return Err(pipeline_stopped());
        }
        Ok(())
    }
}

/// Why chunking a stream stopped early.
pub(super) enum ChunkError {
    /// Reading the source failed.
    Io(std::io::Error),
    /// The pipeline stopped or the run was cancelled.
    Stopped(Error),
}

/// One thread's chunker: a buffer of twice the largest chunk and a batch of new blobs.
pub(super) struct Chunks<'a> {
    buf: Vec<u8>,
    out: Outbox<'a>,
}

/// New blobs on their way to the sealing workers.
struct Outbox<'a> {
    shared: &'a Shared<'a>,
    tx: Sender<Blobs<Job>>,
    batch: Blobs<Job>,
}

impl<'a> Chunks<'a> {
    pub fn new(shared: &'a Shared<'a>, tx: Sender<Blobs<Job>>) -> Chunks<'a> {
        Chunks {
            // Pages are only touched as far as the largest file read needs them.
            buf: vec![0u8; shared.chunker.max as usize * 2],
            out: Outbox {
                shared,
                tx,
                batch: Blobs::with_capacity(0),
            },
        }
    }

    /// Chunks a stream, queueing new chunks; returns the chunk ids in order and the
    /// size. `size` is a regular file's size as stat saw it: a read that comes back
    /// short at exactly that size is taken as the end, which saves the read that would
    /// return 0 (a system call per file). Had the file grown meanwhile, the reader's
    /// fstat after reading sees a new size and reads it again.
    pub fn stream(
        &mut self,
        r: &mut dyn Read,
        size: Option<u64>,
    ) -> Result<(Vec<Id>, u64), ChunkError> {
        let mut ids = Vec::new();
        let mut len = 0usize;
        let mut eof = false;
        let mut total = 0u64;
        loop {
            while !eof && len < self.buf.len() {
                let asked = self.buf.len() - len;
                match r.read(&mut self.buf[len..]) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        len += n;
                        eof = n < asked && size == Some(total + len as u64);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(ChunkError::Io(e)),
                }
            }
            if len == 0 {
                break;
            }
            let mut consumed = 0usize;
            for (off, length) in final_cuts(&self.buf[..len], eof, self.out.shared.chunker) {
                let id = self.data_chunk(off, length).map_err(ChunkError::Stopped)?;
                ids.push(id);
                consumed = off + length;
            }
            total += consumed as u64;
            self.buf.copy_within(consumed..len, 0);
            len -= consumed;
            if eof && len == 0 {
                break;
            }
            self.out.shared.check_stop().map_err(ChunkError::Stopped)?;
        }
        Ok((ids, total))
    }

    fn data_chunk(&mut self, off: usize, len: usize) -> Result<Id> {
        let data = &self.buf[off..off + len];
        self.out
            .shared
            .bytes_read
            .fetch_add(len as u64, Ordering::Relaxed);
        let id = pack::blob_id(&self.out.shared.repo.id_key, data);
        if self.out.is_new(id) {
            self.out.queue(id, BlobKind::Data, data)?;
        }
        Ok(id)
    }

    /// Stores an encoded tree.
    pub fn tree(&mut self, data: &[u8]) -> Result<Id> {
        let id = pack::blob_id(&self.out.shared.repo.id_key, data);
        if self.out.is_new(id) {
            self.out.queue(id, BlobKind::Tree, data)?;
        }
        Ok(id)
    }

    /// Sends the queued blobs.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush()
    }
}

/// The chunks of `data` whose ends are known: all of them at the end of the stream,
/// else those that end before the data does. FastCDC's cut after a chunk's start
/// depends only on the bytes up to the cut (the mask changes at a fixed distance from
/// the start), so a cut found inside the data is where it would be with more data
/// behind it; only the last chunk, ended by the data running out, may grow. Keeping
/// just that one for the next read moves a fraction of a chunk per read, where keeping
/// everything from the last largest chunk's start moved most of the bytes read.
fn final_cuts(data: &[u8], eof: bool, chunker: ChunkerParams) -> Vec<(usize, usize)> {
    let ChunkerParams { min, avg, max } = chunker;
    fastcdc::v2020::FastCDC::new(data, min, avg, max)
        .map(|c| (c.offset, c.length))
        .take_while(|(off, length)| eof || off + length < data.len())
        .collect()
}

impl Outbox<'_> {
    /// True the first time a blob that is not in the repository is seen in this run.
    fn is_new(&self, id: Id) -> bool {
        !self.shared.repo.has_blob(&id)
            && self
                .shared
                .pending
                .lock()
                .map(|mut p| p.insert(id))
                .unwrap_or(true)
    }

    /// Queues a blob for the sealing workers. Small blobs (most files are one small
    /// chunk) are sent in batches: one channel message per blob cost more in wake-ups
    /// and spinning than sealing them did, and a sealer encrypts a batch's blobs side
    /// by side. A batch holds at most one largest chunk's worth of bytes, so the
    /// channel's bound on bytes in flight holds as before.
    fn queue(&mut self, id: Id, kind: BlobKind, data: &[u8]) -> Result<()> {
        let limit = (self.shared.chunker.max as usize).min(BATCH_BYTES);
        if !self.batch.is_empty() && self.batch.bytes_len() + data.len() > limit {
            self.flush()?;
        }
        if kind == BlobKind::Data {
            self.shared
                .bytes_added
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        if self.batch.is_empty() {
            self.batch = Blobs::with_capacity(limit.max(data.len()));
        }
        self.batch.push(Job { id, kind }, data);
        if self.batch.bytes_len() >= limit || self.batch.len() >= BATCH_JOBS {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the queued blobs.
    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Blobs::with_capacity(0));
        self.tx.send(batch).map_err(|_| pipeline_stopped())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read in pieces of any size, a stream is cut where it is cut whole: the same
    /// chunks, so the same blob ids and the same deduplication against earlier backups.
    #[test]
    fn cuts_over_a_stream_read_in_pieces_are_the_cuts_of_the_whole() {
        let chunker = ChunkerParams {
            min: 1024,
            avg: 4096,
            max: 16384,
        };
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Random bytes with runs of zeros (forced cuts at the largest size) between.
        let mut data = Vec::new();
        for i in 0..40 {
            let n = (next() % 30_000) as usize;
            if i % 5 == 0 {
                data.resize(data.len() + n + 20_000, 0);
            } else {
                data.extend((0..n).map(|_| next() as u8));
            }
        }
        let whole = final_cuts(&data, true, chunker);
        for piece in [1usize, 7, 4096, 10_000, 40_000] {
            // The reader's loop: a buffer of two largest chunks, refilled in pieces.
            let mut cuts = Vec::new();
            let (mut start, mut len, mut pos) = (0usize, 0usize, 0usize);
            let cap = chunker.max as usize * 2;
            loop {
                let take = piece.min(cap - len).min(data.len() - pos);
                pos += take;
                len += take;
                let eof = pos == data.len();
                if len < cap && !eof {
                    continue;
                }
                let mut consumed = 0;
                for (off, length) in final_cuts(&data[start..start + len], eof, chunker) {
                    cuts.push((start + off, length));
                    consumed = off + length;
                }
                start += consumed;
                len -= consumed;
                if eof && len == 0 {
                    break;
                }
            }
            assert_eq!(cuts, whole, "read in pieces of {piece} bytes");
        }
    }
}
