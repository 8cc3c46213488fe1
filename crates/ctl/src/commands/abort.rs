//! `drctl abort`: stop a running (or interrupted) shutdown at its next safe point and,
//! unless `--no-rollback`, start again what it stopped. Steps are printed as lines as
//! they happen, like `drctl shutdown`; exits 1 when the rollback left problems.

use std::process::ExitCode;

use drd_proto::{AbortReport, RecoveryOutcome, Reply, Request, ServiceState};

use super::shutdown::{problems_text, services_table, show_event};
use super::{print, Global};
use crate::client::{Client, ClientError};
use crate::exit::{self, Failure};

/// Flags of `drctl abort`.
#[derive(clap::Args)]
pub struct AbortArgs {
    /// Only halt: what was stopped stays stopped.
    #[arg(long)]
    no_rollback: bool,
}

/// Runs `drctl abort`.
pub async fn run(global: &Global, args: &AbortArgs) -> Result<ExitCode, Failure> {
    let mut client = Client::connect(&global.socket).await?;
    let json = global.json;
    let request = Request::Abort {
        rollback: !args.no_rollback,
    };
    let report = match client
        .request(request, |event| show_event(json, &event))
        .await?
    {
        Reply::Aborted(report) => report,
        // A recovery stopped at its safe point: what it started keeps running.
        Reply::Recovered(report) => {
            print(json, &report, || super::recover::render_report(&report))?;
            return Ok(exit::failed_if(report.outcome != RecoveryOutcome::Aborted));
        }
        other => return Err(ClientError::unexpected(&other).into()),
    };
    print(json, &report, || render_abort(&report))?;
    Ok(exit::failed_if(!report.problems.is_empty()))
}

/// The end of an abort for a person.
fn render_abort(report: &AbortReport) -> String {
    let started = report
        .started
        .iter()
        .filter(|s| s.state == ServiceState::Started)
        .count();
    let mut out = format!(
        "\nShutdown #{} aborted at {}; {}\n",
        report.run_id,
        report.stopped_at,
        match (report.rolled_back, report.problems.len()) {
            (true, 0) => format!("rolled back: {started} services started again"),
            (true, n) => format!(
                "rollback incomplete: {started} services started again, {n} problems (below)"
            ),
            (false, _) => "no rollback: what was stopped stays stopped".to_owned(),
        }
    );
    if !report.started.is_empty() {
        out.push_str(&services_table(&report.started));
    }
    out.push_str(&problems_text(&report.problems));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use drd_proto::ServiceResult;

    fn service(name: &str, state: ServiceState) -> ServiceResult {
        ServiceResult {
            name: name.to_owned(),
            level: 0,
            state,
            took_ms: Some(5),
            detail: String::new(),
        }
    }

    #[test]
    fn an_abort_says_whether_its_rollback_did_all_it_was_asked() {
        let mut report = AbortReport {
            run_id: 3,
            stopped_at: "stop level 1, where drd died".to_owned(),
            rolled_back: true,
            started: vec![
                service("app", ServiceState::Started),
                service("web", ServiceState::Started),
            ],
            problems: Vec::new(),
        };
        let text = render_abort(&report);
        assert!(
            text.contains(
                "Shutdown #3 aborted at stop level 1, where drd died; \
                 rolled back: 2 services started again"
            ),
            "{text}"
        );
        report.started[1].state = ServiceState::NotStarted;
        report
            .problems
            .push("web: not healthy within 1s".to_owned());
        let text = render_abort(&report);
        assert!(
            text.contains("rollback incomplete: 1 services started again, 1 problems"),
            "{text}"
        );
        report.rolled_back = false;
        report.started.clear();
        report.problems.clear();
        assert!(render_abort(&report).contains("no rollback"));
    }
}
