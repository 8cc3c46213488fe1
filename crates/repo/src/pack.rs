//! Blob encoding and packs.
//!
//! A blob is stored as a raw Fernet token whose plaintext is either a zstd frame or the
//! blob itself (when compression would not help; the `compressed` flag in the pack header
//! and index says which). A pack is the tokens back to back, then the header token (an
//! encrypted [`PackHeader`]), then the header token's length as a little-endian u32.
//! The pack's name is the BLAKE3 hash of its bytes.

use std::cell::RefCell;

use crate::crypto::KeySet;
use crate::error::{Error, Result};
use crate::format::{BlobKind, Id, IndexPack, PackEntry, PackHeader};
use crate::storage::{KeptOpen, Staged, Storage};

/// Bytes sampled to decide whether a blob is worth compressing.
const SAMPLE: usize = 16 * 1024;

/// The repository's blob id: BLAKE3 keyed with the repository's secret id key.
pub(crate) fn blob_id(id_key: &[u8; 32], data: &[u8]) -> Id {
    Id(*blake3::keyed_hash(id_key, data).as_bytes())
}

/// A sealed blob's record; its token is kept apart (in a [`Blobs`] batch, or by the
/// caller).
pub(crate) struct SealedBlob {
    pub id: Id,
    pub kind: BlobKind,
    pub compressed: bool,
    pub raw_len: u32,
}

/// Blobs back to back in one buffer, with a record each: one allocation per batch, not
/// several per blob. On small files a backup allocated and freed a few buffers per
/// file, each freed by another thread than made it, all on the one arena's lock (see
/// drd-memory), and waiting for that lock was a tenth of the backup's CPU.
pub(crate) struct Blobs<T> {
    bytes: Vec<u8>,
    /// Each record and where its bytes end.
    items: Vec<(T, usize)>,
}

impl<T> Blobs<T> {
    /// An empty batch for about `bytes` bytes.
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Blobs {
            bytes: Vec::with_capacity(bytes),
            items: Vec::new(),
        }
    }

    /// Adds a record and its bytes.
    pub(crate) fn push(&mut self, item: T, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        self.items.push((item, self.bytes.len()));
    }

    /// Adds a record whose bytes `write` appends to the buffer.
    pub(crate) fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>) -> T) {
        let item = write(&mut self.bytes);
        self.items.push((item, self.bytes.len()));
    }

    /// Bytes held.
    pub(crate) fn bytes_len(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Each record's bytes, in order, to change in place.
    pub(crate) fn bytes_each_mut(&mut self) -> Vec<&mut [u8]> {
        let mut rest = &mut self.bytes[..];
        let mut start = 0;
        let mut each = Vec::with_capacity(self.items.len());
        for (_, end) in &self.items {
            let (bytes, tail) = std::mem::take(&mut rest).split_at_mut(end - start);
            each.push(bytes);
            rest = tail;
            start = *end;
        }
        each
    }

    /// The records with their bytes, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&T, &[u8])> {
        let mut start = 0;
        self.items.iter().map(move |(item, end)| {
            let data = &self.bytes[start..*end];
            start = *end;
            (item, data)
        })
    }
}

/// Compresses (when it helps) and encrypts one blob, appending its token to `token`.
#[cfg(test)]
pub(crate) fn seal(
    keys: &KeySet,
    id: Id,
    kind: BlobKind,
    data: &[u8],
    level: i32,
    token: &mut Vec<u8>,
) -> SealedBlob {
    let sealed = seal_all(keys, [(id, kind, data)], level, 0);
    token.extend_from_slice(&sealed.bytes);
    sealed
        .items
        .into_iter()
        .map(|(blob, _)| blob)
        .next()
        .expect("one blob sealed")
}

/// Compresses (when it helps) and encrypts blobs into their tokens, all tokens
/// encrypted side by side (see `crypto::lanes`). `bytes` is about how many bytes the
/// blobs hold.
pub(crate) fn seal_all<'d>(
    keys: &KeySet,
    blobs: impl IntoIterator<Item = (Id, BlobKind, &'d [u8])>,
    level: i32,
    bytes: usize,
) -> Blobs<SealedBlob> {
    let blobs = blobs.into_iter();
    let mut sealed =
        Blobs::with_capacity(bytes + blobs.size_hint().0 * crate::crypto::TOKEN_OVERHEAD);
    SCRATCH.with(|cell| {
        let mut scratch = cell.borrow_mut();
        for (id, kind, data) in blobs {
            sealed.push_with(|token| {
                let compressed = compress(data, level, &mut scratch);
                keys.begin_token(if compressed { &scratch } else { data }, token);
                SealedBlob {
                    id,
                    kind,
                    compressed,
                    raw_len: u32::try_from(data.len()).unwrap_or(u32::MAX),
                }
            });
        }
    });
    keys.finish_tokens(&mut sealed.bytes_each_mut());
    sealed
}

