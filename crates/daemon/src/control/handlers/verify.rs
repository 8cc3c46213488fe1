//! `verify`: check each repository the jobs use (or one tier); with `read_data`, every
//! blob.

use drd_proto::{ProgressUnit, Reply};
use drd_repo::VerifyOptions;

use super::{backup_error, blocking, progress_sender, Ctx, HandlerResult};
use crate::backup::{self, report, BackupError};

pub(super) async fn verify(
    ctx: &Ctx,
    job: Option<String>,
    tier: Option<String>,
    read_data: bool,
    subset_percent: Option<f64>,
) -> HandlerResult {
    let config = ctx.shared.config();
    let tiers = backup::tiers_for(&config, job.as_deref(), tier.as_deref())
        .map_err(|e| backup_error(&e))?;
    let keys =
        drd_repo::KeySet::load(&config.config.keys.files).map_err(|e| backup_error(&e.into()))?;
    let mut reports = Vec::new();
    // Each tier is verified on its own, without falling back to a copy or reading the
    // catalog's index cache: the point is to learn what this tier holds.
    for (tier, tier_config) in tiers {
        let send = progress_sender(ctx.event_sender());
        let (keys, job) = (keys.clone(), job.clone());
        let report = blocking(move || {
            let run = || -> Result<_, BackupError> {
                let repo = crate::tiers::open_uncached(&tier_config, &keys)?;
                let options = VerifyOptions {
                    read_data,
                    subset_percent,
                    job,
                    threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
                };
                let task = format!("verify {tier}");
                let result = repo.verify(&options, &mut |p| {
                    send(
                        &task,
                        p.packs_done,
                        Some(p.packs_total),
                        ProgressUnit::Items,
                        format!("{} bytes read", p.bytes_done),
                    );
                })?;
                Ok(report::verify_report(
                    &result,
                    &tier,
                    &tier_config.location(),
                ))
            };
            run().map_err(|e| backup_error(&e))
        })
        .await?;
        reports.push(report);
    }
    Ok(Reply::Verified(reports))
}
