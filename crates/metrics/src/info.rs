//! Which drd this is and since when it runs: `drd_build_info` and
//! `drd_start_time_seconds`.

use async_trait::async_trait;
use drd_watch::Watch;
use prometheus_client::registry::Registry;

use crate::{gauges, seconds, set, Result, Source};

/// The build and the start of this process.
pub struct BuildInfo;

#[async_trait]
impl Source for BuildInfo {
    fn name(&self) -> &'static str {
        "info"
    }

    async fn collect(&self, watch: &Watch, registry: &mut Registry) -> Result<()> {
        let build = gauges(
            registry,
            "drd_build_info",
            "Always 1; the version label names the running drd",
        );
        set(&build, &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        let started = gauges(
            registry,
            "drd_start_time_seconds",
            "When this drd process started, in Unix seconds",
        );
        set(
            &started,
            &[],
            seconds(drd_core::util::unix_ms(watch.core.started)),
        );
        Ok(())
    }
}
