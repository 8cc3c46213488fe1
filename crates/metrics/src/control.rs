//! Control requests by kind and result: the one figure the daemon's state does not
//! keep, so the control server counts each request here as it answers it.

use async_trait::async_trait;
use drd_proto::{ErrorKind, Response};
use drd_watch::Watch;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::{Labels, Result, Source};

/// `drd_control_requests_total{request,result}`, shared by every connection task
/// and registered into every scrape's registry.
#[derive(Default)]
pub struct ControlRequests {
    counts: Family<Labels, Counter>,
}

impl ControlRequests {
    /// Counts one request named `request` (`Request::name`) and how it was answered;
    /// `None` when the client went away before the answer.
    pub fn count(&self, request: &str, response: Option<&Response>) {
        let labels = vec![
            ("request".to_owned(), request.to_owned()),
            ("result".to_owned(), result_of(response).to_owned()),
        ];
        self.counts.get_or_create(&labels).inc();
    }
}

/// The `result` label: `ok`, the error kind in snake case, or `client_gone`.
pub fn result_of(response: Option<&Response>) -> &'static str {
    match response {
        None => "client_gone",
        Some(Response::Ok(_)) => "ok",
        Some(Response::Error(reply)) => match reply.kind {
            ErrorKind::VersionMismatch => "version_mismatch",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Busy => "busy",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::Internal => "internal",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Failed => "failed",
        },
    }
}

#[async_trait]
impl Source for ControlRequests {
    fn name(&self) -> &'static str {
        "control"
    }

    async fn collect(&self, _watch: &Watch, registry: &mut Registry) -> Result<()> {
        // The encoder adds `_total` to a counter's name.
        registry.register(
            "drd_control_requests",
            "Requests on the control socket since drd started, by request and result",
            self.counts.clone(),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drd_proto::ErrorReply;

    #[test]
    fn requests_count_by_kind_and_result_under_a_total_name() {
        let requests = ControlRequests::default();
        let denied = Response::Error(ErrorReply {
            kind: ErrorKind::PermissionDenied,
            message: String::new(),
        });
        requests.count("backup", Some(&denied));
        requests.count("backup", Some(&denied));
        requests.count("jobs", None);
        let mut registry = Registry::default();
        registry.register("drd_control_requests", "Requests", requests.counts);
        let text = crate::encode(&registry).unwrap();
        assert!(
            text.contains("# TYPE drd_control_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "drd_control_requests_total{request=\"backup\",result=\"permission_denied\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("drd_control_requests_total{request=\"jobs\",result=\"client_gone\"} 1"),
            "{text}"
        );
    }
}
