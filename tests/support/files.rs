//! Files of a test repository found and damaged the way the tests need: every file
//! below a folder, a repository's packs and index files, one byte flipped.
//!
//! Included with `#[path]` by the root tests' helper and by drd-repo's tests/common, so
//! the engine's tests and the daemon's tests walk and damage a repository alike.

use std::path::{Path, PathBuf};

/// Every file (not folder) below `dir`, at any depth, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// The packs of the repository folder `repo` (`data/XX/NAME`), sorted; a name that
/// starts with `.` (a pack still being written or copied in) is left out.
pub fn packs(repo: &Path) -> Vec<PathBuf> {
    files_under(&repo.join("data"))
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

/// The index files of the repository folder `repo`, sorted.
pub fn index_files(repo: &Path) -> Vec<PathBuf> {
    files_under(&repo.join("index"))
}

/// XORs `mask` into the byte at `at` of `path`; returns the bytes as they were.
pub fn flip_byte(path: &Path, at: usize, mask: u8) -> Vec<u8> {
    let intact = std::fs::read(path).unwrap();
    let mut bytes = intact.clone();
    bytes[at] ^= mask;
    std::fs::write(path, bytes).unwrap();
    intact
}

/// [`flip_byte`] at the middle of `path`.
pub fn flip_middle_byte(path: &Path, mask: u8) -> Vec<u8> {
    let len = std::fs::metadata(path).unwrap().len();
    flip_byte(path, usize::try_from(len / 2).unwrap(), mask)
}

/// What a sync tool does: writes a copy of `pack` next to it, with one byte flipped in
/// its header (20 bytes from the end) and one in its body (a third in), and renames the
/// copy over the pack.
pub fn rename_damaged_copy_over(pack: &Path) {
    let copy = pack.with_file_name(".sync-copy");
    std::fs::write(&copy, std::fs::read(pack).unwrap()).unwrap();
    let len = usize::try_from(std::fs::metadata(&copy).unwrap().len()).unwrap();
    flip_byte(&copy, len - 20, 0x01);
    flip_byte(&copy, len / 3, 0x01);
    std::fs::rename(&copy, pack).unwrap();
}
