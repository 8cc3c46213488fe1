//! Accepting connections: each gets a task, at most `max_connections` at once; one more
//! is told the daemon is busy and closed.

use std::sync::Arc;

use drd_proto::{ErrorKind, ErrorReply, Response, ServerFrame};
use futures::SinkExt;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_util::codec::Framed;
use tokio_util::task::TaskTracker;

use super::conn;
use crate::state::Shared;

/// Serves `listener` until the daemon starts stopping. Connection tasks are spawned on
/// `tracker`, so the caller can wait for in-flight requests.
pub async fn serve(listener: &UnixListener, shared: Arc<Shared>, tracker: TaskTracker) {
    let limit = Arc::new(Semaphore::new(
        shared.config().config.daemon.max_connections,
    ));
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
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                let shared = shared.clone();
                tracker.spawn(async move {
                    conn::handle(stream, shared).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tracing::warn!("connection refused: too many open connections");
                tracker.spawn(async move {
                    let mut framed = Framed::new(stream, drd_proto::codec::frame_codec());
                    let reply = ServerFrame::Response(Response::Error(ErrorReply {
                        kind: ErrorKind::Busy,
                        message: "drd is serving too many connections; try again in a moment"
                            .to_owned(),
                    }));
                    if let Ok(bytes) = drd_proto::codec::encode(&reply) {
                        let _ = tokio::time::timeout(
                            std::time::Duration::from_secs(1),
                            framed.send(bytes::Bytes::from(bytes)),
                        )
                        .await;
                    }
                });
            }
        }
    }
}
