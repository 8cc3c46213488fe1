//! The on-disk structures: config, pack headers, index files, snapshots and trees.
//! docs/repository-format.md describes the same thing for people; keep them in step.
//!
//! Trees, pack headers and index files are bincode (compact, deterministic, so a tree's
//! id only changes when its content does); the config and snapshots are JSON, so that
//! someone with the key and Python can read them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The format name written into every config.
pub(crate) const FORMAT_NAME: &str = "drd-repo";
/// The format version this code writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// A 32-byte id: a blob id (keyed BLAKE3 of the plaintext), a pack id (BLAKE3 of the
/// pack file), or a snapshot id (random).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Id(pub [u8; 32]);

/// Hashes the first eight bytes only: ids are hash outputs (or random), so eight bytes
/// spread as well as thirty-two, and the index's and a backup's maps hash an id several
/// times per file. Equality still compares all of it.
impl std::hash::Hash for Id {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(head));
    }
}

impl Id {
    /// Lower-case hex, as used in file names.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Id> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Id(out))
    }

    /// A random id.
    pub(crate) fn random() -> Id {
        use rand::RngCore;
        let mut out = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut out);
        Id(out)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", &self.to_hex()[..16])
    }
}

/// The plaintext `config` file at the top of a repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ConfigFile {
    /// Always "drd-repo".
    pub format: String,
    /// Format version.
    pub version: u32,
    /// Random repository id (hex), for humans and tiers.
    pub id: String,
    /// Creation time, unix seconds.
    pub created: u64,
    /// Chunker parameters: fixed for the repository's life, or dedup breaks.
    pub chunker: ChunkerParams,
    /// Target pack size in bytes.
    pub pack_size: u64,
    /// Base64url Fernet token holding a [`Secret`] as JSON.
    pub secret: String,
}

/// FastCDC (2020) parameters.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

/// The encrypted part of the config.
#[derive(Serialize, Deserialize)]
pub(crate) struct Secret {
    /// Hex of the 32-byte BLAKE3 key for blob ids.
    pub id_key: String,
}

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobKind {
    /// A chunk of file content.
    Data,
    /// A serialized directory tree.
    Tree,
}

/// One blob in a pack, as listed in the pack header and the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PackEntry {
    pub id: Id,
    pub kind: BlobKind,
    /// The token's plaintext is a zstd frame (true) or the raw blob (false).
    pub compressed: bool,
    /// Byte offset of the raw token in the pack.
    pub offset: u64,
    /// Length of the raw token.
    pub length: u32,
    /// Length of the blob's plaintext (after decompression).
    pub raw_len: u32,
}

/// The header at the end of every pack (encrypted).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PackHeader {
    pub entries: Vec<PackEntry>,
}

/// One pack as described by an index file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IndexPack {
    pub id: Id,
    /// Size of the pack file in bytes.
    pub size: u64,
    pub entries: Vec<PackEntry>,
}

/// An index file (encrypted).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct IndexFile {
    pub packs: Vec<IndexPack>,
}

/// Statistics of one backup run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStats {
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files in the parent snapshot whose metadata changed (read again).
    pub files_changed: u64,
    /// Files whose metadata matched the parent (content reused without reading).
    pub files_unchanged: u64,
    /// Directories in the snapshot.
    pub dirs: u64,
    /// Bytes of file and stream content read.
    pub bytes_read: u64,
    /// Bytes added to the repository (after dedup, compression and encryption).
    pub bytes_added: u64,
    /// New blobs stored.
    pub blobs_added: u64,
    /// Files, symlinks and streams in the snapshot.
    pub file_count: u64,
    /// Total content size of all files in the snapshot.
    pub total_size: u64,
}

/// A snapshot file (encrypted JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// Snapshot id (hex). On disk it is the file name and left out of the JSON; in
    /// other serializations (the daemon's wire) it is included.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The job that made it.
    pub job: String,
    /// The host that made it.
    pub host: String,
    /// Start time of the backup, unix milliseconds UTC.
    pub time_ms: i64,
    /// Parent snapshot id (hex) the backup was incremental against.
    pub parent: Option<String>,
    /// Source descriptions ("path:/var/lib/app", "stream:pg.dump").
    pub sources: Vec<String>,
    /// Root tree blob (hex in the JSON).
    #[serde(with = "hex_id")]
    pub tree: Id,
    /// Statistics of the run.
    pub stats: BackupStats,
}

impl Snapshot {
    /// The first 8 hex digits of the id, as shown to people.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(8)]
    }
}

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
}

/// One entry of a tree. Names are raw bytes (any Unix file name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Node {
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// st_mode permission bits (07777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub dev: u64,
    pub inode: u64,
    pub nlink: u64,
    pub size: u64,
    /// File content: data blob ids in order.
    pub content: Vec<Id>,
    /// Directory: its tree blob.
    pub subtree: Option<Id>,
    /// Symlink: its target, raw bytes.
    pub target: Vec<u8>,
    /// Extended attributes (name, value).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Node {
    /// An entry that stands for nothing on disk (a parent folder the backup made up
    /// to hold a source root): owned by root, no content, times `time_ns`.
    pub fn bare(name: &[u8], kind: NodeKind, mode: u32, time_ns: i64) -> Node {
        Node {
            name: name.to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime_ns: time_ns,
            ctime_ns: time_ns,
            dev: 0,
            inode: 0,
            nlink: 1,
            size: 0,
            content: Vec::new(),
            subtree: None,
            target: Vec::new(),
            xattrs: Vec::new(),
        }
    }
}

/// A directory: entries sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tree {
    pub nodes: Vec<Node>,
}

/// Serde for an [`Id`] as a hex string (snapshot JSON is meant to be read by people).
mod hex_id {
    use super::Id;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(id: &Id, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_hex())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let text = String::deserialize(d)?;
        Id::from_hex(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}
