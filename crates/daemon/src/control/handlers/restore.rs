//! `restore`: a snapshot, or part of it, into a target folder, with progress.
//!
//! Callers other than root (and the daemon's own user) restore only below
//! `[restore] allowed_targets`: the restore runs with the daemon's privileges and puts
//! back owners and modes, so restoring anywhere is root-equivalent. A refusal is
//! audited.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use drd_backup::backup::{report, restore, BackupError};
use drd_core::audit::Outcome;
use drd_proto::{ErrorKind, ErrorReply, Reply, SnapshotSelector};
use drd_repo::RestoreOptions;

use super::{backup_error, blocking, tier_error, Ctx, HandlerResult};

/// The restore request's fields.
pub(super) struct RestoreRequest {
    pub selector: SnapshotSelector,
    pub job: Option<String>,
    pub tier: Option<String>,
    pub paths: Vec<String>,
    pub target: String,
    pub overwrite: bool,
    pub allow_older: bool,
}

pub(super) async fn restore(ctx: &Ctx, request: RestoreRequest) -> HandlerResult {
    let target = PathBuf::from(&request.target);
    if !target.is_absolute() {
        return Err(ErrorReply {
            kind: ErrorKind::BadRequest,
            message: format!(
                "restore target {} must be an absolute path",
                target.display()
            ),
        });
    }
    let config = ctx.shared.config();
    let allowed = config
        .config
        .restore
        .allowed_targets(&config.config.daemon.state_dir);
    let beneath = match confine(ctx.peer.uid, &target, &allowed) {
        Ok(beneath) => beneath,
        Err(message) => {
            let detail = format!("{} to {}: {message}", describe(&request), target.display());
            ctx.shared
                .audit(&ctx.peer.actor(), "restore", Outcome::Refused, detail)
                .await;
            return Err(ErrorReply {
                kind: ErrorKind::PermissionDenied,
                message,
            });
        }
    };
    let what = describe(&request);
    let (job, tier) = (request.job.clone(), request.tier.clone());
    let (paths, overwrite, selector) = (request.paths, request.overwrite, request.selector);
    let result = async {
        let opened = {
            let (config, opener) = (config.clone(), ctx.shared.backups.tiers.clone());
            let catalog = ctx.shared.catalog.clone();
            let job = job.clone();
            blocking(move || {
                restore::open(&opener, &catalog, &config, job.as_deref(), tier.as_deref())
                    .map_err(|e| tier_error(&e))
            })
            .await?
        };
        let progress = ctx.progress();
        let allow_older = request.allow_older;
        let options = RestoreOptions {
            paths: paths.iter().map(PathBuf::from).collect(),
            target: target.clone(),
            overwrite,
            threads: restore::threads(&config),
            beneath,
        };
        blocking(move || {
            let run = || -> Result<_, BackupError> {
                let selected = opened.select(&selector, job.as_deref(), allow_older)?;
                let restored = opened.restore(selected, &options, &*progress)?;
                let mut report = report::restore_report(
                    &restored.summary,
                    &restored.snapshot,
                    &opened.tier,
                    &options.target,
                );
                // What the choice of snapshot passed over comes first.
                report.warnings.splice(0..0, restored.warnings);
                Ok((report, restored.summary.damaged))
            };
            run().map_err(|e| backup_error(&e))
        })
        .await
    }
    .await;
    let actor = ctx.peer.actor();
    match result {
        Ok((report, damaged)) => {
            let mut detail = format!(
                "snapshot {} ({}) to {}: {} files, {} bytes",
                report.snapshot.id,
                what,
                target.display(),
                report.files,
                report.bytes
            );
            let outcome = if damaged.is_empty() {
                Outcome::Ok
            } else {
                // The reply lists at most DAMAGED_LISTED; the log names every one.
                for d in &damaged {
                    tracing::warn!(
                        snapshot = %report.snapshot.id,
                        path = %d.path,
                        kept_as = ?d.kept_as,
                        cause = %d.reason,
                        "restore: file not restored whole"
                    );
                }
                let _ = write!(
                    detail,
                    "; INCOMPLETE: {} file(s) not restored whole, first {}",
                    damaged.len(),
                    damaged[0].path
                );
                Outcome::Failed
            };
            ctx.shared.audit(&actor, "restore", outcome, detail).await;
            Ok(Reply::Restored(Box::new(report)))
        }
        Err(reply) => {
            let detail = format!("{what} to {}: {}", target.display(), reply.message);
            ctx.shared
                .audit(&actor, "restore", Outcome::Failed, detail)
                .await;
            Err(reply)
        }
    }
}

fn describe(request: &RestoreRequest) -> String {
    let which = match &request.selector {
        SnapshotSelector::Latest => "latest".to_owned(),
        SnapshotSelector::Id(id) => id.clone(),
        SnapshotSelector::At(at) => format!("at {}", drd_core::util::rfc3339(*at)),
    };
    let job = request
        .job
        .as_deref()
        .map(|j| format!(" of {j}"))
        .unwrap_or_default();
    let paths = if request.paths.is_empty() {
        String::new()
    } else {
        format!(", paths {}", request.paths.join(" "))
    };
    format!("{which}{job}{paths}")
}

/// Where a caller with `uid` may restore `target`: `Ok(None)` anywhere (root and the
/// daemon's own user), `Ok(Some(prefix))` below that allowed prefix (the restore then
/// walks from it without following symlinks), or `Err` with the refusal to show.
fn confine(uid: u32, target: &Path, allowed: &[PathBuf]) -> Result<Option<PathBuf>, String> {
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        return Ok(None);
    }
    let plain = !target
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir));
    if let Some(prefix) = allowed.iter().find(|p| plain && target.starts_with(p)) {
        return Ok(Some(prefix.clone()));
    }
    let shown: Vec<String> = allowed.iter().map(|p| p.display().to_string()).collect();
    Err(format!(
        "permission denied: uid {uid} may restore only below [restore] allowed_targets \
         ({}), and {} is not below any of them; restore there, or ask an admin to add a \
         folder to restore.allowed_targets in the drd config (root may restore anywhere)",
        if shown.is_empty() {
            "none configured".to_owned()
        } else {
            shown.join(", ")
        },
        target.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_restores_anywhere_and_others_below_an_allowed_prefix() {
        let allowed = vec![PathBuf::from("/var/lib/drd/restores")];
        assert_eq!(confine(0, Path::new("/etc"), &allowed), Ok(None));
        let uid = if nix::unistd::geteuid().is_root() {
            4242
        } else {
            0
        };
        if uid == 0 {
            return; // Not root: every other uid is the daemon's own or root.
        }
        assert_eq!(
            confine(uid, Path::new("/var/lib/drd/restores/x"), &allowed),
            Ok(Some(allowed[0].clone()))
        );
        for bad in [
            "/etc/drd",
            "/var/lib/drd/restores-evil",
            "/var/lib/drd/restores/../../../etc",
        ] {
            let err = confine(uid, Path::new(bad), &allowed).unwrap_err();
            assert!(err.contains("restore.allowed_targets"), "{err}");
            assert!(err.contains("/var/lib/drd/restores"), "{err}");
        }
    }
}
