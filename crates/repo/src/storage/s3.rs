//! A repository in S3-compatible object storage (AWS S3, MinIO, Ceph RGW, Garage, moto).
//!
//! Offsite tiers often live in a bucket, and a bare-metal restore must read one with
//! nothing but the key file. [`S3Storage`] maps the repository's relative names onto
//! objects `prefix/name` through the `object_store` crate.
//!
//! The engine is plain sync code, so `S3Storage` owns a small tokio runtime (two worker
//! threads) and each trait call spawns its request there and blocks the calling thread
//! until it is done. Call it from plain threads or `spawn_blocking`, as every engine entry
//! point is; called from inside an async task it would not panic, but it would stall that
//! executor thread for the length of the request.
//!
//! Blob reads from packs go through a read-ahead of 2 MiB windows (s3/readahead.rs), so
//! a restore makes a request per window rather than per blob.
//!
//! An object PUT is atomic (the object appears whole or not at all) and durable when it is
//! acknowledged, so `write_atomic` is one PUT and there are no temporaries. Every request
//! is bounded (connect timeout, request timeout, two retries within a retry budget), so an
//! unreachable endpoint is an error naming the endpoint and bucket within about ten
//! seconds, never a hang. The secret key is kept out of `Debug` output and messages.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

use super::{stage_in_memory, Staged, Storage};
use crate::error::{Error, Result};

mod readahead;

use readahead::ReadAhead;

/// Where an S3 repository is and how to reach it. Fields left `None` fall back to the
/// usual environment variables when [`S3Storage::new`] connects: `AWS_ENDPOINT_URL`,
/// `AWS_REGION` (then `AWS_DEFAULT_REGION`, then `us-east-1`), `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN` for temporary credentials).
#[derive(Clone)]
pub struct S3Options {
    /// The endpoint URL, e.g. `https://s3.example.net` or `http://127.0.0.1:9000`; `None`
    /// means `AWS_ENDPOINT_URL`, else AWS itself (`https://s3.<region>.amazonaws.com`).
    /// Requests use path-style addressing (`endpoint/bucket/key`) when an endpoint is set.
    pub endpoint: Option<String>,
    /// The bucket, which must exist.
    pub bucket: String,
    /// The key prefix of the repository inside the bucket (`web-1/` or `web-1`; empty for
    /// the bucket's root). Objects are `prefix/config`, `prefix/data/ab/abcd...`, ...
    pub prefix: String,
    /// The region (signing needs one; most non-AWS servers accept any).
    pub region: Option<String>,
    /// The access key id.
    pub access_key_id: Option<String>,
    /// The secret access key (never printed).
    pub secret_access_key: Option<String>,
    /// Allow a plain `http://` endpoint (a test server, or a store on a trusted network).
    pub allow_http: bool,
    /// How long to wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// How long one request may take, body included: a pack (16 MiB by default) must
    /// upload within it.
    pub request_timeout: Duration,
    /// Retries after a failed request (connection errors, 5xx, timeouts of reads).
    pub max_retries: usize,
}

impl S3Options {
    /// Options for `bucket` and `prefix` with everything else from the environment (at
    /// connect time) and the default bounds: 3 s to connect, 30 s per request, 2 retries.
    pub fn new(bucket: &str, prefix: &str) -> S3Options {
        S3Options {
            endpoint: None,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            max_retries: 2,
        }
    }

    /// Parses a location `s3://bucket/prefix` (the prefix may be empty). The endpoint and
    /// credentials come from the environment; `allow_http` is set when `AWS_ALLOW_HTTP` is
    /// `true` or `AWS_ENDPOINT_URL` starts with `http://` (an explicit choice of plain
    /// HTTP).
    pub fn from_url(url: &str) -> Result<S3Options> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            Error::InvalidOption(format!("{url} is not an s3://bucket/prefix location"))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::InvalidOption(format!(
                "{url} names no bucket (expected s3://bucket/prefix)"
            )));
        }
        let mut options = S3Options::new(bucket, prefix);
        let endpoint = env("AWS_ENDPOINT_URL");
        options.allow_http = env("AWS_ALLOW_HTTP").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"));
        Ok(options)
    }

    /// `s3://bucket/prefix` (without a trailing slash).
    pub fn url(&self) -> String {
        let prefix = self.prefix.trim_matches('/');
        if prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{prefix}", self.bucket)
        }
    }
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A repository under a prefix of an S3 bucket. See the module docs for threading.
pub struct S3Storage {
    store: Arc<AmazonS3>,
    readahead: Arc<ReadAhead>,
    /// `Some` until drop, which shuts it down without blocking (dropping a runtime
    /// normally blocks, and panics inside an async context).
    runtime: Option<tokio::runtime::Runtime>,
    /// The key prefix, without slashes at either end ("" for the bucket's root).
    prefix: String,
    bucket: String,
    /// The endpoint as the user knows it, for messages.
    endpoint: String,
    url: String,
}

