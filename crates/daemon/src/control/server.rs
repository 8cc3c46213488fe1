//! Accepting connections: each gets a task, which learns who is calling and then takes
//! a slot (see `limits`) or is told why not.

use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::conn;
use super::limits::Admission;
use crate::state::Shared;

/// Peers with no role whose handshake is awaited at once before their refusal; more
/// are refused without waiting for it, so a flood of them holds few file descriptors.
const REFUSALS_AT_ONCE: usize = 16;

/// What every connection task shares: the slots in use and the refusals in progress.
pub(super) struct Gate {
    /// Connection slots of peers with a role.
    pub admission: Arc<Admission>,
    /// Refusals of role-less peers that wait for their handshake.
    pub refusals: Semaphore,
}

/// Serves `listener` until the daemon starts stopping. Connection tasks are spawned on
/// `tracker`, so the caller can wait for in-flight requests.
pub async fn serve(listener: &UnixListener, shared: Arc<Shared>, tracker: TaskTracker) {
    let gate = Arc::new(Gate {
        admission: Arc::new(Admission::default()),
        refusals: Semaphore::new(REFUSALS_AT_ONCE),
    });
    loop {
        let accepted = tokio::select! {
            () = shared.stopping.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: back off briefly, keep serving.
                tracing::warn!(cause = %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        tracker.spawn(conn::handle(stream, shared.clone(), gate.clone()));
    }
}
