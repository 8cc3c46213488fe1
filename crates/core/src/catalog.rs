//! The catalog: the daemon's SQLite database, owned by one thread.
//!
//! Every query runs on that thread, sent as a closure over a channel, so the async
//! runtime never blocks on SQLite and there is exactly one writer. The database runs in
//! WAL mode with a busy timeout; its schema version lives in the `meta` table and
//! migrations run in IMMEDIATE transactions, so a crash mid-migration leaves the old
//! schema whole. The schema itself is in [`migrations`].

pub mod migrations;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior};
use tokio::sync::oneshot;

use migrations::MIGRATIONS;

/// A catalog failure.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// SQLite refused something.
    #[error("catalog {path}: {op}: {source}")]
    Sqlite {
        /// What the catalog was doing.
        op: &'static str,
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer drd.
    #[error(
        "catalog {path} has schema version {found}, newer than this drd knows ({known}); \
         run the drd that wrote it, or move the file aside to rebuild it"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The newest version this build knows.
        known: u32,
    },
    /// The catalog thread has stopped (the daemon is stopping).
    #[error("the catalog is closed")]
    Closed,
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

enum Message {
    Run(Job),
    Close(oneshot::Sender<()>),
}

/// Handle to the catalog thread. Cheap to clone; every clone talks to the same thread.
#[derive(Clone)]
pub struct Catalog {
    tx: mpsc::Sender<Message>,
    path: PathBuf,
}

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

impl Catalog {
    /// Opens (creating if needed) the catalog at `path`, migrates it, and starts its
    /// thread.
    pub fn open(path: &Path) -> Result<Catalog, CatalogError> {
        let sqlite = |op| {
            let path = path.to_owned();
            move |source| CatalogError::Sqlite { op, path, source }
        };
        let mut conn = Connection::open(path).map_err(sqlite("open"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sqlite("set busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite("enable WAL"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite("set synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sqlite("enable foreign keys"))?;
        migrate(&mut conn, path)?;

        let (tx, rx) = mpsc::channel::<Message>();
        std::thread::Builder::new()
            .name("drd-catalog".to_owned())
            .spawn(move || serve(conn, &rx))
            .map_err(|err| CatalogError::Sqlite {
                op: "start catalog thread",
                path: path.to_owned(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(err)),
            })?;
        Ok(Catalog {
            tx,
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the catalog thread and returns its result. `op` names the work for
    /// the error message.
    pub async fn call<T, F>(&self, op: &'static str, f: F) -> Result<T, CatalogError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let result = self.submit(f)?.await.map_err(|_| CatalogError::Closed)?;
        self.finish(op, result)
    }

    /// [`Catalog::call`] for blocking code (the repository engine's threads). Must not
    /// be called from an async task: it blocks until the catalog thread answers.
    pub fn call_blocking<T, F>(&self, op: &'static str, f: F) -> Result<T, CatalogError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let result = self
            .submit(f)?
            .blocking_recv()
            .map_err(|_| CatalogError::Closed)?;
        self.finish(op, result)
    }

    /// Queues `f` for the catalog thread; the receiver gets its result.
    fn submit<T, F>(&self, f: F) -> Result<oneshot::Receiver<rusqlite::Result<T>>, CatalogError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.tx
            .send(Message::Run(job))
            .map_err(|_| CatalogError::Closed)?;
        Ok(result)
    }

    fn finish<T>(&self, op: &'static str, result: rusqlite::Result<T>) -> Result<T, CatalogError> {
        result.map_err(|source| CatalogError::Sqlite {
            op,
            path: self.path.clone(),
            source,
        })
    }

    /// Checkpoints the WAL and stops the thread; later calls fail with `Closed`.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

fn serve(mut conn: Connection, rx: &mpsc::Receiver<Message>) {
    while let Ok(message) = rx.recv() {
        match message {
            Message::Run(job) => job(&mut conn),
            Message::Close(done) => {
                if let Err(err) = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
                    tracing::warn!(cause = %err, "catalog checkpoint on close failed");
                }
                drop(conn);
                let _ = done.send(());
                return;
            }
        }
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), CatalogError> {
    let sqlite = |op| {
        let path = path.to_owned();
        move |source| CatalogError::Sqlite { op, path, source }
    };
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    )
    .map_err(sqlite("create meta table"))?;
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite("begin migration"))?;
        let found: u32 = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |row| row.get::<_, String>(0),
            )
            .optional()
            .map_err(sqlite("read schema version"))?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(CatalogError::TooNew {
                path: path.to_owned(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        tx.execute_batch(MIGRATIONS[found as usize])
            .map_err(sqlite("migrate schema"))?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [(found + 1).to_string()],
        )
        .map_err(sqlite("record schema version"))?;
        tx.commit().map_err(sqlite("commit migration"))?;
        tracing::info!(version = found + 1, path = %path.display(), "catalog migrated");
    }
}

/// Checkpoints the catalog's write-ahead log and lets SQLite tune its statistics,
/// hourly, so the WAL does not grow without bound on a busy host.
pub struct CatalogMaintenance {
    /// The catalog to maintain.
    pub catalog: Catalog,
    /// Time between runs.
    pub every: Duration,
}

#[async_trait::async_trait]
impl crate::workers::Worker for CatalogMaintenance {
    fn name(&self) -> &'static str {
        "catalog-maintenance"
    }

    async fn step(&mut self) -> Result<String, String> {
        self.catalog
            .call("checkpoint", |c| {
                let pages: i64 =
                    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(2))?;
                c.execute_batch("PRAGMA optimize")?;
                Ok(pages)
            })
            .await
            .map(|pages| format!("checkpointed {pages} WAL pages"))
            .map_err(|err| err.to_string())
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.every).await;
    }
}

/// Column `idx` (named `column`, `TABLE.COLUMN`) read through `parse`: a stored name
/// this drd does not know is an error that names the column and the value, never a
/// guess. Every subsystem reads its stored names through it.
pub fn stored<T>(
    row: &Row<'_>,
    idx: usize,
    column: &str,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    parse(&text).ok_or_else(|| {
        let message = format!(
            "{column} holds {text:?}, which this drd does not know; \
             was the catalog written by a newer drd?"
        );
        rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, message.into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_migrates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let catalog = Catalog::open(&path).unwrap();
        let version: String = catalog
            .call("read", |c| {
                c.query_row(
                    "SELECT value FROM meta WHERE key='schema_version'",
                    [],
                    |r| r.get(0),
                )
            })
            .await
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string());
        catalog.close().await;
        assert!(matches!(
            catalog.call("after close", |_| Ok(())).await,
            Err(CatalogError::Closed)
        ));
        Catalog::open(&path).unwrap().close().await;
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        drop(Catalog::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE meta SET value = '999' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
        drop(conn);
        let err = Catalog::open(&path).err().unwrap();
        assert!(
            err.to_string().contains("newer than this drd knows"),
            "{err}"
        );
    }
}
