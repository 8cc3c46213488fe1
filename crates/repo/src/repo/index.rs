//! The in-memory blob index: every index file's packs and blobs in a compact map, how
//! it is loaded (and refreshed, reading only the index files that are new), and index
//! files written.

use std::collections::{HashMap, HashSet};

use super::{poisoned, Repository, REPAIR_HINT};
use crate::error::{Error, Result};
use crate::format::{BlobKind, Id, IndexFile, IndexPack, PackEntry};
use crate::pack::{self, pack_name};

/// Where a blob lives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlobLoc {
    pub pack: Id,
    pub entry: PackEntry,
}

/// Blob id -> where it is, kept small: an entry is 56 bytes here, where a [`BlobLoc`]
/// (a whole pack id and a second copy of the blob id) took 120. The index of a
/// repository of a million small files is in memory during every backup.
#[derive(Default)]
pub(crate) struct BlobMap {
    places: HashMap<Id, Place>,
    /// Pack ids, numbered in the order first seen.
    packs: Vec<Id>,
    pack_numbers: HashMap<Id, u32>,
}

/// A [`PackEntry`] without its id, its pack by number.
#[derive(Clone, Copy)]
struct Place {
    pack: u32,
    length: u32,
    offset: u64,
    raw_len: u32,
    kind: BlobKind,
    compressed: bool,
}

impl BlobMap {
    /// Records where the blob of `entry` is, unless it is known already.
    fn insert_if_absent(&mut self, pack: Id, entry: &PackEntry) {
        if self.places.contains_key(&entry.id) {
            return;
        }
        let number = *self.pack_numbers.entry(pack).or_insert_with(|| {
            self.packs.push(pack);
            u32::try_from(self.packs.len() - 1).unwrap_or(u32::MAX)
        });
        self.places.insert(
            entry.id,
            Place {
                pack: number,
                length: entry.length,
                offset: entry.offset,
                raw_len: entry.raw_len,
                kind: entry.kind,
                compressed: entry.compressed,
            },
        );
    }

    pub(crate) fn get(&self, id: &Id) -> Option<BlobLoc> {
        self.places.get(id).map(|p| self.loc(*id, p))
    }

    pub(crate) fn contains_key(&self, id: &Id) -> bool {
        self.places.contains_key(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.places.len()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = BlobLoc> + '_ {
        self.places.iter().map(|(id, p)| self.loc(*id, p))
    }

    fn loc(&self, id: Id, p: &Place) -> BlobLoc {
        BlobLoc {
            pack: self.packs[p.pack as usize],
            entry: PackEntry {
                id,
                kind: p.kind,
                compressed: p.compressed,
                offset: p.offset,
                length: p.length,
                raw_len: p.raw_len,
            },
        }
    }
}

/// The union of all index files, and what could not be read of them.
#[derive(Default)]
pub(crate) struct Index {
    pub blobs: BlobMap,
    /// Pack id -> size, for every indexed pack.
    pub packs: HashMap<Id, u64>,
    /// Index files that do not decrypt or decode: (name under `index/`, why).
    pub damaged: Vec<(String, String)>,
    /// Packs that no readable index file lists, as their own headers describe them.
    /// Looked for only when an index file is damaged (or by repair).
    pub recovered_packs: Vec<IndexPack>,
    /// The blobs of `recovered_packs` that no index file lists. Reads find blobs here;
    /// dedup does not ([`Repository::has_blob`]), so that a new snapshot only ever
    /// needs blobs that an index file lists.
    pub recovered: BlobMap,
    /// Packs that no readable index file lists and whose header does not decrypt
    /// either: (pack id, why).
    pub unreadable_packs: Vec<(Id, String)>,
    /// The index files whose packs are in here (names under `index/`), each with the
    /// hash of its stored bytes, so that a refresh sees a file that changed.
    pub files: HashMap<String, blake3::Hash>,
}

impl Index {
    /// Adds the packs of index file `name`, stored as bytes that hash to `digest`.
    fn add_file(&mut self, name: &str, digest: blake3::Hash, file: &IndexFile) {
        file.packs.iter().for_each(|p| self.add(p));
        self.files.insert(name.to_string(), digest);
    }

    pub(crate) fn add(&mut self, pack: &IndexPack) {
        self.packs.insert(pack.id, pack.size);
        for e in &pack.entries {
            self.blobs.insert_if_absent(pack.id, e);
        }
    }

    fn add_recovered(&mut self, pack: IndexPack) {
        for e in &pack.entries {
            if !self.blobs.contains_key(&e.id) {
                self.recovered.insert_if_absent(pack.id, e);
            }
        }
        self.recovered_packs.push(pack);
    }

