//! drctl's exit codes, part of its interface (documented in `drctl --help` and the
//! README). They follow sysexits.h where one fits.

use std::process::ExitCode;

use drd_proto::ErrorKind;

use crate::client::ClientError;

/// Why a command did not run to its end. Every command returns it, and `Cli::run` turns
/// it into a message on stderr and the exit code below with [`Failure::report`].
pub enum Failure {
    /// Talking to drd failed, or drd refused.
    Client(ClientError),
    /// The command line makes no sense, found after parsing.
    Usage(String),
    /// The `--json` output could not be formatted (a bug in drctl).
    Json(serde_json::Error),
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Self {
        Failure::Client(err)
    }
}

impl Failure {
    /// Prints why drctl stopped and returns the exit code for it.
    pub fn report(self) -> ExitCode {
        match self {
            Failure::Client(err) => {
                eprintln!("drctl: {err:#}");
                code_for(&err)
            }
            Failure::Usage(message) => {
                eprintln!("drctl: {message}");
                ExitCode::from(USAGE)
            }
            Failure::Json(err) => {
                eprintln!("drctl: cannot format JSON: {err}");
                ExitCode::from(SOFTWARE)
            }
        }
    }
}

/// The request ran and failed, or what it checked is not right (a backup whose source
/// failed, a key that does not open the repository, damage found, a broken audit chain).
pub const FAILED: u8 = 1;
/// Bad flags or arguments.
pub const USAGE: u8 = 64;
/// What the request names does not exist (a job, a snapshot, a repository).
pub const NOT_FOUND: u8 = 66;
/// drd is not running at the socket.
pub const UNAVAILABLE: u8 = 69;
/// drd failed inside while serving the request.
pub const SOFTWARE: u8 = 70;
/// The daemon is busy or stopping; try again.
pub const TEMPFAIL: u8 = 75;
/// drctl and drd speak different protocols, or a reply could not be read.
pub const PROTOCOL: u8 = 76;
/// The caller lacks the role (or socket permission) for the request.
pub const NOPERM: u8 = 77;
/// drd refused a config (on reload).
pub const CONFIG: u8 = 78;

/// The text shown at the end of `drctl --help`.
pub const HELP: &str = "\
Exit codes:
  0   success
  1   the request ran and failed, or found a problem (a failed backup, damage found
      by verify, a restore that could not restore every file whole, a wrong key, a
      broken audit chain)
  64  bad command line
  66  what the request names does not exist (job, snapshot, repository, deadman
      switch, alert, alert receiver)
  69  drd is not running at the socket
  70  drd failed while serving the request
  75  drd is busy or stopping; try again
  76  drctl and drd do not speak the same protocol version
  77  permission denied (role or socket permissions)
  78  drd refused the config (reload)";

/// 1 when the request found a problem (see [`FAILED`]), else 0.
pub fn failed_if(problem: bool) -> ExitCode {
    if problem {
        ExitCode::from(FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// The exit code for a failed request.
fn code_for(err: &ClientError) -> ExitCode {
    let code = match err {
        ClientError::NotRunning { .. } => UNAVAILABLE,
        ClientError::SocketPermission { .. } => NOPERM,
        ClientError::Io { .. } | ClientError::Closed(_) => UNAVAILABLE,
        ClientError::Protocol(_) => PROTOCOL,
        ClientError::Refused(reply) => match reply.kind {
            ErrorKind::VersionMismatch | ErrorKind::BadRequest => PROTOCOL,
            ErrorKind::PermissionDenied => NOPERM,
            ErrorKind::Busy | ErrorKind::ShuttingDown => TEMPFAIL,
            ErrorKind::InvalidConfig => CONFIG,
            ErrorKind::Internal => SOFTWARE,
            ErrorKind::NotFound => NOT_FOUND,
            ErrorKind::Failed => FAILED,
        },
    };
    ExitCode::from(code)
}
