//! `backups [--job NAME] [--tier NAME]`: the snapshots on each tier, read from the tier
//! itself, damaged snapshot files included.
//!
//! Every snapshot file is read and decrypted on each listing (without loading the
//! repository's index): a file that rots in place keeps its name, so a listing that
//! trusted names alone would show a damaged snapshot as sound. A damaged file is
//! listed with its file and why, and with the job, host and time the catalog read
//! from it while it was intact; when the catalog never read it, its job is unknown and
//! it is listed under any `--job`. The catalog's snapshot cache is brought in step on
//! the way (see `backup::cache`).

use drd_proto::{Reply, SnapshotInfo};

use super::{backup_error, blocking, internal, Ctx, HandlerResult};
use crate::backup::{cache, report};

pub(super) async fn backups(ctx: &Ctx, job: Option<String>, tier: Option<String>) -> HandlerResult {
    let config = ctx.shared.config();
    let tiers = crate::backup::tiers_for(&config, job.as_deref(), tier.as_deref())
        .map_err(|e| backup_error(&e))?;
    let keys =
        drd_repo::KeySet::load(&config.config.keys.files).map_err(|e| backup_error(&e.into()))?;
    let mut all = Vec::new();
    for (tier, tier_config) in tiers {
        // Opening a tier's storage may block (an S3 client), so it happens on the
        // blocking pool like the reading.
        let (sound, damaged) = {
            let (tier, keys) = (tier.clone(), keys.clone());
            blocking(move || {
                let storage = crate::tiers::storage(&tier_config).map_err(|e| backup_error(&e))?;
                let list = drd_repo::read_snapshots(storage.as_ref(), &keys)
                    .map_err(|e| backup_error(&e.into()))?;
                let sound: Vec<SnapshotInfo> = list
                    .snapshots
                    .iter()
                    .map(|s| report::snapshot_info(s, &tier))
                    .collect();
                let damaged: Vec<SnapshotInfo> = list
                    .damaged
                    .iter()
                    .map(|d| report::damaged_info(d, &tier))
                    .collect();
                Ok((sound, damaged))
            })
            .await?
        };
        for d in &damaged {
            tracing::warn!(
                tier,
                file = d.file.as_deref().unwrap_or_default(),
                reason = d.damaged.as_deref().unwrap_or_default(),
                "snapshot file is damaged"
            );
        }
        // In step with what was read; a damaged file keeps (and is listed with) what
        // was read from it while it was intact.
        let (tier_name, mut fresh) = (tier.clone(), sound.clone());
        fresh.extend(damaged.iter().cloned());
        let damaged = ctx
            .shared
            .catalog
            .call("refresh snapshot cache", move |c| {
                cache::replace(c, &tier_name, &fresh)?;
                let known = cache::known(c, &tier_name)?;
                Ok(damaged
                    .into_iter()
                    .map(|d| match known.get(&d.id) {
                        Some(k) => SnapshotInfo {
                            damaged: d.damaged,
                            file: d.file,
                            ..k.clone()
                        },
                        None => d,
                    })
                    .collect::<Vec<_>>())
            })
            .await
            .map_err(|e| internal(&e))?;
        let of_job = |s: &SnapshotInfo| job.as_ref().is_none_or(|j| &s.job == j);
        all.extend(sound.into_iter().filter(of_job));
        // A damaged file whose job is unknown might be any job's.
        all.extend(
            damaged
                .into_iter()
                .filter(|d| d.job.is_empty() || of_job(d)),
        );
    }
    all.sort_by(|a, b| a.unix_ms.cmp(&b.unix_ms).then(a.id.cmp(&b.id)));
    Ok(Reply::Snapshots(all))
}
