//! `drctl reload`: make drd read its config file again. A bad config is refused with
//! its problems (exit 78) and the old one stays in force.

use std::process::ExitCode;

use drd_proto::{Reply, Request};

use super::{print, Global};
use crate::client::{ask, ClientError};
use crate::exit::Failure;

/// Runs `drctl reload`.
pub async fn run(global: &Global) -> Result<ExitCode, Failure> {
    let config_path = match ask(global, Request::Reload).await? {
        Reply::Reloaded { config_path } => config_path,
        other => return Err(ClientError::unexpected(&other).into()),
    };
    print(
        global.json,
        &serde_json::json!({ "reloaded": config_path }),
        || format!("reloaded {config_path}\n"),
    )?;
    Ok(ExitCode::SUCCESS)
}