/// zstd-compresses `data` into `out` unless quick samples show it is incompressible
/// (already compressed or encrypted input), or the result would not be smaller; true
/// when `out` holds the compressed blob.
///
/// Samples are taken at four places, not just the start: a chunk of a disk image or a
/// database often mixes random blocks with text and zeros, and one random sample
/// would store the whole chunk raw.
fn compress(data: &[u8], level: i32, out: &mut Vec<u8>) -> bool {
    if data.len() < 64 {
        return false;
    }
    out.clear();
    if data.len() > 4 * SAMPLE {
        out.reserve(zstd::zstd_safe::compress_bound(SAMPLE));
        let compressible = (0..4).any(|i| {
            let start = data.len() / 4 * i;
            let sample = &data[start..start + SAMPLE];
            with_compressor(1, |c| c.compress_to_buffer(sample, &mut *out))
                .is_ok_and(|n| n * 100 <= SAMPLE * 97)
        });
        if !compressible {
            return false;
        }
    }
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(data.len()));
    with_compressor(level, |c| c.compress_to_buffer(data, &mut *out)).is_ok_and(|n| n < data.len())
}

thread_local! {
    /// This thread's buffer for a compressed blob before it is encrypted; it goes with
    /// the thread (a backup's sealers are its own).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// This thread's zstd contexts. A fresh context per blob costs an allocation and
    /// a table reset of several hundred KiB; for the small files that make up most of
    /// a tree that was more than compressing them. Threads that seal or open blobs are
    /// the engine's own, and their contexts go with them.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn with_compressor<T>(
    level: i32,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let c = match slot.as_mut() {
            Some(c) => {
                c.set_compression_level(level)?;
                c
            }
            None => slot.insert(zstd::bulk::Compressor::new(level)?),
        };
        f(c)
    })
}

/// Decompresses `data` into `out` (replacing what it held), at most `capacity` bytes.
fn decompress_into(data: &[u8], capacity: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        out.clear();
        out.reserve(capacity);
        d.decompress_to_buffer(data, out).map(drop)
    })
}

/// Decrypts and decompresses a blob token; `Err(reason)` if it is damaged.
pub(crate) fn open_blob(
    keys: &KeySet,
    entry: &PackEntry,
    token: &[u8],
) -> std::result::Result<Vec<u8>, String> {
    let (mut plain, mut data) = (Vec::new(), Vec::new());
    open_parts(keys, entry, token, &mut plain, &mut data)?;
    Ok(data)
}

/// Buffers a reader of many blobs reuses from one to the next. The restore's threads
/// share one allocator arena (drd-memory): with three fresh blob-sized buffers per blob,
/// malloc and free were 6.5 % of the CPU of restoring 500,000 small files, 3.8 % with
/// these reused (bench/README.md, 2026-12-03).
#[derive(Default)]
pub(crate) struct BlobBuf {
    /// The raw token as read from the pack.
    pub token: Vec<u8>,
    /// The pack last read, kept open for the next blob in it.
    pub pack: KeptOpen,
    plain: Vec<u8>,
    /// The blob's plaintext, once opened.
    pub data: Vec<u8>,
}

impl BlobBuf {
    /// Decrypts and decompresses `self.token` into `self.data`; `Err(reason)` if it
    /// is damaged.
    pub(crate) fn open(
        &mut self,
        keys: &KeySet,
        entry: &PackEntry,
    ) -> std::result::Result<(), String> {
        open_parts(keys, entry, &self.token, &mut self.plain, &mut self.data)
    }
}

fn open_parts(
    keys: &KeySet,
    entry: &PackEntry,
    token: &[u8],
    plain: &mut Vec<u8>,
    data: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    if !keys.decrypt_into(token, plain) {
        return Err("does not decrypt (damaged, or written with another key)".to_string());
    }
    if entry.compressed {
        decompress_into(plain, entry.raw_len as usize, data)
            .map_err(|e| format!("does not decompress: {e}"))
    } else {
        std::mem::swap(plain, data);
        Ok(())
    }
}

