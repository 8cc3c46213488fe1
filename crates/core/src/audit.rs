//! The tamper-evident audit log.
//!
//! Each entry stores the hash of the one before it and its own hash over every field,
//! so editing, inserting or deleting a row anywhere but the very end breaks the chain
//! at that row; `verify` names it. (Cutting rows off the end is caught by comparing the
//! head hash with a copy kept elsewhere, which `drctl audit verify` prints.) Entries
//! also go to tracing, and so to the journal.

use std::fmt;

use drd_proto::{AuditEntry, AuditMismatch, AuditVerifyReport};
use rusqlite::{params, OptionalExtension, Row};

use crate::catalog::{Catalog, CatalogError};
use crate::util::unix_ms_now;

/// The `prev_hash` of the first entry.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who did something.
#[derive(Debug, Clone)]
pub enum Actor {
    /// A client on the socket, by its peer credentials.
    Peer {
        /// The peer's uid.
        uid: u32,
        /// The peer's primary gid.
        gid: u32,
        /// The peer's pid.
        pid: i32,
    },
    /// A signal sent to the daemon.
    Signal(&'static str),
    /// The daemon itself (start, stop).
    Daemon,
    /// A monitor check or deadman switch acting through the policy, by its name
    /// (`resources/disk /var`, `deadman nightly-export`).
    Monitor(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Peer { uid, gid, pid } => write!(f, "uid={uid} gid={gid} pid={pid}"),
            Actor::Signal(name) => write!(f, "signal {name}"),
            Actor::Daemon => f.write_str("daemon"),
            Actor::Monitor(name) => write!(f, "monitor {name}"),
        }
    }
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It was done.
    Ok,
    /// It was not allowed, or not possible, and nothing changed.
    Refused,
    /// It was tried and failed.
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// The audit log, stored in the catalog.
#[derive(Clone)]
pub struct AuditLog {
    catalog: Catalog,
}

impl AuditLog {
    /// The audit log in `catalog`.
    pub fn new(catalog: Catalog) -> AuditLog {
        AuditLog { catalog }
    }

    /// Appends an entry and logs it.
    pub async fn record(
        &self,
        actor: &Actor,
        action: &str,
        outcome: Outcome,
        detail: impl Into<String>,
    ) -> Result<AuditEntry, CatalogError> {
        let detail = detail.into();
        match outcome {
            Outcome::Ok => {
                tracing::info!(target: "drd::audit", %actor, action, outcome = outcome.as_str(), detail);
            }
            _ => {
                tracing::warn!(target: "drd::audit", %actor, action, outcome = outcome.as_str(), detail);
            }
        }
        let (actor, action) = (actor.to_string(), action.to_owned());
        self.catalog
            .call("append audit entry", move |conn| {
                let tx = conn.transaction()?;
                let prev: Option<(i64, String)> = tx
                    .query_row(
                        "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                let (id, prev_hash) = match prev {
                    Some((id, hash)) => (id + 1, hash),
                    None => (1, GENESIS.to_owned()),
                };
                let mut entry = AuditEntry {
                    id,
                    unix_ms: unix_ms_now(),
                    actor,
                    action,
                    outcome: outcome.as_str().to_owned(),
                    detail,
                    hash: String::new(),
                };
                entry.hash = entry_hash(&prev_hash, &entry);
                tx.execute(
                    "INSERT INTO audit (id, unix_ms, actor, action, outcome, detail, prev_hash, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        entry.id,
                        entry.unix_ms,
                        entry.actor,
                        entry.action,
                        entry.outcome,
                        entry.detail,
                        prev_hash,
                        entry.hash
                    ],
                )?;
                tx.commit()?;
                Ok(entry)
            })
            .await
    }