    /// Where a blob is: in an indexed pack, else in a recovered one.
    pub(crate) fn get(&self, id: &Id) -> Option<BlobLoc> {
        self.blobs.get(id).or_else(|| self.recovered.get(id))
    }
}

impl Repository {
    /// Brings the index up to date with the index files stored now (to see what other
    /// processes added). A file read before whose bytes are unchanged is not decoded
    /// again: before, every refresh built a second whole index beside the first (at
    /// 400,000 files a re-run's peak was two indexes and a decoded file). When a file
    /// read before is gone or changed (a prune or repair by another process, damage) or
    /// one was damaged, everything is read again. A damaged index file does not stop
    /// it: the packs no readable index file lists are then read by their headers, so
    /// every blob stays reachable, and [`Repository::index_warnings`] says what was
    /// skipped.
    pub fn refresh(&self) -> Result<()> {
        let stored = self.storage.list("index")?;
        let listed: HashSet<&String> = stored.iter().collect();
        let mut index = self.index.write().map_err(|_| poisoned())?;
        let gone = || index.files.keys().any(|f| !listed.contains(f));
        if !index.damaged.is_empty() || gone() {
            drop(index);
            return self.reload_index();
        }
        for name in &stored {
            let (token, digest) = self.read_index_token(name)?;
            let in_step = match index.files.get(name) {
                Some(known) => *known == digest,
                None => match self.decode_index_file(name, &token) {
                    Ok(file) => {
                        index.add_file(name, digest, &file);
                        true
                    }
                    Err(Error::DamagedIndex { .. }) => false,
                    Err(e) => return Err(e),
                },
            };
            if !in_step {
                // Changed since it was read, or damaged: read everything again.
                drop(index);
                return self.reload_index();
            }
        }
        Ok(())
    }

    /// Reads the whole index again and puts it in place of the one in memory.
    fn reload_index(&self) -> Result<()> {
        let index = self.load_index(false)?;
        *self.index.write().map_err(|_| poisoned())? = index;
        Ok(())
    }

    /// Loads every index file. One that does not decrypt or decode is recorded, not an
    /// error; then (or always, with `scan_packs`) every pack that no readable index
    /// file lists is read by its own encrypted header. A header that does not decrypt
    /// is recorded too; any other failure (storage unreachable) is an error, so that a
    /// passing outage never looks like missing data.
    pub(crate) fn load_index(&self, scan_packs: bool) -> Result<Index> {
        let mut index = Index::default();
        for name in self.storage.list("index")? {
            match self.read_index_file_hashed(&name) {
                Ok((file, digest)) => index.add_file(&name, digest, &file),
                Err(Error::DamagedIndex { reason, .. }) => index.damaged.push((name, reason)),
                Err(e) => return Err(e),
            }
        }
        if !scan_packs && index.damaged.is_empty() {
            return Ok(index);
        }
        for name in self.storage.list("data")? {
            let Some(id) = name.split('/').nth(1).and_then(Id::from_hex) else {
                continue;
            };
            if index.packs.contains_key(&id) {
                continue;
            }
            // Gone since the listing (a prune): nothing to recover.
            let Some(size) = self.storage.size(&pack_name(&id))? else {
                continue;
            };
            match pack::read_header(&*self.storage, &self.keys, &id, size) {
                Ok(entries) => index.add_recovered(IndexPack { id, size, entries }),
                Err(Error::Corrupt { reason, .. }) => index.unreadable_packs.push((id, reason)),
                Err(e) => return Err(e),
            }
        }
        Ok(index)
    }

    /// What the last load of the index could not read, as sentences for the operator:
    /// each damaged index file, and how many packs were found by their headers
    /// instead. Empty when the index is whole.
    pub fn index_warnings(&self) -> Vec<String> {
        let Ok(index) = self.index.read() else {
            return vec![poisoned().to_string()];
        };
        let mut out: Vec<String> = index
            .damaged
            .iter()
            .map(|(name, reason)| {
                format!(
                    "index file {} is damaged ({reason}) and was skipped; {}",
                    self.storage.describe(&format!("index/{name}")).display(),
                    REPAIR_HINT
                )
            })
            .collect();
        if !index.damaged.is_empty() {
            out.push(format!(
                "{} packs ({} blobs) that no readable index file lists were read by their \
                 headers instead",
                index.recovered_packs.len(),
                index.recovered.len()
            ));
        }
        for (id, reason) in &index.unreadable_packs {
            out.push(format!(
                "pack {} is in no readable index file and its header is damaged ({reason}): \
                 its blobs cannot be found",
                self.storage.describe(&pack_name(id)).display()
            ));
        }
        out
    }

    pub(crate) fn read_index_file(&self, name: &str) -> Result<IndexFile> {
        self.read_index_file_hashed(name).map(|(file, _)| file)
    }