/// Repository-relative name of a pack file.
pub(crate) fn pack_name(id: &Id) -> String {
    let h = id.to_hex();
    format!("data/{}/{}", &h[..2], h)
}

/// Bytes the pack writer collects before it hands them on and hashes them: small blobs
/// one by one were a system call each, and BLAKE3 fed small pieces compresses one
/// block at a time where a large update hashes many chunks at once (the incremental
/// hash was most of the pack writer's CPU on small files).
const WRITE_BYTES: usize = 1024 * 1024;

/// A token this large is written (and hashed) as it is, not copied into the buffer
/// first: a system call and a hash update per 64 KiB cost little, and copying the
/// large tokens of a large file was a copy of all its bytes.
const DIRECT_BYTES: usize = 64 * 1024;

/// Collects sealed blobs into a pack, writing them to storage as they come (see
/// [`Storage::stage`]), and names and commits the pack once it is full.
pub(crate) struct PackWriter<'a> {
    storage: &'a dyn Storage,
    /// The pack being written, started by the first write.
    out: Option<Box<dyn Staged>>,
    /// Bytes not yet written or hashed.
    buf: Vec<u8>,
    hash: blake3::Hasher,
    len: usize,
    entries: Vec<PackEntry>,
    target: usize,
}

impl<'a> PackWriter<'a> {
    /// A writer of packs of about `target` bytes into `storage`.
    pub(crate) fn new(storage: &'a dyn Storage, target: usize) -> Self {
        PackWriter {
            storage,
            out: None,
            buf: Vec::new(),
            hash: blake3::Hasher::new(),
            len: 0,
            entries: Vec::new(),
            target,
        }
    }

    /// Adds a sealed blob and its token.
    pub(crate) fn add(&mut self, blob: &SealedBlob, token: &[u8]) -> Result<()> {
        self.write(token)?;
        self.entries.push(PackEntry {
            id: blob.id,
            kind: blob.kind,
            compressed: blob.compressed,
            offset: self.len as u64,
            length: u32::try_from(token.len()).unwrap_or(u32::MAX),
            raw_len: blob.raw_len,
        });
        self.len += token.len();
        Ok(())
    }