impl fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Storage")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Drop for S3Storage {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl S3Storage {
    /// Sets up a client for `options`, filling unset fields from the environment. This
    /// sends no request: a wrong endpoint or bucket shows at the first read or write.
    pub fn new(options: &S3Options) -> Result<S3Storage> {
        let endpoint = options.endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL"));
        let region = options
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_string());
        let access_key = options
            .access_key_id
            .clone()
            .or_else(|| env("AWS_ACCESS_KEY_ID"));
        let secret_key = options
            .secret_access_key
            .clone()
            .or_else(|| env("AWS_SECRET_ACCESS_KEY"));
        let url = options.url();
        let (Some(access_key), Some(secret_key)) = (access_key, secret_key) else {
            return Err(Error::InvalidOption(format!(
                "no S3 credentials for {url}: set access_key_id and secret_access_key, or \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )));
        };
        if let Some(e) = &endpoint {
            if e.starts_with("http://") && !options.allow_http {
                return Err(Error::InvalidOption(format!(
                    "S3 endpoint {e} is plain HTTP: allow it explicitly (allow_http, or \
                     AWS_ALLOW_HTTP=true) or use https://"
                )));
            }
        }
        let prefix = options.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            ObjectPath::parse(&prefix).map_err(|e| {
                Error::InvalidOption(format!("S3 prefix {:?} is not usable: {e}", options.prefix))
            })?;
        }

        let client = ClientOptions::new()
            .with_allow_http(options.allow_http)
            .with_connect_timeout(options.connect_timeout)
            .with_timeout(options.request_timeout);
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: options.max_retries,
            // No new attempt starts after this; with a 3 s connect timeout an endpoint
            // that drops packets fails after about 3 attempts, ~10 s.
            retry_timeout: Duration::from_secs(8),
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&options.bucket)
            .with_region(&region)
            .with_access_key_id(access_key)
            .with_secret_access_key(secret_key)
            .with_allow_http(options.allow_http)
            .with_client_options(client)
            .with_retry(retry);
        if let Some(token) = env("AWS_SESSION_TOKEN") {
            builder = builder.with_token(token);
        }
        if let Some(e) = &endpoint {
            builder = builder.with_endpoint(e);
        }
        let store = builder
            .build()
            .map_err(|e| Error::InvalidOption(format!("cannot set up S3 storage {url}: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("drd-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("start the S3 client runtime: {e}")))?;
        let readahead = Arc::new(ReadAhead::default());
        let weak = Arc::downgrade(&readahead);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(readahead::IDLE / 3);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(r) => r.expire(Instant::now()),
                    None => break,
                }
            }
        });
        Ok(S3Storage {
            store: Arc::new(store),
            readahead,
            runtime: Some(runtime),
            prefix,
            bucket: options.bucket.clone(),
            endpoint: endpoint.unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com")),
            url,
        })
    }

    /// The object key of a repository-relative name.
    fn key(&self, name: &str) -> ObjectPath {
        let name = name.trim_matches('/');
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else if name.is_empty() {
            ObjectPath::from(self.prefix.as_str())
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    /// Runs one request on the runtime and waits for it; errors become [`Error::Io`]
    /// naming `op` and the object, or the endpoint when it could not be reached.
    fn run<T, F>(&self, op: &'static str, name: &str, fut: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = object_store::Result<T>> + Send + 'static,
    {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| Error::Internal("S3 storage used after shutdown".into()))?;
        let started = Instant::now();
        let joined = futures::executor::block_on(runtime.spawn(fut))
            .map_err(|e| Error::Internal(format!("S3 request task for {op} {name}: {e}")))?;
        joined.map_err(|e| self.error(op, name, &e, started.elapsed()))
    }

    fn error(
        &self,
        op: &'static str,
        name: &str,
        err: &object_store::Error,
        took: Duration,
    ) -> Error {
        use object_store::client::HttpErrorKind;
        use std::io::ErrorKind;

        let object = self.describe(name);
        let text = one_line(err);
        // A missing bucket is not a missing file: "not a repository" would send the
        // reader looking for the wrong mistake.
        if text.contains("<Code>NoSuchBucket</Code>") {
            return Error::io(
                op,
                object,
                std::io::Error::other(format!(
                    "bucket {} does not exist at {} (create it, or check the bucket name)",
                    self.bucket, self.endpoint
                )),
            );
        }
        let kind = match err {
            object_store::Error::NotFound { .. } => ErrorKind::NotFound,
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => ErrorKind::PermissionDenied,
            _ => ErrorKind::Other,
        };
        if kind != ErrorKind::Other {
            return Error::io(op, object, std::io::Error::new(kind, server_said(&text)));
        }
        // Could the endpoint be reached at all? Look down the chain for the socket error
        // or the HTTP client's classification.
        let mut unreachable: Option<(ErrorKind, String)> = None;
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                let why = match io.kind() {
                    ErrorKind::ConnectionRefused => Some("connection refused".to_string()),
                    ErrorKind::TimedOut => Some("no answer (timed out)".to_string()),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
                        Some("the connection was cut".to_string())
                    }
                    ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                        Some(io.to_string())
                    }
                    _ => None,
                };
                if let Some(why) = why {
                    unreachable = Some((io.kind(), why));
                    break;
                }
            }
            if let Some(http) = e.downcast_ref::<object_store::client::HttpError>() {
                match http.kind() {
                    HttpErrorKind::Connect => {
                        unreachable.get_or_insert((
                            ErrorKind::NotConnected,
                            format!("cannot connect ({})", root_cause(http)),
                        ));
                    }
                    HttpErrorKind::Timeout => {
                        unreachable.get_or_insert((
                            ErrorKind::TimedOut,
                            "no answer (timed out)".to_string(),
                        ));
                    }
                    _ => {}
                }
            }
            source = e.source();
        }
        match unreachable {
            Some((kind, why)) => Error::Io {
                op: "cannot reach S3 endpoint",
                path: PathBuf::from(format!("{} (bucket {})", self.endpoint, self.bucket)),
                source: std::io::Error::new(
                    kind,
                    format!(
                        "{why} (while trying to {op} {}; gave up after {:.1} s)",
                        object.display(),
                        took.as_secs_f64()
                    ),
                ),
            },
            None => Error::io(op, object, std::io::Error::other(server_said(&text))),
        }
    }
}

