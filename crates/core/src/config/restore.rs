//! The `[restore]` table: where callers other than root may restore to.
//!
//! The daemon runs as root and restores as root, with the snapshot's owners and modes:
//! a caller who may restore anywhere can put a root-owned file of their choosing into
//! `/etc` and is root-equivalent. So only root (and the daemon's own user) restore
//! anywhere; other responders restore below `allowed_targets`.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

/// The `[restore]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreConfig {
    /// Folders below which callers other than root (and the daemon's own user) may
    /// restore. Unset: `restores/` under the state folder. Relative paths are taken
    /// from the config file's folder.
    #[serde(default)]
    pub allowed_targets: Option<Vec<PathBuf>>,
}

impl RestoreConfig {
    /// Makes relative prefixes absolute against `base` (the config file's folder).
    pub(super) fn resolve(&mut self, base: &Path) {
        for prefix in self.allowed_targets.iter_mut().flatten() {
            *prefix = base.join(&*prefix);
        }
    }

    /// The prefixes in force: the configured ones, or `STATE_DIR/restores`.
    pub fn allowed_targets(&self, state_dir: &Path) -> Vec<PathBuf> {
        self.allowed_targets
            .clone()
            .unwrap_or_else(|| vec![state_dir.join("restores")])
    }
}

/// A prefix must name one folder plainly: "." and ".." would make the prefix test on
/// the requested target mean something other than it says.
pub(super) fn problems(config: &super::Config, text: &str) -> Vec<super::Problem> {
    let mut found = Vec::new();
    for (i, prefix) in config.restore.allowed_targets.iter().flatten().enumerate() {
        if prefix
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            let field = format!("restore.allowed_targets[{i}]");
            found.push(super::Problem {
                line: super::locate::line_of(text, &field),
                field,
                message: format!(
                    "{} holds '.' or '..'; write the folder as a plain absolute path",
                    prefix.display()
                ),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::path::Path;

    #[test]
    fn the_default_is_restores_under_the_state_folder_and_prefixes_are_resolved() {
        let loaded = Config::load_str(Path::new("/etc/drd/drd.toml"), "").unwrap();
        assert_eq!(
            loaded
                .config
                .restore
                .allowed_targets(&loaded.config.daemon.state_dir),
            vec![Path::new("/var/lib/drd/restores")]
        );
        let loaded = Config::load_str(
            Path::new("/etc/drd/drd.toml"),
            "[restore]\nallowed_targets = [\"/srv/restore\", \"rel\"]\n",
        )
        .unwrap();
        assert_eq!(
            loaded.config.restore.allowed_targets(Path::new("/x")),
            vec![Path::new("/srv/restore"), Path::new("/etc/drd/rel")]
        );
    }

    #[test]
    fn a_prefix_with_dot_dot_is_refused_with_its_line() {
        let err = Config::load_str(
            Path::new("/etc/drd/drd.toml"),
            "[restore]\nallowed_targets = [\"/srv/../etc\"]\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("restore.allowed_targets[0]"), "{text}");
        assert!(text.contains("drd.toml:2"), "{text}");
    }
}
