//! Where the daemon's logs go: the journal when there is one, stderr otherwise.
//!
//! The level comes from `RUST_LOG` when set, else from the config's `log_level`; a
//! config reload changes it live unless `RUST_LOG` pins it.

use std::io::IsTerminal;
use std::path::Path;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// The journal if its socket exists, else text on stderr.
    Auto,
    /// Human-readable lines on stderr.
    Text,
    /// One JSON object per line on stderr.
    Json,
    /// Structured entries to the systemd journal.
    Journald,
}

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Lets a config reload change the log level.
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    pinned_by_env: bool,
}

impl LogHandle {
    /// Applies the config's `log_level`, unless `RUST_LOG` is set.
    pub fn set_level(&self, level: &str) {
        if self.pinned_by_env {
            return;
        }
        match EnvFilter::builder().parse(level) {
            Ok(filter) => {
                if let Err(err) = self.filter.reload(filter) {
                    tracing::warn!(cause = %err, "cannot change the log level");
                }
            }
            Err(err) => tracing::warn!(cause = %err, level, "ignoring invalid log level"),
        }
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `--log-format journald` (or auto, with the socket present) but the journal
    /// does not take a connection.
    #[error(
        "cannot open the journal at {JOURNAL_SOCKET}: {0}; use --log-format text to log to stderr"
    )]
    Journal(#[source] std::io::Error),
    /// Something in this process installed a subscriber first.
    #[error("a log subscriber is already installed: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(format: LogFormat, level: &str) -> Result<LogHandle, LogError> {
    let env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let filter = EnvFilter::builder().parse_lossy(env.as_deref().unwrap_or(level));
    let (filter, handle) = reload::Layer::new(filter);
    let format = match format {
        LogFormat::Auto if Path::new(JOURNAL_SOCKET).exists() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Text,
        other => other,
    };
    let output = match format {
        LogFormat::Journald => tracing_journald::layer()
            .map_err(LogError::Journal)?
            .with_syslog_identifier("drd".to_owned())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text | LogFormat::Auto => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()?;
    Ok(LogHandle {
        filter: handle,
        pinned_by_env: env.is_some(),
    })
}