/// The error and its causes on one line, without repeating what a cause already says.
fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// The S3 error code and message when the server sent an XML error body (the rest of
/// the body, request ids and such, is noise in a message), else `text` as it is.
fn server_said(text: &str) -> String {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))?;
        Some(&text[start..start + end])
    };
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => {
            let before = text
                .find("<?xml")
                .or_else(|| text.find("<Error>"))
                .unwrap_or(0);
            format!("{}{code}: {message}", &text[..before])
        }
        _ => text.to_string(),
    }
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

impl Storage for S3Storage {
    fn location(&self) -> PathBuf {
        PathBuf::from(&self.url)
    }

    fn describe(&self, name: &str) -> PathBuf {
        let name = name.trim_matches('/');
        if name.is_empty() {
            self.location()
        } else {
            PathBuf::from(format!("{}/{name}", self.url))
        }
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let (store, key) = (Arc::clone(&self.store), self.key(name));
        self.run("read", name, async move {
            let body = store.get(&key).await?.bytes().await?;
            Ok(body.to_vec())
        })
    }

    fn read_at(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        // Only packs: they are immutable, and read blob after blob.
        if !name.starts_with("data/") || len as u64 >= readahead::WINDOW {
            return self.read_range(name, offset, len);
        }
        let _reader = self.readahead.enter();
        if let Some(hit) = self.readahead.get(name, offset, len) {
            return Ok(hit);
        }
        let size = match self.readahead.size(name) {
            Some(size) => size,
            None => match self.size(name)? {
                Some(size) => {
                    self.readahead.set_size(name, size);
                    size
                }
                // Let the plain read report the missing object.
                None => return self.read_range(name, offset, len),
            },
        };
        let end = size.min(offset.saturating_add(readahead::WINDOW));
        if end < offset + len as u64 {
            // Past the end: the plain read reports it.
            return self.read_range(name, offset, len);
        }
        let window = self.read_range(name, offset, usize::try_from(end - offset).unwrap_or(len))?;
        let out = window[..len].to_vec();
        self.readahead.insert(name, offset, window);
        Ok(out)
    }

