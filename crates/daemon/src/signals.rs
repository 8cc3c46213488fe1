//! Signals: SIGTERM and SIGINT stop the daemon (never the services it protects), SIGHUP
//! reloads the config, SIGUSR1 asks for an emergency shutdown. Each is audited.

use std::sync::Arc;

use futures::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_tokio::Signals;

use crate::state::Shared;
use drd_core::audit::{Actor, Outcome};

/// Installs the handlers. Call before the daemon reports ready, so no signal is lost
/// to the default action.
pub fn install() -> std::io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
}

/// Acts on signals until the daemon stops.
pub async fn run(mut signals: Signals, shared: Arc<Shared>) {
    loop {
        let signal = tokio::select! {
            () = shared.stopping.cancelled() => break,
            signal = signals.next() => match signal {
                Some(signal) => signal,
                None => break,
            },
        };
        match signal {
            SIGTERM | SIGINT => {
                let name = if signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                shared
                    .audit(
                        &Actor::Signal(name),
                        "stop daemon",
                        Outcome::Ok,
                        "stopping the daemon; protected services keep running".to_owned(),
                    )
                    .await;
                shared.stopping.cancel();
            }
            SIGHUP => {
                // A refusal is audited and logged inside reload.
                let _ = shared.reload(&Actor::Signal("SIGHUP")).await;
            }
            SIGUSR1 => drd_shutdown::on_sigusr1(&shared.shutdowns).await,
            _ => {}
        }
    }
    signals.handle().close();
}
