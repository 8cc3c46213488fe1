//! Repository locks as lease files in `locks/`. A holder rewrites its file (a new
//! heartbeat) from a background thread; a lock whose process is gone (same host, no such
//! pid) or whose lease ran out is stale and is removed by the next process that wants a
//! lock, which reports it. Shared locks coexist; an exclusive lock excludes all others.
//!
//! Acquiring writes our own file first and then looks at the others, so two processes
//! racing for conflicting locks both see each other and both back off (neither wins);
//! the caller retries later. That is safe, and the race is rare.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::Storage;

/// What a lock file holds (plain JSON: it has no secrets, and people read it).
#[derive(Debug, Serialize, Deserialize)]
struct LockInfo {
    host: String,
    pid: u32,
    exclusive: bool,
    /// When the lock was taken, unix ms.
    started_ms: i64,
    /// Last heartbeat, unix ms.
    heartbeat_ms: i64,
    /// The lock is stale once heartbeat_ms + lease_ms has passed.
    lease_ms: i64,
}

/// A held lock; dropping it stops the heartbeat and removes the lock file.
pub(crate) struct LockGuard {
    storage: Arc<dyn Storage>,
    name: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.storage.remove(&self.name);
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// This host's name, as recorded in locks and snapshots.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn pid_alive(pid: u32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

/// Why another holder's lock is stale and may be broken, as seen from `host` at
/// `now_ms`; `None` while it holds.
fn stale(info: &LockInfo, host: &str, now_ms: i64) -> Option<&'static str> {
    if info.host == host && !pid_alive(info.pid) {
        Some("that process no longer runs")
    } else if now_ms > info.heartbeat_ms.saturating_add(info.lease_ms) {
        Some("its lease expired")
    } else {
        None
    }
}