    fn size(&self, name: &str) -> Result<Option<u64>> {
        let (store, key) = (Arc::clone(&self.store), self.key(name));
        match self.run("stat", name, async move { store.head(&key).await }) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn write_atomic(&self, name: &str, data: &[u8]) -> Result<()> {
        let (store, key) = (Arc::clone(&self.store), self.key(name));
        let payload = PutPayload::from(data.to_vec());
        self.run("write", name, async move {
            store.put(&key, payload).await.map(|_| ())
        })
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let (store, key) = (Arc::clone(&self.store), self.key(dir));
        let base = format!("{key}/");
        // object_store's list follows ListObjectsV2 continuation tokens: every object
        // comes, not only the first page of 1000 (tests/s3_listing.rs breaks without).
        let objects = self.run("list", dir, async move {
            store.list(Some(&key)).try_collect::<Vec<_>>().await
        })?;
        let mut out = Vec::new();
        for meta in objects {
            let full = meta.location.to_string();
            let Some(rel) = full.strip_prefix(&base) else {
                continue;
            };
            let parts: Vec<&str> = rel.split('/').collect();
            // "data" has one level of fan-out directories; the others are flat.
            let wanted = if dir == "data" {
                parts.len() <= 2
            } else {
                parts.len() == 1
            };
            if wanted && !parts.iter().any(|p| p.starts_with('.')) {
                out.push(rel.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    fn forget_reads(&self) {
        self.readahead.clear();
    }

    /// An object appears whole with its PUT: a pack is collected in memory until then.
    fn stage(&self, _dir: &str) -> Result<Box<dyn Staged>> {
        Ok(stage_in_memory())
    }

    fn unfinished(&self, _dir: &str) -> Result<Vec<(String, u64)>> {
        Ok(Vec::new())
    }

    fn remove(&self, name: &str) -> Result<()> {
        let (store, key) = (Arc::clone(&self.store), self.key(name));
        match self.run("remove", name, async move { store.delete(&key).await }) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(())
            }
            other => other,
        }
    }
}

impl S3Storage {
    /// One ranged GET of exactly `len` bytes.
    fn read_range(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let (store, key) = (Arc::clone(&self.store), self.key(name));
        let end = offset + len as u64;
        let body = self.run("read", name, async move {
            store.get_range(&key, offset..end).await
        })?;
        if body.len() != len {
            return Err(Error::io(
                "read",
                self.describe(name),
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "asked for {len} bytes at offset {offset}, the object gave {}",
                        body.len()
                    ),
                ),
            ));
        }
        Ok(body.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_keys() {
        let o = S3Options::from_url("s3://backups/web-1/").unwrap();
        assert_eq!(
            (o.bucket.as_str(), o.prefix.as_str()),
            ("backups", "web-1/")
        );
        assert_eq!(o.url(), "s3://backups/web-1");
        assert_eq!(
            S3Options::from_url("s3://backups").unwrap().url(),
            "s3://backups"
        );
        assert!(S3Options::from_url("s3:///x").is_err());
        assert!(S3Options::from_url("/var/backups").is_err());

        let mut o = S3Options::new("b", "/p/q/");
        o.endpoint = Some("http://127.0.0.1:1".into());
        o.allow_http = true;
        o.access_key_id = Some("id".into());
        o.secret_access_key = Some("very-secret".into());
        assert!(!format!("{o:?}").contains("very-secret"));
        let s = S3Storage::new(&o).unwrap();
        assert_eq!(s.key("data/ab/abcd").to_string(), "p/q/data/ab/abcd");
        assert_eq!(s.describe("config"), PathBuf::from("s3://b/p/q/config"));
        assert_eq!(s.location(), PathBuf::from("s3://b/p/q"));

        let said = server_said(
            "Error performing GET http://h/b in 12ms - Server returned non-2xx status code: \
             403 Forbidden: <?xml version=\"1.0\"?><Error><Code>AccessDenied</Code>\
             <Message>Access Denied</Message><RequestId>XYZ</RequestId></Error>",
        );
        assert_eq!(
            said,
            "Error performing GET http://h/b in 12ms - Server returned non-2xx status code: \
             403 Forbidden: AccessDenied: Access Denied"
        );
        assert_eq!(server_said("plain"), "plain");

        o.allow_http = false;
        let err = S3Storage::new(&o)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("plain HTTP"), "{err}");
    }
}
