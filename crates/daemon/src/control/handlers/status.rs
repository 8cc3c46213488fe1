//! `status`: one screen an on-call engineer can act on.

use drd_proto::{DaemonState, Reply, StatusReport};

use super::{internal, Ctx, HandlerResult};
use drd_core::catalog::SCHEMA_VERSION;
use drd_core::util::{unix_ms, unix_ms_now};

pub(super) async fn status(ctx: &Ctx, audit_tail: u32) -> HandlerResult {
    let shared = &ctx.shared;
    let config = shared.config();
    let recent_audit = shared
        .audit
        .list(None, audit_tail.min(100))
        .await
        .map_err(|e| internal(&e))?;
    Ok(Reply::Status(StatusReport {
        daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        host: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        state: if shared.stopping.is_cancelled() {
            DaemonState::Stopping
        } else {
            DaemonState::Running
        },
        started_unix_ms: unix_ms(shared.started),
        now_unix_ms: unix_ms_now(),
        config_path: config.path.display().to_string(),
        config_loaded_unix_ms: unix_ms(shared.config_loaded()),
        socket: shared.socket.display().to_string(),
        state_dir: shared.state_dir.display().to_string(),
        catalog_schema: SCHEMA_VERSION,
        workers: shared.workers.statuses(),
        recent_audit,
        shutdown: drd_shutdown::status(&shared.shutdowns).await.map(Box::new),
    }))
}
