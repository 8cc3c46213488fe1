//! `backups [--job NAME] [--tier NAME]`: the snapshots on each tier, read from the tier
//! itself, damaged snapshot files included.
//!
//! Every snapshot file is read and decrypted on each listing (without loading the
//! repository's index): a file that rots in place keeps its name, so a listing that
//! trusted names alone would show a damaged snapshot as sound. A damaged file is
//! listed with its file and why, and with the job, host and time the catalog read
//! from it while it was intact; when the catalog never read it, its job is unknown and
//! it is listed under any `--job`. The catalog's snapshot cache is brought in step on
//! the way (see `tiers::snapshot_cache`).

use drd_backup::tiers::{self, snapshot_cache};
use drd_proto::{Reply, SnapshotInfo};

use super::{tier_error, Ctx, HandlerResult};

pub(super) async fn backups(ctx: &Ctx, job: Option<String>, tier: Option<String>) -> HandlerResult {
    let config = ctx.shared.config();
    let chosen =
        tiers::for_request(&config, job.as_deref(), tier.as_deref()).map_err(|e| tier_error(&e))?;
    let keys = config.keys().map_err(|e| tier_error(&e.into()))?;
    let mut all = Vec::new();
    for (tier, tier_config) in chosen {
        let listing = snapshot_cache::read_tier(
            &ctx.shared.catalog,
            &ctx.shared.backups.tiers,
            &tier,
            &tier_config,
            keys,
        )
        .await
        .map_err(|e| tier_error(&e))?;
        let of_job = |s: &SnapshotInfo| job.as_ref().is_none_or(|j| &s.job == j);
        all.extend(listing.sound.into_iter().filter(of_job));
        // A damaged file whose job is unknown might be any job's.
        all.extend(
            listing
                .damaged
                .into_iter()
                .filter(|d| d.job.is_empty() || of_job(d)),
        );
    }
    all.sort_by(|a, b| a.unix_ms.cmp(&b.unix_ms).then(a.id.cmp(&b.id)));
    Ok(Reply::Snapshots(all))
}
