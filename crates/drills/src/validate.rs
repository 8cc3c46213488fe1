//! `drctl validate`: is this host ready to recover? One line per precondition, each
//! pass, warn or fail with its evidence and, when it is not a pass, what to do.
//!
//! Every check reads what the daemon itself uses, never a second opinion: the config
//! in force and `Config::load` on its file, the backups' tier opener, `drctl jobs`'s
//! RPO, the drills' own results, `drctl audit verify`'s chain check, the deadman
//! switches as `drctl deadman` shows them. Checks that touch something outside the
//! process (a tier, the Docker engine) are bounded in time, so a hung endpoint is a
//! failed line, never a hung `drctl validate`.
//!
//! | lines | module |
//! | --- | --- |
//! | `config`, `docker`, `socket`, `audit`, `deadman`, `watchdog` | `host.rs` |
//! | `keys`, `tier NAME`, `disk ...` | `storage.rs` |
//! | `job NAME rpo`, `drills CATEGORY` | `recovery.rs` |

mod host;
mod recovery;
mod storage;

use std::time::Duration;

use drd_proto::{CheckStatus, ReadinessCheck, SwitchInfo, ValidateReport};

use crate::Drills;

/// How long one probe of something outside the process (a tier write, opening a
/// repository, the Docker handshake) may take before its line fails. Longer than an S3
/// tier's connect timeout and retry budget (3 s and 8 s), so a slow but working
/// endpoint passes; short enough that `drctl validate` answers while someone waits.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// The host's preparedness, check by check, in a fixed order. `switches` are the
/// deadman switches as `drctl deadman` shows them (the watching layer, which the
/// drills do not hold, reads them).
pub async fn validate(drills: &Drills, switches: &[SwitchInfo]) -> ValidateReport {
    let config = drills.core.config();
    // The slow lines (tiers and the engine, each up to PROBE_TIMEOUT) run together.
    let (keys, tiers, docker) = tokio::join!(
        storage::keys(drills, &config),
        storage::tiers(&config),
        host::docker(&config),
    );
    let mut checks = vec![host::config(drills, &config).await, keys];
    checks.extend(tiers);
    checks.extend(storage::disks(drills, &config).await);
    checks.extend(recovery::jobs(drills, &config).await);
    checks.extend(recovery::drills(drills, &config).await);
    checks.push(docker);
    checks.push(host::socket(&config));
    checks.push(host::audit(drills).await);
    checks.push(host::deadman(switches));
    checks.push(host::watchdog(drills));
    ValidateReport {
        host: drd_repo::hostname(),
        at_unix_ms: drills.clock.now_ms(),
        checks,
    }
}

/// A line that passed.
fn pass(name: impl Into<String>, detail: impl Into<String>) -> ReadinessCheck {
    check(name, CheckStatus::Pass, detail)
}

/// A line that works but wants someone to look.
fn warn(name: impl Into<String>, detail: impl Into<String>) -> ReadinessCheck {
    check(name, CheckStatus::Warn, detail)
}

/// A line that is not ready.
fn fail(name: impl Into<String>, detail: impl Into<String>) -> ReadinessCheck {
    check(name, CheckStatus::Fail, detail)
}

fn check(
    name: impl Into<String>,
    status: CheckStatus,
    detail: impl Into<String>,
) -> ReadinessCheck {
    ReadinessCheck {
        name: name.into(),
        status,
        detail: detail.into(),
    }
}

/// Runs blocking `work` on the blocking pool and waits at most [`PROBE_TIMEOUT`]; the
/// error says which bound ran out. A probe that overruns keeps its thread until its
/// own timeouts end it (a blocking call cannot be cancelled), but nobody waits for it.
async fn within<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(join)) => Err(format!("the check itself failed: {join}")),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(PROBE_TIMEOUT)
        )),
    }
}

/// The worst of `statuses`: a fail beats a warn beats a pass (the order they are
/// declared in).
fn worst(statuses: impl IntoIterator<Item = CheckStatus>) -> CheckStatus {
    statuses.into_iter().max().unwrap_or(CheckStatus::Pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_status_wins() {
        use CheckStatus::{Fail, Pass, Warn};
        assert_eq!(worst([]), Pass);
        assert_eq!(worst([Pass, Warn, Pass]), Warn);
        assert_eq!(worst([Warn, Fail, Pass]), Fail);
    }
}
