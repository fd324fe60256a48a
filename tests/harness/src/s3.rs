//! A real S3-compatible server on loopback: versitygw with its posix backend.
//!
//! Why versitygw: it builds with a plain `go install` from the Go module proxy (MinIO's module
//! does not install that way), serves real S3 (SigV4, multipart, ranged GET, conditional
//! `If-None-Match: *` writes) from a plain directory, and starts in well under a second.
//! The binary is cached under `target/harness-cache/bin`.

use crate::cluster::free_port;
use crate::dist::{go_install, wait_listening};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The pinned versitygw release.
pub const VERSITYGW_VERSION: &str = "v1.8.0";
pub const ACCESS_KEY: &str = "segvault-test";
pub const SECRET_KEY: &str = "segvault-test-secret";
pub const REGION: &str = "us-east-1";

/// Installs versitygw (once) and returns the binary's path.
pub fn versitygw_binary() -> Result<PathBuf> {
    go_install(
        "github.com/versity/versitygw/cmd/versitygw",
        VERSITYGW_VERSION,
        "versitygw",
        &format!("versitygw-{VERSITYGW_VERSION}"),
    )
}

/// A running versitygw serving one directory; killed on drop.
pub struct S3Server {
    pub endpoint: String,
    pub root: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
    log_file: PathBuf,
    /// versitygw's own access log: one line per request it served (see [`S3Server::requests`]).
    access_log: PathBuf,
}

/// One request the server logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// versitygw's name of the S3 action: `s3_GetObject`, `s3_ListObjectsV2`, ...
    pub operation: String,
    /// The object key (`-` for none).
    pub key: String,
    /// The HTTP status answered.
    pub status: u16,
}

impl Request {
    /// What the request is, for counting: `LIST`, `GET`, `HEAD`, `PUT`, `DELETE`, or the
    /// S3 action's name for anything else.
    pub fn kind(&self) -> &str {
        match self.operation.as_str() {
            "s3_ListObjectsV2" | "s3_ListObjects" => "LIST",
            "s3_GetObject" => "GET",
            "s3_HeadObject" => "HEAD",
            "s3_PutObject" => "PUT",
            "s3_DeleteObject" | "s3_DeleteObjects" => "DELETE",
            other => other,
        }
    }
}
impl S3Server {
    /// Starts a server on a free loopback port with buckets `buckets` created.
    pub fn start(buckets: &[&str]) -> Result<S3Server> {
        let bin = versitygw_binary()?;
        let dir = tempfile::Builder::new().prefix("segvault-s3-").tempdir()?;
        let root = dir.path().join("data");
        std::fs::create_dir_all(&root)?;
        // With the posix backend a bucket is a top-level directory.
        for b in buckets {
            std::fs::create_dir_all(root.join(b))?;
        }
        let port = free_port()?;
        let log_file = dir.path().join("versitygw.out");
        let access_log = dir.path().join("access.log");
        let log = std::fs::File::create(&log_file)?;
        let child = Command::new(&bin)
            .args([
                "--access", ACCESS_KEY, "--secret", SECRET_KEY, "--region", REGION,
            ])
            .arg("--access-log")
            .arg(&access_log)
            .args(["--port", &format!("127.0.0.1:{port}")])
            .arg("posix")
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut s = S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
            child,
            _dir: dir,
            log_file,
            access_log,
        };
        wait_listening("versitygw", &mut s.child, port, &s.log_file)?;
        Ok(s)
    }

    /// The server's access log (one line per request, S3's server access log format).
    pub fn access_log(&self) -> &std::path::Path {
        &self.access_log
    }

    /// Every request the server has logged so far, in order (its access log).
    pub fn requests(&self) -> Result<Vec<Request>> {
        let text = match std::fs::read_to_string(&self.access_log) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).context("reading versitygw's access log"),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("log starts"))
            .map(|line| {
                parse_request(line)
                    .with_context(|| format!("versitygw access log line {line:?}: expected owner bucket [time] ip requester id operation key uri status ..."))
            })
            .collect()
    }

    /// Environment for an S3 client of this server (the standard AWS variable names).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// [`env`](S3Server::env) with the endpoint replaced by `endpoint`: a client of this
    /// server through a proxy in front of it.
    pub fn env_via(&self, endpoint: &str) -> Vec<(&'static str, String)> {
        let mut env = self.env();
        for (k, v) in &mut env {
            if *k == "AWS_ENDPOINT_URL" {
                *v = endpoint.to_string();
            }
        }
        env
    }

    /// An object_store client for `bucket` on this server.
    pub fn store(&self, bucket: &str) -> Result<object_store::aws::AmazonS3> {
        Ok(object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region(REGION)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_virtual_hosted_style_request(false)
            .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
            .build()?)
    }
}

/// A line of the access log (S3's server access log format: owner, bucket, `[time]`, then
/// remote IP, requester, request id, operation, key, request URI, status, ...).
fn parse_request(line: &str) -> Option<Request> {
    let (_, rest) = line.split_once("] ")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Request {
        operation: f.get(3)?.to_string(),
        key: f.get(4)?.to_string(),
        status: f.get(6)?.parse().ok()?,
    })
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
