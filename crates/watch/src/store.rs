//! The monitors' memory in the catalog: one JSON value per key in `watch_state`
//! (`check/resources/disk /var`, `switch/nightly-export`, `cooldown/...`), so every
//! decision survives a restart of drd.

use std::collections::BTreeMap;

use drd_core::catalog::{Catalog, CatalogError};
use rusqlite::params;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Every value whose key starts with `prefix`, by key. A value this drd cannot read
/// (written by another version) is left out and logged: the check starts afresh.
pub async fn load<T: DeserializeOwned + Send + 'static>(
    catalog: &Catalog,
    prefix: &str,
) -> Result<BTreeMap<String, T>, CatalogError> {
    let pattern = format!("{}%", prefix.replace('%', "\\%").replace('_', "\\_"));
    let rows: Vec<(String, String)> = catalog
        .call("read monitor state", move |c| {
            let mut stmt =
                c.prepare("SELECT key, value FROM watch_state WHERE key LIKE ?1 ESCAPE '\\'")?;
            let rows = stmt.query_map([pattern], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await?;
    let mut values = BTreeMap::new();
    for (key, text) in rows {
        match serde_json::from_str(&text) {
            Ok(value) => {
                values.insert(key, value);
            }
            Err(err) => {
                tracing::warn!(key, cause = %err, "monitor state unreadable; starting it afresh");
            }
        }
    }
    Ok(values)
}

/// Writes `values` (key, value) and removes `gone` in one transaction.
pub async fn save<T: Serialize>(
    catalog: &Catalog,
    values: &[(String, T)],
    gone: Vec<String>,
    now_ms: i64,
) -> Result<(), CatalogError> {
    let rows: Vec<(String, String)> = values
        .iter()
        .map(|(key, value)| {
            let text = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
            (key.clone(), text)
        })
        .collect();
    if rows.is_empty() && gone.is_empty() {
        return Ok(());
    }
    catalog
        .call("write monitor state", move |c| {
            let tx = c.transaction()?;
            {
                let mut put = tx.prepare_cached(
                    "INSERT INTO watch_state (key, value, updated_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET value = ?2, updated_ms = ?3",
                )?;
                for (key, value) in &rows {
                    put.execute(params![key, value, now_ms])?;
                }
                let mut del = tx.prepare_cached("DELETE FROM watch_state WHERE key = ?1")?;
                for key in &gone {
                    del.execute([key])?;
                }
            }
            tx.commit()
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_come_back_by_prefix_and_removed_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("c.db")).unwrap();
        let values = vec![
            ("check/resources/disk /".to_owned(), 1),
            ("check/resources/load".to_owned(), 2),
            ("check/network/partition".to_owned(), 3),
            ("check/resources_x".to_owned(), 4),
        ];
        save(&catalog, &values, Vec::new(), 10).await.unwrap();
        let got: BTreeMap<String, i32> = load(&catalog, "check/resources/").await.unwrap();
        assert_eq!(got.values().copied().collect::<Vec<_>>(), [1, 2]);
        save::<i32>(&catalog, &[], vec!["check/resources/load".to_owned()], 11)
            .await
            .unwrap();
        let got: BTreeMap<String, i32> = load(&catalog, "check/resources/").await.unwrap();
        assert_eq!(got.len(), 1);
    }
}
