//! `reload`: the same as SIGHUP, with the reasons for a refusal sent back.

use drd_core::config::ConfigError;
use drd_proto::{ErrorKind, ErrorReply, Reply};

use super::{Ctx, HandlerResult};

pub(super) async fn reload(ctx: &Ctx) -> HandlerResult {
    match ctx.shared.reload(&ctx.peer.actor()).await {
        Ok(config) => Ok(Reply::Reloaded {
            config_path: config.path.display().to_string(),
        }),
        Err(err) => Err(ErrorReply {
            kind: match err {
                ConfigError::Invalid { .. } | ConfigError::Read { .. } => ErrorKind::InvalidConfig,
            },
            message: format!("{err}\nthe config in force is unchanged"),
        }),
    }
}
