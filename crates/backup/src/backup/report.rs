//! From the repository engine's results to what goes over the wire (and what the
//! offline commands print).

use drd_proto::{
    AffectedFile, BackupReport, DamagedFile, RepairReport, RestoreReport, VerifyProblem,
    VerifyReport,
};
use drd_repo::{BackupSummary, Problem, RepairSummary, RestoreSummary, Snapshot};

use crate::tiers::snapshot_cache::snapshot_info;

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A finished backup.
pub fn backup_report(summary: &BackupSummary, tier: &str) -> BackupReport {
    let stats = &summary.snapshot.stats;
    BackupReport {
        snapshot: snapshot_info(&summary.snapshot, tier),
        files_new: stats.files_new,
        files_changed: stats.files_changed,
        files_unchanged: stats.files_unchanged,
        bytes_read: stats.bytes_read,
        bytes_added: stats.bytes_added,
        warnings: summary.warnings.clone(),
        elapsed_ms: ms(summary.elapsed),
    }
}

/// A finished restore.
pub fn restore_report(
    summary: &RestoreSummary,
    snapshot: &Snapshot,
    tier: &str,
    target: &std::path::Path,
) -> RestoreReport {
    RestoreReport {
        snapshot: snapshot_info(snapshot, tier),
        target: target.display().to_string(),
        files: summary.files,
        dirs: summary.dirs,
        symlinks: summary.symlinks,
        bytes: summary.bytes,
        warnings: summary.warnings.clone(),
        elapsed_ms: ms(summary.elapsed),
        fifos: summary.fifos,
        damaged: summary
            .damaged
            .iter()
            .take(RestoreReport::DAMAGED_LISTED)
            .scan(0usize, |listed, d| {
                let kept = d.kept_as.as_ref().map_or(0, |p| p.as_os_str().len());
                *listed += d.path.len() + d.reason.len() + kept + 16;
                (*listed <= RestoreReport::DAMAGED_LISTED_BYTES).then_some(d)
            })
            .map(damaged_file)
            .collect(),
        damaged_total: summary.damaged.len() as u64,
    }
}

/// A file a restore could not bring back whole.
pub fn damaged_file(d: &drd_repo::DamagedFile) -> DamagedFile {
    DamagedFile {
        path: d.path.clone(),
        kept_as: d.kept_as.as_ref().map(|p| p.display().to_string()),
        reason: d.reason.clone(),
    }
}

/// A finished verify of one repository.
pub fn verify_report(report: &drd_repo::VerifyReport, tier: &str, location: &str) -> VerifyReport {
    VerifyReport {
        tier: tier.to_owned(),
        location: location.to_owned(),
        snapshots: report.snapshots_checked,
        packs: report.packs_checked,
        packs_read: report.packs_read,
        blobs_read: report.blobs_read,
        problems: report.problems.iter().map(problem).collect(),
        reclaimable_bytes: report.reclaimable_bytes,
        warnings: report.warnings.clone(),
        elapsed_ms: ms(report.elapsed),
    }
}

fn problem(problem: &Problem) -> VerifyProblem {
    let affected = match problem {
        Problem::BadBlob { affected, .. } | Problem::MissingBlob { affected, .. } => affected
            .iter()
            .map(|a| AffectedFile {
                snapshot: a.snapshot.clone(),
                path: a.path.clone(),
            })
            .collect(),
        _ => Vec::new(),
    };
    VerifyProblem {
        message: problem.to_string(),
        affected,
    }
}

/// A finished index repair of one repository.
pub fn repair_report(summary: &RepairSummary, tier: &str, location: &str) -> RepairReport {
    let with_reason = |list: &[(String, String)]| {
        list.iter()
            .map(|(file, reason)| format!("{file} ({reason})"))
            .collect()
    };
    RepairReport {
        tier: tier.to_owned(),
        location: location.to_owned(),
        index_files_removed: with_reason(&summary.index_files_removed),
        index_file_written: summary.index_file_written.clone(),
        packs_indexed: summary.packs_indexed,
        blobs_indexed: summary.blobs_indexed,
        unreadable_packs: with_reason(&summary.unreadable_packs),
        warnings: summary.warnings.clone(),
        elapsed_ms: ms(summary.elapsed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_with_very_many_damaged_files_still_fits_in_one_frame() {
        let summary = RestoreSummary {
            damaged: (0..20_000)
                .map(|i| drd_repo::DamagedFile {
                    path: format!("/{}/{i}", "long-folder-name".repeat(20)),
                    kept_as: Some(format!("/t/{}/{i}.damaged", "x".repeat(300)).into()),
                    reason: "blob 0123 in pack data/01/0123 is damaged: does not decrypt".into(),
                })
                .collect(),
            ..RestoreSummary::default()
        };
        let snapshot = Snapshot {
            id: "00".repeat(32),
            job: "j".into(),
            host: "h".into(),
            time_ms: 0,
            parent: None,
            sources: vec![],
            tree: drd_repo::Id::from_hex(&"00".repeat(32)).unwrap(),
            stats: drd_repo::BackupStats::default(),
        };
        let report = restore_report(&summary, &snapshot, "local", std::path::Path::new("/t"));
        assert_eq!(report.damaged_total, 20_000);
        assert!(!report.damaged.is_empty() && report.damaged.len() < 20_000);
        let reply = drd_proto::Response::Ok(drd_proto::Reply::Restored(Box::new(report)));
        let frame = drd_proto::codec::encode(&drd_proto::ServerFrame::Response(reply)).unwrap();
        assert!(
            frame.len() < drd_proto::MAX_FRAME_LEN / 2,
            "{}",
            frame.len()
        );
    }
}
