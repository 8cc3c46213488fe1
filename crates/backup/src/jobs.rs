//! Backup jobs as the coordinator runs them: one run of a job (`run`), the record of
//! every run in the catalog (`runs`), `before` / `after` hooks (`hooks`), retention and
//! garbage collection (`retention`), the scheduler worker (`scheduler`; schedules
//! themselves are parsed with the config, in `drd_core::config::schedule`), the
//! emergency backup of every critical job (`emergency`), and what `drctl jobs` shows of
//! each job, its RPO among it (`overview`).
//!
//! Everything that starts a backup (a `drctl backup` request, the scheduler, an
//! emergency backup, the emergency shutdown's preserve phase) goes through
//! [`run::run_job`], so the no-overlap rule, the hooks, the catalog record, retention
//! and the audit entry are the same whoever asked.

pub mod emergency;
pub mod hooks;
pub mod overview;
pub mod retention;
pub mod run;
pub mod runs;
pub mod scheduler;

pub use run::{run_job, RunError, RunProgress};

/// What started a run; stored with the run and shown by `drctl jobs`. The wire's type,
/// so the catalog, the logic and drctl share one list of names.
pub use drd_proto::RunTrigger as Trigger;

/// The clock the scheduler and the run records use: the daemon's one clock.
pub use drd_core::clock::{now_ms, Clock, SystemClock};
