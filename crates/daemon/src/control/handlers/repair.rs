//! `repair index [--job NAME] [--tier NAME]`: rebuild each repository's index from its
//! pack headers, then remove the damaged index files (drd-repo's `repair_index`).
//!
//! The tier is read directly, not through the catalog's index cache: a cached good copy
//! of an index file would hide the damaged file on the tier from the repair. Afterwards
//! one open through the cache drops the rows of the files the repair removed and caches
//! the new one, so the daemon never serves a removed index file.

use drd_backup::backup::report;
use drd_backup::tiers::{self, TierError};
use drd_core::audit::Outcome;
use drd_proto::{ErrorKind, Reply};

use super::{blocking, tier_error, Ctx, HandlerResult};

pub(super) async fn repair_index(
    ctx: &Ctx,
    job: Option<String>,
    tier: Option<String>,
) -> HandlerResult {
    let config = ctx.shared.config();
    let actor = ctx.peer.actor();
    let action = match (&job, &tier) {
        (_, Some(tier)) => format!("repair index --tier {tier}"),
        (Some(job), None) => format!("repair index --job {job}"),
        (None, None) => "repair index".to_owned(),
    };
    let opener = ctx.shared.backups.tiers.clone();
    let result = blocking(move || {
        let chosen = tiers::for_request(&config, job.as_deref(), tier.as_deref())
            .map_err(|e| tier_error(&e))?;
        let keys = config.keys().map_err(|e| tier_error(&e.into()))?;
        let mut reports = Vec::new();
        for (name, tier_config) in chosen {
            let run = || -> Result<_, TierError> {
                let repo = tiers::open_uncached(&tier_config, keys)?;
                let summary = repo.repair_index()?;
                // Opening through the cache once lists the tier (which drops the rows of
                // the removed files) and caches the new index file.
                if let Err(err) = opener.open(&tier_config, keys) {
                    tracing::warn!(tier = name, cause = %err, "cannot refresh the index cache after a repair");
                }
                Ok(report::repair_report(&summary, &name, &tier_config.location()))
            };
            reports.push(run().map_err(|e| {
                let mut reply = tier_error(&e);
                if matches!(e, TierError::Repo(drd_repo::Error::Locked { .. })) {
                    reply.kind = ErrorKind::Busy;
                    reply.message.push_str(
                        "; a backup, prune or restore holds the repository; try again when it ends",
                    );
                }
                reply
            })?);
        }
        Ok(reports)
    })
    .await;
    match result {
        Ok(reports) => {
            let detail = reports
                .iter()
                .map(|r| {
                    format!(
                        "tier {}: {} damaged index files removed, {} packs indexed, {} packs unreadable",
                        r.tier,
                        r.index_files_removed.len(),
                        r.packs_indexed,
                        r.unreadable_packs.len()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            ctx.shared.audit(&actor, &action, Outcome::Ok, detail).await;
            Ok(Reply::IndexRepaired(reports))
        }
        Err(reply) => {
            ctx.shared
                .audit(&actor, &action, Outcome::Failed, reply.message.clone())
                .await;
            Err(reply)
        }
    }
}