    /// Buffers `bytes`, or writes and hashes them at once when they are large.
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.len() >= DIRECT_BYTES || self.buf.len() + bytes.len() > WRITE_BYTES {
            self.drain()?;
        }
        if bytes.len() >= DIRECT_BYTES {
            self.hash.update(bytes);
            return staged(&mut self.out, self.storage)?.append(bytes);
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(WRITE_BYTES);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Writes and hashes what is buffered.
    fn drain(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.hash.update(&self.buf);
        staged(&mut self.out, self.storage)?.append(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.target
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the header, commits the pack (durably) under the hash of its bytes and
    /// returns its index record. The writer is then empty, ready for the next pack.
    pub(crate) fn flush(&mut self, keys: &KeySet) -> Result<IndexPack> {
        if self.entries.is_empty() {
            return Err(Error::Internal("an empty pack was flushed".into()));
        }
        let header = PackHeader {
            entries: std::mem::take(&mut self.entries),
        };
        let plain = bincode::serialize(&header)
            .map_err(|e| Error::Internal(format!("encode pack header: {e}")))?;
        let token = keys.encrypt(&plain);
        let trailer = u32::try_from(token.len()).unwrap_or(u32::MAX).to_le_bytes();
        self.write(&token)?;
        self.write(&trailer)?;
        self.drain()?;
        let out = self
            .out
            .take()
            .ok_or_else(|| Error::Internal("a pack was flushed twice".into()))?;
        let id = Id(*self.hash.finalize().as_bytes());
        let size = (self.len + token.len() + trailer.len()) as u64;
        self.hash.reset();
        self.len = 0;
        out.commit(self.storage, &pack_name(&id))?;
        Ok(IndexPack {
            id,
            size,
            entries: header.entries,
        })
    }
}

/// The pack file being written, started at its first write.
fn staged<'o>(
    out: &'o mut Option<Box<dyn Staged>>,
    storage: &dyn Storage,
) -> Result<&'o mut Box<dyn Staged>> {
    match out {
        Some(out) => Ok(out),
        None => Ok(out.insert(storage.stage("data")?)),
    }
}

/// Reads and decrypts a pack's header.
pub(crate) fn read_header(
    storage: &dyn Storage,
    keys: &KeySet,
    id: &Id,
    size: u64,
) -> Result<Vec<PackEntry>> {
    let name = pack_name(id);
    let path = storage.describe(&name);
    if size < 4 {
        return Err(Error::corrupt("pack", path, "shorter than its trailer"));
    }
    let tail = storage.read_at(&name, size - 4, 4)?;
    let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if len + 4 > size {
        return Err(Error::corrupt(
            "pack",
            path,
            "header length beyond the file",
        ));
    }
    let token = storage.read_at(&name, size - 4 - len, len as usize)?;
    let plain = keys
        .decrypt(&token)
        .ok_or_else(|| Error::corrupt("pack header", path.clone(), "does not decrypt"))?;
    let header: PackHeader = bincode::deserialize(&plain)
        .map_err(|e| Error::corrupt("pack header", path, e.to_string()))?;
    Ok(header.entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incompressible_data_is_stored_raw_and_text_compressed() {
        let keys = KeySet::from_strings(&["cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="]).unwrap();
        let mut noise = vec![0u8; 300_000];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut noise);
        let text = b"all work and no play ".repeat(10_000);
        let key = [7u8; 32];
        for (data, want_compressed) in [(&noise, false), (&text.to_vec(), true)] {
            let mut token = Vec::new();
            let b = seal(
                &keys,
                blob_id(&key, data),
                BlobKind::Data,
                data,
                3,
                &mut token,
            );
            assert_eq!(b.compressed, want_compressed);
            let entry = PackEntry {
                id: b.id,
                kind: b.kind,
                compressed: b.compressed,
                offset: 0,
                length: token.len() as u32,
                raw_len: b.raw_len,
            };
            assert_eq!(&open_blob(&keys, &entry, &token).unwrap(), data);
        }
    }

    #[test]
    fn a_chunk_that_starts_random_but_holds_text_is_compressed() {
        let keys = KeySet::from_strings(&["cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="]).unwrap();
        let mut data = vec![0u8; 128 * 1024];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut data);
        data.extend(b"2026-11-23 INFO request served in 3 ms\n".repeat(10_000));
        let mut token = Vec::new();
        let b = seal(
            &keys,
            blob_id(&[7u8; 32], &data),
            BlobKind::Data,
            &data,
            3,
            &mut token,
        );
        assert!(b.compressed);
        assert!(
            token.len() < data.len() / 2,
            "{} of {}",
            token.len(),
            data.len()
        );
    }

    /// Blobs small and large, around the write buffer's size: the pack is named by the
    /// hash of its bytes as stored, and every blob is where its entry says.
    #[test]
    fn a_pack_of_small_and_large_blobs_is_named_by_its_bytes_and_reads_back() {
        let keys = KeySet::from_strings(&["cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::storage::LocalDir::new(dir.path());
        let mut writer = PackWriter::new(&storage, 64 << 20);
        let mut blobs = Vec::new();
        let mut sealed = Blobs::with_capacity(0);
        for (i, len) in [100, 3000, WRITE_BYTES - 10, 70, 2 * WRITE_BYTES, 5, 4096]
            .into_iter()
            .enumerate()
        {
            let mut data = vec![0u8; len];
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut data);
            data[0] = i as u8;
            sealed.push_with(|out| {
                seal(
                    &keys,
                    blob_id(&[7u8; 32], &data),
                    BlobKind::Data,
                    &data,
                    3,
                    out,
                )
            });
            blobs.push(data);
        }
        assert_eq!(sealed.len(), blobs.len());
        for (b, token) in sealed.iter() {
            writer.add(b, token).unwrap();
        }
        let pack = writer.flush(&keys).unwrap();
        let bytes = storage.read(&pack_name(&pack.id)).unwrap();
        assert_eq!(pack.id, Id(*blake3::hash(&bytes).as_bytes()));
        assert_eq!(pack.size, bytes.len() as u64);
        for (entry, data) in pack.entries.iter().zip(&blobs) {
            let at = entry.offset as usize;
            let token = &bytes[at..at + entry.length as usize];
            assert_eq!(&open_blob(&keys, entry, token).unwrap(), data);
        }
        assert_eq!(storage.unfinished("data").unwrap(), vec![]);
    }
}
