//! `verify`: check each repository the jobs use (or one tier); with `read_data`, every
//! blob.

use drd_backup::backup::report;
use drd_backup::tiers::{self, TierError};
use drd_proto::{Progress, ProgressUnit, Reply};
use drd_repo::VerifyOptions;

use super::{blocking, tier_error, Ctx, HandlerResult};

pub(super) async fn verify(
    ctx: &Ctx,
    job: Option<String>,
    tier: Option<String>,
    read_data: bool,
    subset_percent: Option<f64>,
) -> HandlerResult {
    let config = ctx.shared.config();
    let chosen =
        tiers::for_request(&config, job.as_deref(), tier.as_deref()).map_err(|e| tier_error(&e))?;
    let keys = config.keys().map_err(|e| tier_error(&e.into()))?;
    let mut reports = Vec::new();
    // Each tier is verified on its own, without falling back to a copy or reading the
    // catalog's index cache: the point is to learn what this tier holds.
    for (tier, tier_config) in chosen {
        let progress = ctx.progress();
        let (keys, job) = (keys.clone(), job.clone());
        let report = blocking(move || {
            let run = || -> Result<_, TierError> {
                let repo = tiers::open_uncached(&tier_config, &keys)?;
                let options = VerifyOptions {
                    read_data,
                    subset_percent,
                    job,
                    threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
                };
                let task = format!("verify {tier}");
                let result = repo.verify(&options, &mut |p| {
                    progress(Progress {
                        task: task.clone(),
                        done: p.packs_done,
                        total: Some(p.packs_total),
                        unit: ProgressUnit::Items,
                        detail: format!("{} bytes read", p.bytes_done),
                    });
                })?;
                Ok(report::verify_report(
                    &result,
                    &tier,
                    &tier_config.location(),
                ))
            };
            run().map_err(|e| tier_error(&e))
        })
        .await?;
        reports.push(report);
    }
    Ok(Reply::Verified(reports))
}
