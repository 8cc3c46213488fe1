//! The one prober: "does it answer?" asked of a TCP port, an HTTP URL, a DNS name, a
//! command or a container's Docker health status, within a time limit.
//!
//! The network monitor, the service health monitor and the emergency shutdown's
//! rollback (which waits for a restarted service to be healthy) all ask through
//! [`Prober::probe`], so a health check means the same thing wherever it is used.
//! It lives here, below `drd-shutdown` and `drd-watch`, because both use it.
//!
//! A probe never fails the caller: whatever goes wrong (a name that does not resolve,
//! a refused connection, a timeout, a 500) is its verdict, in words.

use std::fmt;
use std::time::Duration;

use bollard::models::HealthStatusEnum;
use tokio::sync::OnceCell;

use crate::command::Command;
use crate::docker::Client;

/// What to ask, and of whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Connect to `host:port`; answering means the connection was accepted.
    Tcp {
        /// `host:port` (a name is resolved first).
        address: String,
    },
    /// GET a URL; answering means the expected status (any 2xx when none is given).
    Http {
        /// `http://...` or `https://...`.
        url: String,
        /// The status that counts as an answer.
        expect_status: Option<u16>,
    },
    /// Resolve a name; answering means at least one address came back.
    Dns {
        /// The host name.
        host: String,
    },
    /// Run a command (no shell); answering means exit status 0.
    Command {
        /// The program and its arguments.
        argv: Vec<String>,
    },
    /// Inspect a container; answering means running and, where its image has a
    /// health check, `healthy`.
    Docker {
        /// The container's name or id.
        container: String,
    },
}

impl Probe {
    /// A network target as written in `[monitors.network] targets`:
    /// `tcp://host:port`, `http://...`, `https://...` or `dns://host`. The error says
    /// what is wrong and how to write it.
    pub fn parse_target(target: &str) -> Result<Probe, String> {
        const FORMS: &str =
            "write it like \"tcp://10.0.0.1:22\", \"https://s3.example.net\" or \"dns://example.net\"";
        let Some((scheme, rest)) = target.split_once("://") else {
            return Err(format!("{target:?} has no scheme; {FORMS}"));
        };
        match scheme {
            "tcp" => {
                let (host, port) = rest
                    .rsplit_once(':')
                    .ok_or_else(|| format!("{target:?} names no port; {FORMS}"))?;
                if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                    return Err(format!("{target:?} is not host:port; {FORMS}"));
                }
                Ok(Probe::Tcp {
                    address: rest.to_owned(),
                })
            }
            "http" | "https" => {
                let url = reqwest::Url::parse(target)
                    .map_err(|err| format!("{target:?} is not a URL ({err}); {FORMS}"))?;
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(format!("{target:?} names no host; {FORMS}"));
                }
                Ok(Probe::Http {
                    url: target.to_owned(),
                    expect_status: None,
                })
            }
            "dns" => {
                let host = rest.trim_end_matches('/');
                if host.is_empty() || host.contains(['/', ':', ' ']) {
                    return Err(format!("{target:?} is not a host name; {FORMS}"));
                }
                Ok(Probe::Dns {
                    host: host.to_owned(),
                })
            }
            other => Err(format!("{target:?}: unknown scheme {other:?}; {FORMS}")),
        }
    }
}

/// `tcp 127.0.0.1:80`, `GET http://...`, `command /bin/true`.
impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Tcp { address } => write!(f, "tcp {address}"),
            Probe::Http { url, .. } => write!(f, "GET {url}"),
            Probe::Dns { host } => write!(f, "dns {host}"),
            Probe::Command { argv } => write!(f, "command {}", argv.join(" ")),
            Probe::Docker { container } => write!(f, "docker health of {container}"),
        }
    }
}

/// Asks probes; holds the HTTP client and the Docker client (connected on first use)
/// so a monitor reuses its connections from cycle to cycle.
#[derive(Debug, Default)]
pub struct Prober {
    http: OnceCell<reqwest::Client>,
    docker: OnceCell<Client>,
}

impl Prober {
    /// A prober with nothing connected yet.
    pub fn new() -> Prober {
        Prober::default()
    }

