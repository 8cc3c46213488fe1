//! The node_exporter textfile: every `[metrics] interval`, the exposition written to
//! `[metrics] textfile` atomically (a temp file in the same folder, fsync, rename,
//! fsync of the folder), so the collector never reads half a file.
//!
//! The worker reads the config at each cycle, so a reload that sets, moves or drops
//! the textfile takes effect at the next one. The file stays when drd stops: its
//! age (`node_textfile_mtime_seconds`) is how an alert sees that drd went silent.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use drd_core::workers::Worker;

use crate::{Error, Metrics, Result};

/// Writes the textfile every interval.
pub struct TextfileWriter {
    metrics: Arc<Metrics>,
}

impl TextfileWriter {
    /// A writer of `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> TextfileWriter {
        TextfileWriter { metrics }
    }
}

#[async_trait]
impl Worker for TextfileWriter {
    fn name(&self) -> &'static str {
        "metrics-textfile"
    }

    async fn step(&mut self) -> Result<String, String> {
        let config = self.metrics.watch().core.config();
        let Some(path) = config.config.metrics.textfile.clone() else {
            return Ok("no [metrics] textfile configured".to_owned());
        };
        let text = self.metrics.encode().await.map_err(|e| e.to_string())?;
        let to = path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&to, text.as_bytes()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(format!("wrote {}", path.display()))
    }

    async fn wait(&mut self) {
        let every = self.metrics.watch().core.config().config.metrics.interval;
        tokio::time::sleep(every).await;
    }
}

/// Replaces `path` with `bytes` so that a reader sees the old file or the new one,
/// never a part: `.NAME.tmp` beside it (node_exporter reads only `*.prom`), fsync,
/// rename over, fsync the folder. The file is readable by all (mode 0644, less the
/// umask), as node_exporter runs as its own user.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |op, path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { op, path, source }
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    file.write_all(bytes).map_err(io("write", &tmp))?;
    file.sync_all().map_err(io("fsync", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync folder", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drd.prom");
        write_atomically(&path, b"old\n").unwrap();
        write_atomically(&path, b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["drd.prom"]);
        let err = write_atomically(&dir.path().join("missing/drd.prom"), b"x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot create"), "{err}");
        assert!(err.contains("missing/.drd.prom.tmp"), "{err}");
    }
}
