//! `prune [--job NAME] [--dry-run]`: apply each job's retention on its landing tier
//! and collect the data no snapshot needs any more; a dry run only says what would go
//! and which rule keeps each snapshot that stays.

use drd_backup::jobs::retention;
use drd_core::audit::Outcome;
use drd_proto::{ErrorKind, Reply};

use super::{backup_error, blocking, Ctx, HandlerResult};

pub(super) async fn prune(ctx: &Ctx, job: Option<String>, dry_run: bool) -> HandlerResult {
    let config = ctx.shared.config();
    let actor = ctx.peer.actor();
    let action = match &job {
        Some(job) => format!("prune {job}"),
        None => "prune".to_owned(),
    };
    // Runs that hold this prune's tiers, named if the prune meets their lock.
    let holders = running_on_tiers(ctx, &config, job.as_deref());
    let report = {
        let (job, opener) = (job.clone(), ctx.shared.backups.tiers.clone());
        blocking(move || {
            retention::prune(&opener, &config, job.as_deref(), dry_run, None).map_err(|e| {
                let mut reply = backup_error(&e);
                if matches!(
                    e,
                    drd_backup::backup::BackupError::Repo(drd_repo::Error::Locked { .. })
                ) {
                    reply.kind = ErrorKind::Busy;
                    let by = if holders.is_empty() {
                        "a backup, a copy to an offsite tier or another prune".to_owned()
                    } else {
                        format!("the run of job {}", holders.join(", job "))
                    };
                    reply.message.push_str(&format!(
                        "; {by} holds the repository; try again when it ends"
                    ));
                }
                reply
            })
        })
        .await
    };
    let report = match report {
        Ok(report) => report,
        Err(reply) => {
            ctx.shared
                .audit(&actor, &action, Outcome::Failed, reply.message.clone())
                .await;
            return Err(reply);
        }
    };
    let snapshots = report
        .tiers
        .iter()
        .flat_map(|t| &t.jobs)
        .flat_map(|j| &j.snapshots);
    let (gone, kept) = snapshots.fold((0, 0), |(g, k), s| {
        if s.kept_by.is_empty() {
            (g + 1, k)
        } else {
            (g, k + 1)
        }
    });
    let freed: u64 = report
        .tiers
        .iter()
        .filter_map(|t| t.gc.as_ref())
        .map(|g| g.bytes_freed)
        .sum();
    let detail = if dry_run {
        format!("dry run: {gone} snapshots would go, {kept} stay")
    } else {
        format!("{gone} snapshots forgotten, {kept} kept, {freed} bytes freed")
    };
    ctx.shared.audit(&actor, &action, Outcome::Ok, detail).await;
    Ok(Reply::Pruned(report))
}

/// The jobs running now that write to a tier the prune of `job` (or of every job)
/// covers, as `NAME (tier TIER)`.
fn running_on_tiers(
    ctx: &Ctx,
    config: &drd_core::config::LoadedConfig,
    job: Option<&str>,
) -> Vec<String> {
    let jobs = &config.config.jobs;
    let pruned: Vec<&String> = match job {
        Some(name) => jobs.get(name).map(|j| j.tiers.iter().collect()),
        None => Some(jobs.values().flat_map(|j| &j.tiers).collect()),
    }
    .unwrap_or_default();
    let running = ctx
        .shared
        .backups
        .running_jobs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut holders: Vec<String> = running
        .iter()
        .filter_map(|name| {
            let tier = jobs.get(name)?.tiers.first()?;
            pruned
                .contains(&tier)
                .then(|| format!("{name} (tier {tier})"))
        })
        .collect();
    holders.sort();
    holders
}
