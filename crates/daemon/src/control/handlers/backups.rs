//! `backups [--job NAME] [--tier NAME]`: snapshots from the catalog cache, refreshed
//! from each tier when its snapshot files differ from what the cache holds.

use drd_proto::Reply;

use super::{backup_error, blocking, internal, Ctx, HandlerResult};
use crate::backup::{self, cache, report, BackupError};

pub(super) async fn backups(ctx: &Ctx, job: Option<String>, tier: Option<String>) -> HandlerResult {
    let config = ctx.shared.config();
    let tiers = backup::tiers_for(&config, job.as_deref(), tier.as_deref())
        .map_err(|e| backup_error(&e))?;
    let mut all = Vec::new();
    for (tier, tier_config) in tiers {
        // Opening a tier's storage may block (an S3 client), so it happens on the
        // blocking pool like the listing.
        let on_disk = {
            let tier_config = tier_config.clone();
            blocking(move || {
                let storage = crate::tiers::storage(&tier_config).map_err(|e| backup_error(&e))?;
                cache::ids_on_tier(storage.as_ref()).map_err(|e| backup_error(&e.into()))
            })
            .await?
        };
        let tier_for_query = tier.clone();
        let cached = ctx
            .shared
            .catalog
            .call("read snapshot cache", move |c| {
                cache::cached_ids(c, &tier_for_query)
            })
            .await
            .map_err(|e| internal(&e))?;
        if cached != on_disk {
            tracing::info!(
                tier,
                "snapshot cache is stale; rebuilding it from the repository"
            );
            let keys = drd_repo::KeySet::load(&config.config.keys.files)
                .map_err(|e| backup_error(&e.into()))?;
            let tier_name = tier.clone();
            let fresh = blocking(move || {
                let repo = crate::tiers::open(&tier_config, &keys).map_err(|e| backup_error(&e))?;
                let snapshots = repo
                    .snapshots()
                    .map_err(|e| backup_error(&BackupError::from(e)))?;
                Ok(snapshots
                    .iter()
                    .map(|s| report::snapshot_info(s, &tier_name))
                    .collect::<Vec<_>>())
            })
            .await?;
            let tier_name = tier.clone();
            ctx.shared
                .catalog
                .call("rebuild snapshot cache", move |c| {
                    cache::replace(c, &tier_name, &fresh)
                })
                .await
                .map_err(|e| internal(&e))?;
        }
        let (tier_name, job) = (tier.clone(), job.clone());
        let listed = ctx
            .shared
            .catalog
            .call("list snapshots", move |c| {
                cache::list(c, &tier_name, job.as_deref())
            })
            .await
            .map_err(|e| internal(&e))?;
        all.extend(listed);
    }
    all.sort_by(|a, b| a.unix_ms.cmp(&b.unix_ms).then(a.id.cmp(&b.id)));
    Ok(Reply::Snapshots(all))
}
