//! `drctl heartbeat NAME`: a ping for a deadman switch, from a cron job or a script.
//! A success by default; `--start` when the job begins, `--fail` or `--exit-code N`
//! when it ends. Exits 66 for an unknown switch (the message lists the known ones).

use std::process::ExitCode;

use drd_proto::{PingKind, Reply, Request};

use super::deadman::switch_line;
use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::Failure;

/// Flags of `drctl heartbeat`.
#[derive(clap::Args)]
pub struct HeartbeatArgs {
    /// The switch, as in `[deadman.NAME]`.
    name: String,
    /// The job started: its success is due within max_runtime (or the grace).
    #[arg(long, conflicts_with_all = ["fail", "exit_code"])]
    start: bool,
    /// The job failed: the switch goes down at once.
    #[arg(long, conflicts_with = "exit_code")]
    fail: bool,
    /// The job's exit code: 0 is a success, anything else a failure.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    exit_code: Option<i32>,
    /// An id for this run, to pair a --start with its end when runs overlap.
    #[arg(long, value_name = "ID")]
    run_id: Option<String>,
}

impl HeartbeatArgs {
    fn kind(&self) -> PingKind {
        match (self.start, self.fail, self.exit_code) {
            (true, _, _) => PingKind::Start,
            (_, true, _) => PingKind::Fail,
            (_, _, Some(code)) if code != 0 => PingKind::Fail,
            _ => PingKind::Success,
        }
    }
}

/// Runs `drctl heartbeat`.
pub async fn run(global: &Global, args: &HeartbeatArgs) -> Result<ExitCode, Failure> {
    let request = Request::Heartbeat {
        name: args.name.clone(),
        kind: args.kind(),
        exit_code: args.exit_code,
        run_id: args.run_id.clone(),
    };
    let info = match ask(global, request).await? {
        Reply::Pinged(info) => info,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    let now = drd_proto::text::now_ms();
    print(global.json, &info, || switch_line(&info, now))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: HeartbeatArgs,
    }

    fn kind(args: &[&str]) -> PingKind {
        let mut all = vec!["heartbeat", "job"];
        all.extend_from_slice(args);
        Cli::parse_from(all).args.kind()
    }

    #[test]
    fn flags_pick_the_kind() {
        assert_eq!(kind(&[]), PingKind::Success);
        assert_eq!(kind(&["--start"]), PingKind::Start);
        assert_eq!(kind(&["--fail"]), PingKind::Fail);
        assert_eq!(kind(&["--exit-code", "0"]), PingKind::Success);
        assert_eq!(kind(&["--exit-code", "2"]), PingKind::Fail);
        assert_eq!(kind(&["--exit-code", "-1"]), PingKind::Fail);
        assert!(Cli::try_parse_from(["heartbeat", "job", "--start", "--fail"]).is_err());
    }
}