    /// Reads an index file; also returns the hash of its stored bytes.
    fn read_index_file_hashed(&self, name: &str) -> Result<(IndexFile, blake3::Hash)> {
        let (token, digest) = self.read_index_token(name)?;
        Ok((self.decode_index_file(name, &token)?, digest))
    }

    /// An index file's stored bytes and their hash (what [`Index::files`] remembers).
    fn read_index_token(&self, name: &str) -> Result<(Vec<u8>, blake3::Hash)> {
        let token = self.storage.read(&format!("index/{name}"))?;
        let digest = blake3::hash(&token);
        Ok((token, digest))
    }

    fn decode_index_file(&self, name: &str, token: &[u8]) -> Result<IndexFile> {
        let damaged = |reason: String| Error::DamagedIndex {
            path: self.storage.describe(&format!("index/{name}")),
            reason,
        };
        let plain = self
            .keys
            .decrypt(token)
            .ok_or_else(|| damaged("does not decrypt".into()))?;
        bincode::deserialize(&plain).map_err(|e| damaged(e.to_string()))
    }

    /// Writes index files for `packs` (which must already be on storage), as many as it
    /// takes to keep each under [`INDEX_FILE_ENTRIES`] blobs (a pack is never split);
    /// returns their names.
    pub(crate) fn write_index(&self, packs: &[IndexPack]) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut rest = packs;
        while !rest.is_empty() {
            let mut take = 1;
            let mut entries = rest[0].entries.len();
            while let Some(next) = rest.get(take) {
                if entries + next.entries.len() > INDEX_FILE_ENTRIES {
                    break;
                }
                entries += next.entries.len();
                take += 1;
            }
            names.push(self.write_index_file(&rest[..take])?);
            rest = &rest[take..];
        }
        Ok(names)
    }

    /// Writes one index file for `packs`, whatever its size; returns its name.
    pub(crate) fn write_index_file(&self, packs: &[IndexPack]) -> Result<String> {
        let plain = encode_index_file(packs)?;
        let name = Id::random().to_hex();
        self.storage
            .write_atomic(&format!("index/{name}"), &self.keys.encrypt(&plain))?;
        Ok(name)
    }
}

/// Most blobs in one index file that a backup or prune writes. Reading a file holds it
/// three times (stored, decrypted, decoded: about 170 bytes a blob), so this bounds
/// what reading one costs to about 11 MiB, whatever the size of the repository.
pub(crate) const INDEX_FILE_ENTRIES: usize = 65_536;

/// An [`IndexFile`] of `packs`, encoded without copying them first.
fn encode_index_file(packs: &[IndexPack]) -> Result<Vec<u8>> {
    /// Encodes exactly as [`IndexFile`] does (a slice is a sequence, like a `Vec`).
    #[derive(serde::Serialize)]
    struct Borrowed<'a> {
        packs: &'a [IndexPack],
    }
    bincode::serialize(&Borrowed { packs })
        .map_err(|e| Error::Internal(format!("encode index: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blob_map_gives_back_what_was_put_in_and_keeps_the_first_place() {
        let entry = |id: Id, offset: u64| PackEntry {
            id,
            kind: BlobKind::Tree,
            compressed: true,
            offset,
            length: 70_000,
            raw_len: 5_000_000,
        };
        let (a, b, blob) = (Id::random(), Id::random(), Id::random());
        let mut map = BlobMap::default();
        map.insert_if_absent(a, &entry(blob, u64::from(u32::MAX) + 9));
        map.insert_if_absent(b, &entry(blob, 1));
        map.insert_if_absent(b, &entry(Id::random(), 2));
        let loc = map.get(&blob).unwrap();
        assert_eq!(loc.pack, a);
        assert_eq!(loc.entry, entry(blob, u64::from(u32::MAX) + 9));
        assert_eq!(map.len(), 2);
        assert_eq!(map.values().filter(|l| l.pack == b).count(), 1);
        assert!(map.get(&Id::random()).is_none());
    }

    #[test]
    fn an_index_file_encoded_from_a_slice_decodes_as_the_index_file() {
        let entry = |offset: u64| PackEntry {
            id: Id::random(),
            kind: BlobKind::Data,
            compressed: false,
            offset,
            length: 10,
            raw_len: 10,
        };
        let packs = vec![
            IndexPack {
                id: Id::random(),
                size: 99,
                entries: vec![entry(0), entry(10)],
            },
            IndexPack {
                id: Id::random(),
                size: 7,
                entries: vec![entry(0)],
            },
        ];
        let plain = encode_index_file(&packs).unwrap();
        let owned = IndexFile {
            packs: packs.clone(),
        };
        assert_eq!(plain, bincode::serialize(&owned).unwrap());
        let back: IndexFile = bincode::deserialize(&plain).unwrap();
        assert_eq!(back.packs[0].entries, packs[0].entries);
        assert_eq!(back.packs[1].id, packs[1].id);
    }
}
