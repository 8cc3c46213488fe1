//! drd-core: what every layer of the daemon stands on.
//!
//! The backups, the emergency shutdown and the daemon's control server all read the
//! config, write the catalog and the audit log, run commands, talk to Docker and run
//! background workers. Those live here, below all of them, so that the compiler keeps
//! the layers apart: this crate never imports `drd-backup` or `drd`. The one piece of
//! shared state is [`Core`], which the daemon builds once and hands to every layer.
//!
//! | module | concern |
//! | --- | --- |
//! | [`Core`] (`core.rs`) | shared state: config in force, catalog, audit log, workers, stop token |
//! | [`config`] | the TOML config: types, `Config::load`, validation, job schedules |
//! | [`clock`] | the daemon's one wall clock (`DRD_TEST_CLOCK_OFFSET` moves it in tests) |
//! | [`catalog`] | the SQLite catalog, owned by one thread; `catalog/migrations.rs` |
//! | [`audit`] | the hash-chained audit log |
//! | [`breaker`] | the one circuit breaker: service health probes, alert receivers |
//! | [`command`] | the one bounded-command runner (process group, timeout, output tails) |
//! | [`docker`] | the one Docker client; `docker/blocking.rs` for non-async callers |
//! | [`http`] | the one HTTP client setup, errors without URLs, healthchecks-style pings |
//! | [`memory`] | the worker that gives freed heap memory back after big work |
//! | [`probe`] | the one prober: TCP, HTTP, DNS, command, Docker health, with a timeout |
//! | [`workers`] | the `Worker` trait and the `Supervisor` that runs workers |
//! | [`systemd`] | the notify protocol and the watchdog worker |
//! | [`util`] | wall-clock helpers |

pub mod audit;
pub mod breaker;
pub mod catalog;
pub mod clock;
pub mod command;
pub mod config;
mod core;
pub mod docker;
pub mod http;
pub mod memory;
pub mod probe;
pub mod systemd;
pub mod util;
pub mod workers;

pub use crate::core::Core;
