//! Planning a restore: walk the snapshot's trees first, validating every name (so a
//! crafted tree is refused before anything is written), and list what to make. A
//! folder whose listing cannot be read is recorded as damaged and made empty; the
//! rest of the snapshot is still planned.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::fallback::Reader;
use super::{is_damage, DamagedFile};
use crate::error::{Error, Result};
use crate::format::{Id, Node, NodeKind};

/// What a restore makes, in the order it makes it.
#[derive(Default)]
pub(super) struct Plan {
    pub dirs: Vec<(PathBuf, Node)>,
    pub files: Vec<(PathBuf, Node)>,
    /// (link, first path of the same inode).
    pub links: Vec<(PathBuf, PathBuf)>,
    pub symlinks: Vec<(PathBuf, Node)>,
    pub fifos: Vec<(PathBuf, Node)>,
    /// Folders whose listing could not be read.
    pub damaged: Vec<DamagedFile>,
}

/// Which parts of the snapshot to restore: filter paths as components; empty = all.
pub(super) struct Filters {
    parts: Vec<Vec<Vec<u8>>>,
    matched: Vec<bool>,
}

impl Filters {
    pub fn new(paths: &[PathBuf]) -> Filters {
        let parts: Vec<Vec<Vec<u8>>> = paths.iter().map(|p| filter_parts(p)).collect();
        let matched = vec![false; parts.len()];
        Filters { parts, matched }
    }

    /// The index of the first filter that matched nothing.
    pub fn unmatched(&self) -> Option<usize> {
        self.matched.iter().position(|m| !m)
    }
}

fn check_name(name: &[u8], dir: &Path) -> Result<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Error::UnsafeName {
            name: String::from_utf8_lossy(name).into_owned(),
            dir: format!("/{}", dir.display()),
        });
    }
    Ok(())
}

/// Normalizes a filter path to its components.
pub(super) fn filter_parts(p: &Path) -> Vec<Vec<u8>> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes().to_vec()),
            _ => None,
        })
        .collect()
}

pub(super) fn to_path(parts: &[Vec<u8>]) -> PathBuf {
    let mut p = PathBuf::new();
    for part in parts {
        p.push(OsStr::from_bytes(part));
    }
    p
}

impl Reader<'_> {
    /// Plans the restore of the tree `root`.
    pub(super) fn plan(&self, root: &Id, filters: &mut Filters) -> Result<Plan> {
        let mut plan = Plan::default();
        // The root listing is the one thing a restore cannot do without.
        let tree = self.tree(root, "directory /")?;
        let mut walk = Walk {
            reader: self,
            filters,
            plan: &mut plan,
            hardlinks: HashMap::new(),
        };
        walk.tree(tree.nodes, &mut Vec::new())?;
        Ok(plan)
    }
}

struct Walk<'a> {
    reader: &'a Reader<'a>,
    filters: &'a mut Filters,
    plan: &'a mut Plan,
    hardlinks: HashMap<(u64, u64), PathBuf>,
}

impl Walk<'_> {
    fn tree(&mut self, nodes: Vec<Node>, rel: &mut Vec<Vec<u8>>) -> Result<()> {
        let dir_path = to_path(rel);
        let mut seen = HashSet::new();
        for node in nodes {
            check_name(&node.name, &dir_path)?;
            if !seen.insert(node.name.clone()) {
                return Err(Error::UnsafeName {
                    name: format!("{} (twice)", String::from_utf8_lossy(&node.name)),
                    dir: format!("/{}", dir_path.display()),
                });
            }
            rel.push(node.name.clone());
            self.node(node, rel)?;
            rel.pop();
        }
        Ok(())
    }

    fn node(&mut self, node: Node, rel: &mut Vec<Vec<u8>>) -> Result<()> {
        // Included if no filters, or the path is under a filter (all of it), or on the
        // way to one (just the directory).
        let filters = &mut *self.filters;
        let mut under = filters.parts.is_empty();
        let mut on_way = false;
        for (i, f) in filters.parts.iter().enumerate() {
            if rel.starts_with(f) {
                under = true;
                if rel.len() == f.len() {
                    filters.matched[i] = true;
                }
            } else if f.starts_with(rel) {
                on_way = true;
            }
        }
        if !under && !on_way {
            return Ok(());
        }
        let path = to_path(rel);
        match node.kind {
            NodeKind::Dir => {
                let sub = node.subtree;
                self.plan.dirs.push((path.clone(), node));
                let Some(sub) = sub else { return Ok(()) };
                let context = format!("directory /{}", path.display());
                match self.reader.tree(&sub, &context) {
                    Ok(tree) => self.tree(tree.nodes, rel)?,
                    Err(e) if is_damage(&e) => {
                        // Filters below it were asked for and are reported here.
                        for (i, f) in self.filters.parts.iter().enumerate() {
                            if f.starts_with(rel) {
                                self.filters.matched[i] = true;
                            }
                        }
                        self.plan.damaged.push(DamagedFile {
                            path: format!("/{}", path.display()),
                            kept_as: None,
                            reason: format!(
                                "its listing cannot be read, so nothing below it was \
                                 restored: {e}"
                            ),
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            _ if !under => {}
            NodeKind::File => {
                if node.nlink > 1 && node.inode != 0 {
                    if let Some(first) = self.hardlinks.get(&(node.dev, node.inode)) {
                        self.plan.links.push((path, first.clone()));
                        return Ok(());
                    }
                    self.hardlinks.insert((node.dev, node.inode), path.clone());
                }
                self.plan.files.push((path, node));
            }
            NodeKind::Symlink => self.plan.symlinks.push((path, node)),
            NodeKind::Fifo => self.plan.fifos.push((path, node)),
        }
        Ok(())
    }
}