/// Takes a lock, breaking stale ones; each broken lock adds a line to `warnings`.
pub(crate) fn acquire(
    storage: &Arc<dyn Storage>,
    exclusive: bool,
    lease: Duration,
    warnings: &mut Vec<String>,
) -> Result<LockGuard> {
    let host = hostname();
    let pid = std::process::id();
    let name = format!(
        "locks/{}-{}-{}",
        host,
        pid,
        &crate::format::Id::random().to_hex()[..8]
    );
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let started_ms = now_ms();
    let write = |heartbeat_ms: i64| -> Result<()> {
        let info = LockInfo {
            host: host.clone(),
            pid,
            exclusive,
            started_ms,
            heartbeat_ms,
            lease_ms,
        };
        let body = serde_json::to_vec_pretty(&info)
            .map_err(|e| Error::Internal(format!("encode lock: {e}")))?;
        storage.write_atomic(&name, &body)
    };
    write(started_ms)?;

    for other in storage.list("locks")? {
        let other_name = format!("locks/{other}");
        if other_name == name {
            continue;
        }
        let info = match storage.read(&other_name) {
            Ok(bytes) => serde_json::from_slice::<LockInfo>(&bytes).ok(),
            // Released while we looked.
            Err(_) => continue,
        };
        let path = storage.describe(&other_name);
        let Some(info) = info else {
            storage.remove(&other_name)?;
            warnings.push(format!("removed unreadable lock file {}", path.display()));
            continue;
        };
        if let Some(why) = stale(&info, &host, now_ms()) {
            storage.remove(&other_name)?;
            warnings.push(format!(
                "broke stale lock {} held by {} pid {}: {why}",
                path.display(),
                info.host,
                info.pid
            ));
            continue;
        }
        if exclusive || info.exclusive {
            let _ = storage.remove(&name);
            return Err(Error::Locked {
                path: storage.describe(""),
                holder: format!(
                    "{} pid {} ({})",
                    info.host,
                    info.pid,
                    if info.exclusive {
                        "exclusive"
                    } else {
                        "shared"
                    }
                ),
                lock_file: path,
            });
        }
    }

    let (tx, rx) = mpsc::channel::<()>();
    let beat_storage = Arc::clone(storage);
    let beat_name = name.clone();
    let beat_host = host.clone();
    let interval = (lease / 4).max(Duration::from_millis(50));
    let thread = std::thread::Builder::new()
        .name("drd-repo-lock".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(interval) {
                let info = LockInfo {
                    host: beat_host.clone(),
                    pid,
                    exclusive,
                    started_ms,
                    heartbeat_ms: now_ms(),
                    lease_ms,
                };
                if let Ok(body) = serde_json::to_vec_pretty(&info) {
                    // A failed heartbeat is retried at the next tick; if it keeps failing
                    // the lease runs out and others may break the lock, which is the
                    // right outcome for a repository we can no longer write.
                    let _ = beat_storage.write_atomic(&beat_name, &body);
                }
            }
        })
        .map_err(|e| Error::Internal(format!("start lock heartbeat thread: {e}")))?;
    Ok(LockGuard {
        storage: Arc::clone(storage),
        name,
        stop: Some(tx),
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalDir;

    #[test]
    fn shared_coexist_exclusive_conflicts_stale_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let s: Arc<dyn Storage> = Arc::new(LocalDir::new(dir.path()));
        let lease = Duration::from_secs(60);
        let mut w = Vec::new();
        let a = acquire(&s, false, lease, &mut w).unwrap();
        let b = acquire(&s, false, lease, &mut w).unwrap();
        let err = acquire(&s, true, lease, &mut w).err().unwrap();
        assert!(err.to_string().contains("is locked by"), "{err}");
        drop(a);
        drop(b);
        assert!(s.list("locks").unwrap().is_empty());

        // A lock of a dead process on this host.
        let dead = LockInfo {
            host: hostname(),
            pid: 999_999_999,
            exclusive: true,
            started_ms: now_ms(),
            heartbeat_ms: now_ms(),
            lease_ms: 600_000,
        };
        s.write_atomic("locks/dead", &serde_json::to_vec(&dead).unwrap())
            .unwrap();
        let _c = acquire(&s, true, lease, &mut w).unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("no longer runs"), "{w:?}");
    }

    #[test]
    fn expired_lease_is_broken_and_heartbeat_keeps_ours_alive() {
        let dir = tempfile::tempdir().unwrap();
        let s: Arc<dyn Storage> = Arc::new(LocalDir::new(dir.path()));
        let old = LockInfo {
            host: "elsewhere".into(),
            pid: 1,
            exclusive: false,
            started_ms: 0,
            heartbeat_ms: 0,
            lease_ms: 1000,
        };
        s.write_atomic("locks/old", &serde_json::to_vec(&old).unwrap())
            .unwrap();
        let mut w = Vec::new();
        let lease = Duration::from_millis(200);
        let _g = acquire(&s, false, lease, &mut w).unwrap();
        assert!(w[0].contains("lease expired"), "{w:?}");

        // Ours, as another process reads it, once a heartbeat has renewed it past the
        // end of its first lease (waited for, not slept).
        let read = || {
            let names = s.list("locks").unwrap();
            assert_eq!(names.len(), 1, "{names:?}");
            let body = s.read(&format!("locks/{}", names[0])).unwrap();
            serde_json::from_slice::<LockInfo>(&body).unwrap()
        };
        let first_end = read().started_ms + 200;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let renewed = loop {
            let info = read();
            if info.heartbeat_ms > first_end {
                break info;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no heartbeat in 60 s: {info:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(renewed.lease_ms, 200);
        // Just after the first lease ran out, the renewed lock holds where the lock as
        // first written would be broken (the time is given: no race with the clock).
        let unrenewed = LockInfo {
            heartbeat_ms: renewed.started_ms,
            host: renewed.host.clone(),
            ..renewed
        };
        let host = hostname();
        assert_eq!(stale(&renewed, &host, first_end + 1), None);
        assert_eq!(
            stale(&unrenewed, &host, first_end + 1),
            Some("its lease expired")
        );
    }
}