    /// Asks `probe`, giving it `timeout` in all. `Ok` says what answered (`HTTP 200 in
    /// 3 ms`), `Err` why it did not.
    pub async fn probe(&self, probe: &Probe, timeout: Duration) -> Result<String, String> {
        let started = tokio::time::Instant::now();
        let asked = tokio::time::timeout(timeout, self.ask(probe, timeout)).await;
        let took = started.elapsed().as_millis();
        match asked {
            Ok(Ok(what)) => Ok(format!("{what} in {took} ms")),
            Ok(Err(why)) => Err(why),
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            )),
        }
    }

    /// Asks `probe` every 200 ms until it answers or `within` has passed in all; the
    /// error is the last reason it did not answer.
    pub async fn wait_until_ok(&self, probe: &Probe, within: Duration) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + within;
        let mut last = String::from("never asked");
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "not healthy within {}: {last}",
                    humantime::format_duration(within)
                ));
            }
            match self.probe(probe, left).await {
                Ok(what) => return Ok(what),
                Err(why) => last = why,
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            tokio::time::sleep(Duration::from_millis(200).min(left)).await;
        }
    }

    async fn ask(&self, probe: &Probe, timeout: Duration) -> Result<String, String> {
        match probe {
            Probe::Tcp { address } => {
                let stream = tokio::net::TcpStream::connect(address.as_str())
                    .await
                    .map_err(|err| format!("tcp {address}: {err}"))?;
                let peer = stream
                    .peer_addr()
                    .map_or_else(|_| address.clone(), |a| a.to_string());
                Ok(format!("tcp {peer} accepted"))
            }
            Probe::Http { url, expect_status } => {
                let client = self.http().await?;
                let response = client
                    .get(url)
                    .timeout(timeout)
                    .send()
                    .await
                    .map_err(|err| format!("GET {url}: {}", crate::http::chain(&err)))?;
                let status = response.status();
                let good = match expect_status {
                    Some(want) => status.as_u16() == *want,
                    None => status.is_success(),
                };
                let expected = match expect_status {
                    Some(want) => want.to_string(),
                    None => "2xx".to_owned(),
                };
                if good {
                    Ok(format!("GET {url}: HTTP {}", status.as_u16()))
                } else {
                    Err(format!(
                        "GET {url}: HTTP {}, expected {expected}",
                        status.as_u16()
                    ))
                }
            }
            Probe::Dns { host } => {
                let found: Vec<_> = tokio::net::lookup_host((host.as_str(), 0))
                    .await
                    .map_err(|err| format!("dns {host}: {err}"))?
                    .collect();
                match found.first() {
                    Some(first) => Ok(format!(
                        "dns {host}: {} ({} addresses)",
                        first.ip(),
                        found.len()
                    )),
                    None => Err(format!("dns {host}: no addresses")),
                }
            }
            Probe::Command { argv } => {
                let finished = Command::new(argv, timeout)
                    .run()
                    .await
                    .map_err(|err| err.to_string())?;
                if finished.success() {
                    Ok(format!("{} exited 0", argv.join(" ")))
                } else {
                    Err(format!("{} {finished}", argv.join(" ")))
                }
            }
            Probe::Docker { container } => {
                let docker = self
                    .docker
                    .get_or_try_init(Client::connect_local)
                    .await
                    .map_err(|err| format!("docker: {}", err.reason()))?;
                let inspect = docker
                    .inspect(container)
                    .await
                    .map_err(|err| format!("container {container}: {}", err.reason()))?;
                let state = inspect.state.as_ref();
                if !state.and_then(|s| s.running).unwrap_or(false) {
                    return Err(format!("container {container} is not running"));
                }
                match state.and_then(|s| s.health.as_ref()).and_then(|h| h.status) {
                    None | Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) => {
                        Ok(format!("container {container} running (no health check)"))
                    }
                    Some(HealthStatusEnum::HEALTHY) => Ok(format!("container {container} healthy")),
                    Some(other) => Err(format!("container {container} is {other}")),
                }
            }
        }
    }

    async fn http(&self) -> Result<&reqwest::Client, String> {
        self.http
            .get_or_try_init(|| async { crate::http::client() })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_by_scheme_and_bad_ones_say_how_to_write_them() {
        assert_eq!(
            Probe::parse_target("tcp://10.0.0.1:22"),
            Ok(Probe::Tcp {
                address: "10.0.0.1:22".to_owned()
            })
        );
        assert_eq!(
            Probe::parse_target("dns://example.net"),
            Ok(Probe::Dns {
                host: "example.net".to_owned()
            })
        );
        assert!(matches!(
            Probe::parse_target("https://s3.example.net/health"),
            Ok(Probe::Http { .. })
        ));
        for bad in [
            "10.0.0.1:22",
            "tcp://10.0.0.1",
            "tcp://:22",
            "tcp://h:99999",
            "http://",
            "ftp://x",
            "dns://",
        ] {
            let err = Probe::parse_target(bad).unwrap_err();
            assert!(err.contains("write it like"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn tcp_answers_while_listening_and_not_after() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let probe = Probe::Tcp { address };
        let prober = Prober::new();
        let second = Duration::from_secs(1);
        assert!(prober.probe(&probe, second).await.is_ok());
        drop(listener);
        assert!(prober.probe(&probe, second).await.is_err());
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_a_verdict_not_a_crash() {
        let prober = Prober::new();
        let probe = Probe::Dns {
            host: "no-such-host.invalid".to_owned(),
        };
        let err = prober
            .probe(&probe, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.contains("no-such-host.invalid"), "{err}");
    }

    #[tokio::test]
    async fn a_command_answers_by_its_exit_status() {
        let prober = Prober::new();
        let ok = Probe::Command {
            argv: vec!["true".to_owned()],
        };
        let bad = Probe::Command {
            argv: vec!["false".to_owned()],
        };
        assert!(prober.probe(&ok, Duration::from_secs(5)).await.is_ok());
        assert!(prober.probe(&bad, Duration::from_secs(5)).await.is_err());
    }
}