    /// Entries at or after `since_unix_ms`, oldest first; with `limit > 0`, only the
    /// newest `limit` of them.
    pub async fn list(
        &self,
        since_unix_ms: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, CatalogError> {
        let since = since_unix_ms.unwrap_or(i64::MIN);
        let limit = if limit == 0 { -1 } else { i64::from(limit) };
        self.catalog
            .call("list audit entries", move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT * FROM (
                        SELECT id, unix_ms, actor, action, outcome, detail, hash FROM audit
                        WHERE unix_ms >= ?1 ORDER BY id DESC LIMIT ?2
                     ) ORDER BY id",
                )?;
                let rows = stmt.query_map(params![since, limit], entry_from_row)?;
                rows.collect()
            })
            .await
    }

    /// Recomputes the chain. `progress` is called with (checked, total) now and then.
    pub async fn verify(
        &self,
        progress: impl Fn(u64, u64) + Send + 'static,
    ) -> Result<AuditVerifyReport, CatalogError> {
        self.catalog
            .call("verify audit chain", move |conn| {
                let total: u64 = conn.query_row("SELECT count(*) FROM audit", [], |r| r.get(0))?;
                let mut stmt = conn.prepare(
                    "SELECT id, unix_ms, actor, action, outcome, detail, hash, prev_hash
                     FROM audit ORDER BY id",
                )?;
                let mut rows = stmt.query([])?;
                let mut expected_prev = GENESIS.to_owned();
                let mut expected_id = 1;
                let mut checked = 0;
                while let Some(row) = rows.next()? {
                    let entry = entry_from_row(row)?;
                    let prev_hash: String = row.get(7)?;
                    checked += 1;
                    if checked % 1000 == 0 {
                        progress(checked, total);
                    }
                    let reason = if entry.id != expected_id {
                        Some(format!(
                            "entry {expected_id} is missing (the chain jumps to {})",
                            entry.id
                        ))
                    } else if prev_hash != expected_prev {
                        Some("its link to the previous entry does not match: an entry before it was removed or replaced".to_owned())
                    } else if entry_hash(&prev_hash, &entry) != entry.hash {
                        Some("its contents do not match its hash: the entry was edited".to_owned())
                    } else {
                        None
                    };
                    if let Some(reason) = reason {
                        let id = expected_id.min(entry.id);
                        return Ok(AuditVerifyReport {
                            entries: checked,
                            first_mismatch: Some(AuditMismatch { id, reason }),
                            head_hash: None,
                        });
                    }
                    expected_prev = entry.hash;
                    expected_id += 1;
                }
                progress(checked, total);
                Ok(AuditVerifyReport {
                    entries: checked,
                    first_mismatch: None,
                    head_hash: (checked > 0).then_some(expected_prev),
                })
            })
            .await
    }
}

fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        id: row.get(0)?,
        unix_ms: row.get(1)?,
        actor: row.get(2)?,
        action: row.get(3)?,
        outcome: row.get(4)?,
        detail: row.get(5)?,
        hash: row.get(6)?,
    })
}

/// BLAKE3 over the previous hash and every field, each length-prefixed so that no two
/// different entries hash the same bytes.
fn entry_hash(prev_hash: &str, entry: &AuditEntry) -> String {
    let mut hasher = blake3::Hasher::new();
    let id = entry.id.to_le_bytes();
    let unix_ms = entry.unix_ms.to_le_bytes();
    let fields: [&[u8]; 7] = [
        prev_hash.as_bytes(),
        &id,
        &unix_ms,
        entry.actor.as_bytes(),
        entry.action.as_bytes(),
        entry.outcome.as_bytes(),
        entry.detail.as_bytes(),
    ];
    for field in fields {
        hasher.update(&(field.len() as u64).to_le_bytes());
        hasher.update(field);
    }
    hasher.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn log_with(n: usize) -> (tempfile::TempDir, Catalog, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("c.db")).unwrap();
        let audit = AuditLog::new(catalog.clone());
        for i in 0..n {
            audit
                .record(&Actor::Daemon, "test", Outcome::Ok, format!("entry {i}"))
                .await
                .unwrap();
        }
        (dir, catalog, audit)
    }

    #[tokio::test]
    async fn intact_chain_verifies() {
        let (_dir, _catalog, audit) = log_with(5).await;
        let report = audit.verify(|_, _| {}).await.unwrap();
        assert_eq!(report.entries, 5);
        assert!(report.first_mismatch.is_none());
        assert!(report.head_hash.is_some());
    }

    #[tokio::test]
    async fn updates_and_deletes_are_refused() {
        let (_dir, catalog, _audit) = log_with(2).await;
        let update = catalog
            .call("tamper", |c| c.execute("UPDATE audit SET detail = 'x'", []))
            .await;
        assert!(update.unwrap_err().to_string().contains("append-only"));
        let delete = catalog
            .call("tamper", |c| c.execute("DELETE FROM audit", []))
            .await;
        assert!(delete.is_err());
    }

    #[tokio::test]
    async fn edited_and_deleted_rows_are_named() {
        let (_dir, catalog, audit) = log_with(6).await;
        catalog
            .call("tamper", |c| {
                c.execute_batch(
                    "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;
                     UPDATE audit SET detail = 'forged' WHERE id = 4;",
                )
            })
            .await
            .unwrap();
        let mismatch = audit
            .verify(|_, _| {})
            .await
            .unwrap()
            .first_mismatch
            .unwrap();
        assert_eq!(mismatch.id, 4);
        assert!(mismatch.reason.contains("edited"));

        catalog
            .call("tamper", |c| {
                c.execute("DELETE FROM audit WHERE id = 2", [])
            })
            .await
            .unwrap();
        let mismatch = audit
            .verify(|_, _| {})
            .await
            .unwrap()
            .first_mismatch
            .unwrap();
        assert_eq!(mismatch.id, 2);
        assert!(mismatch.reason.contains("missing"));
    }

    #[tokio::test]
    async fn list_filters_by_time_and_keeps_the_newest() {
        let (_dir, _catalog, audit) = log_with(10).await;
        let last3 = audit.list(None, 3).await.unwrap();
        assert_eq!(last3.iter().map(|e| e.id).collect::<Vec<_>>(), [8, 9, 10]);
        let future = audit.list(Some(unix_ms_now() + 60_000), 0).await.unwrap();
        assert!(future.is_empty());
    }
}
