//! `drctl validate`: is this host ready to recover? One line per check, pass / warn /
//! fail with the evidence and what to do; exit 1 if any check fails.

use std::fmt::Write as _;
use std::process::ExitCode;

use drd_proto::{CheckStatus, Reply, Request, ValidateReport};

use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::{self, Failure};

/// Runs `drctl validate`.
pub async fn run(global: &Global) -> Result<ExitCode, Failure> {
    let report = match ask(global, Request::Validate).await? {
        Reply::Validated(report) => report,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    print(global.json, &report, || validate_text(&report))?;
    Ok(exit::failed_if(
        report.checks.iter().any(|c| c.status == CheckStatus::Fail),
    ))
}

/// One line per check, then a verdict.
pub fn validate_text(report: &ValidateReport) -> String {
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for c in &report.checks {
        let _ = writeln!(
            out,
            "{:<4}  {:<width$}  {}",
            c.status.as_str().to_uppercase(),
            c.name,
            c.detail
        );
    }
    let count = |s: CheckStatus| report.checks.iter().filter(|c| c.status == s).count();
    let _ = writeln!(
        out,
        "{}: {} pass, {} warn, {} fail",
        if count(CheckStatus::Fail) > 0 {
            "NOT READY"
        } else {
            "READY"
        },
        count(CheckStatus::Pass),
        count(CheckStatus::Warn),
        count(CheckStatus::Fail)
    );
    out
}
