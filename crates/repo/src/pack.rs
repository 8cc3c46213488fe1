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
use crate::storage::{Staged, Storage};

/// Bytes sampled to decide whether a blob is worth compressing.
const SAMPLE: usize = 16 * 1024;

/// The repository's blob id: BLAKE3 keyed with the repository's secret id key.
pub(crate) fn blob_id(id_key: &[u8; 32], data: &[u8]) -> Id {
    Id(*blake3::keyed_hash(id_key, data).as_bytes())
}

/// A blob ready to be packed.
pub(crate) struct SealedBlob {
    pub id: Id,
    pub kind: BlobKind,
    pub compressed: bool,
    pub raw_len: u32,
    pub token: Vec<u8>,
}

/// Compresses (when it helps) and encrypts one blob.
pub(crate) fn seal(keys: &KeySet, id: Id, kind: BlobKind, data: &[u8], level: i32) -> SealedBlob {
    let compressed = compress(data, level);
    let (plain, is_compressed) = match &compressed {
        Some(c) => (c.as_slice(), true),
        None => (data, false),
    };
    SealedBlob {
        id,
        kind,
        compressed: is_compressed,
        raw_len: u32::try_from(data.len()).unwrap_or(u32::MAX),
        token: keys.encrypt(plain),
    }
}

/// zstd-compresses `data` unless quick samples show it is incompressible (already
/// compressed or encrypted input), or the result would not be smaller.
///
/// Samples are taken at four places, not just the start: a chunk of a disk image or a
/// database often mixes random blocks with text and zeros, and one random sample
/// would store the whole chunk raw.
fn compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
    if data.len() < 64 {
        return None;
    }
    if data.len() > 4 * SAMPLE {
        let compressible = (0..4).any(|i| {
            let start = data.len() / 4 * i;
            let sample = &data[start..start + SAMPLE];
            with_compressor(1, |c| c.compress(sample)).is_ok_and(|c| c.len() * 100 <= SAMPLE * 97)
        });
        if !compressible {
            return None;
        }
    }
    let out = with_compressor(level, |c| c.compress(data)).ok()?;
    (out.len() < data.len()).then_some(out)
}

thread_local! {
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

fn decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress(data, capacity)
    })
}

/// Decrypts and decompresses a blob token; `Err(reason)` if it is damaged.
pub(crate) fn open_blob(
    keys: &KeySet,
    entry: &PackEntry,
    token: &[u8],
) -> std::result::Result<Vec<u8>, String> {
    let plain = keys
        .decrypt(token)
        .ok_or_else(|| "does not decrypt (damaged, or written with another key)".to_string())?;
    if entry.compressed {
        decompress(&plain, entry.raw_len as usize).map_err(|e| format!("does not decompress: {e}"))
    } else {
        Ok(plain)
    }
}

/// Repository-relative name of a pack file.
pub(crate) fn pack_name(id: &Id) -> String {
    let h = id.to_hex();
    format!("data/{}/{}", &h[..2], h)
}

/// Collects sealed blobs into a pack, writing them to storage as they come (see
/// [`Storage::stage`]), and names and commits the pack once it is full.
pub(crate) struct PackWriter<'a> {
    storage: &'a dyn Storage,
    /// The pack being written, started by the first blob.
    out: Option<Box<dyn Staged>>,
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
            hash: blake3::Hasher::new(),
            len: 0,
            entries: Vec::new(),
            target,
        }
    }

    pub(crate) fn add(&mut self, blob: &SealedBlob) -> Result<()> {
        let out = match &mut self.out {
            Some(out) => out,
            None => self.out.insert(self.storage.stage("data")?),
        };
        out.append(&blob.token)?;
        self.hash.update(&blob.token);
        self.entries.push(PackEntry {
            id: blob.id,
            kind: blob.kind,
            compressed: blob.compressed,
            offset: self.len as u64,
            length: u32::try_from(blob.token.len()).unwrap_or(u32::MAX),
            raw_len: blob.raw_len,
        });
        self.len += blob.token.len();
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
        let mut out = self
            .out
            .take()
            .ok_or_else(|| Error::Internal("an empty pack was flushed".into()))?;
        let header = PackHeader {
            entries: std::mem::take(&mut self.entries),
        };
        let plain = bincode::serialize(&header)
            .map_err(|e| Error::Internal(format!("encode pack header: {e}")))?;
        let token = keys.encrypt(&plain);
        let trailer = u32::try_from(token.len()).unwrap_or(u32::MAX).to_le_bytes();
        for part in [&token[..], &trailer[..]] {
            out.append(part)?;
            self.hash.update(part);
        }
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
            let b = seal(&keys, blob_id(&key, data), BlobKind::Data, data, 3);
            assert_eq!(b.compressed, want_compressed);
            let entry = PackEntry {
                id: b.id,
                kind: b.kind,
                compressed: b.compressed,
                offset: 0,
                length: b.token.len() as u32,
                raw_len: b.raw_len,
            };
            assert_eq!(&open_blob(&keys, &entry, &b.token).unwrap(), data);
        }
    }

    #[test]
    fn a_chunk_that_starts_random_but_holds_text_is_compressed() {
        let keys = KeySet::from_strings(&["cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="]).unwrap();
        let mut data = vec![0u8; 128 * 1024];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut data);
        data.extend(b"2026-11-23 INFO request served in 3 ms\n".repeat(10_000));
        let b = seal(&keys, blob_id(&[7u8; 32], &data), BlobKind::Data, &data, 3);
        assert!(b.compressed);
        assert!(
            b.token.len() < data.len() / 2,
            "{} of {}",
            b.token.len(),
            data.len()
        );
    }
}
