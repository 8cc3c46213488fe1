//! `drctl validate`: written by the validate helper (placeholder on the skeleton
//! branch only).

use drd_proto::ValidateReport;

use crate::Drills;

/// The host's preparedness, check by check.
pub async fn validate(drills: &Drills) -> ValidateReport {
    ValidateReport {
        host: drd_repo::hostname(),
        at_unix_ms: drills.clock.now_ms(),
        checks: Vec::new(),
    }
}
