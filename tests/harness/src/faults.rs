//! Faults a real object store produces, injected by a real proxy between segvault and
//! versitygw: HAProxy (Debian's package), which forwards every request to the server and can
//! rewrite the answer after the server has applied it.
//!
//! The case that matters most for the commit protocol is a conditional create
//! (`If-None-Match: *`) that the store applied but whose reply the client never saw as a
//! success: object_store retries a 503, the retry finds the key taken (412), and the client
//! must recognise its own write. [`FaultProxy::lost_create_replies`] does exactly that,
//! deterministically: the first conditional PUT of every key is forwarded, applied by the
//! server, and answered 503; a retry of the same key gets the server's own answer.
//!
//! HAProxy is used as found on `PATH`, or else its Debian package (and the two libraries a
//! plain Debian machine lacks) is fetched with `apt-get download` and unpacked with
//! `dpkg -x` into `target/harness-cache/haproxy`: no root needed, cached for later runs.

use crate::cluster::free_port;
use crate::dist::{cache_dir, go_install, wait_listening};
use anyhow::{bail, Context, Result};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Debian packages unpacked when HAProxy is not installed: the server and the libraries of
/// its that a default Debian 12 image does not have.
const PACKAGES: [&str; 4] = [
    "haproxy",
    "liblua5.3-0",
    "libopentracing-c-wrapper0",
    "libopentracing1",
];

/// The HAProxy binary and the library directory it needs (empty if installed system-wide).
pub fn haproxy() -> Result<(PathBuf, Option<PathBuf>)> {
    if let Ok(out) = Command::new("haproxy").arg("-v").output() {
        if out.status.success() {
            return Ok((PathBuf::from("haproxy"), None));
        }
    }
    let dir = cache_dir().join("haproxy");
    let bin = dir.join("root/usr/sbin/haproxy");
    let libs = dir.join("root/usr/lib/x86_64-linux-gnu");
    if bin.exists() {
        return Ok((bin, Some(libs)));
    }
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs)?;
    let out = Command::new("apt-get")
        .arg("download")
        .args(PACKAGES)
        .current_dir(&debs)
        .output()
        .context("running `apt-get download haproxy` (HAProxy is not on PATH)")?;
    if !out.status.success() {
        bail!(
            "apt-get download {} failed (install haproxy, or run `apt-get update` first):\n{}",
            PACKAGES.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let staging = dir.join("root.tmp");
    let _ = std::fs::remove_dir_all(&staging);
    for e in std::fs::read_dir(&debs)? {
        let deb = e?.path();
        if deb.extension().is_some_and(|x| x == "deb") {
            let out = Command::new("dpkg")
                .arg("-x")
                .arg(&deb)
                .arg(&staging)
                .output()
                .context("running dpkg -x")?;
            if !out.status.success() {
                bail!(
                    "dpkg -x {} failed:\n{}",
                    deb.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    std::fs::rename(&staging, dir.join("root"))?;
    Ok((bin, Some(libs)))
}

/// A running HAProxy in front of one HTTP server; killed on drop.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`: give this to the client instead of the server's endpoint.
    pub endpoint: String,
    child: Child,
    log_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl FaultProxy {
    /// Forwards everything to `upstream` (`http://127.0.0.1:<port>`); the first conditional
    /// create (`PUT` with `If-None-Match`) of each key is applied by the server and answered
    /// 503 instead of the server's answer. Every later request for that key is answered as
    /// the server answers it.
    pub fn lost_create_replies(upstream: &str) -> Result<FaultProxy> {
        let rules = "\
    acl create method PUT
    acl create_cond req.hdr(if-none-match) -m found
    http-request track-sc0 path table creates if create create_cond
    http-request sc-inc-gpc0(0) if create create_cond
    http-request set-var(txn.first_create) sc0_get_gpc0 if create create_cond
    http-response set-status 503 reason \"Service Unavailable (segvault fault proxy: applied, reply lost)\" if { var(txn.first_create) -m int 1 } { status 200 }
    http-response set-header x-segvault-fault lost-reply if { var(txn.first_create) -m int 1 }
";
        Self::start(upstream, rules)
    }

    /// Forwards everything to `upstream`; `percent` % of all answers (any request: the
    /// server has applied it) are replaced by a 503.
    pub fn random_503(upstream: &str, percent: u32) -> Result<FaultProxy> {
        let rules = format!(
            "    http-response set-status 503 reason \"Service Unavailable (segvault fault proxy)\" if {{ rand(100) lt {percent} }}\n"
        );
        Self::start(upstream, &rules)
    }

    /// Forwards everything to `upstream`; every answer to a request whose path ends with
    /// `suffix` is replaced by a 503, retries included (an object the store cannot serve).
    pub fn always_503(upstream: &str, suffix: &str) -> Result<FaultProxy> {
        // The path is a request fetch: remembered in a variable for the response rule.
        let rules = format!(
            "    http-request set-var(txn.fail) bool(true) if {{ path_end {suffix} }}\n    http-response set-status 503 reason \"Service Unavailable (segvault fault proxy)\" if {{ var(txn.fail) -m bool }}\n"
        );
        Self::start(upstream, &rules)
    }

    fn start(upstream: &str, frontend_rules: &str) -> Result<FaultProxy> {
        let (bin, libs) = haproxy()?;
        let server = upstream
            .strip_prefix("http://")
            .with_context(|| format!("upstream {upstream:?} is not http://host:port"))?;
        let dir = tempfile::Builder::new()
            .prefix("segvault-faults-")
            .tempdir()?;
        let port = free_port()?;
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global
    log stdout format raw local0
    maxconn 512
defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend store
    bind 127.0.0.1:{port}
{frontend_rules}    default_backend server
backend server
    server s {server}
backend creates
    stick-table type string len 512 size 100k store gpc0
"
            ),
        )?;
        let log_file = dir.path().join("haproxy.out");
        let log = std::fs::File::create(&log_file)?;
        let mut cmd = Command::new(&bin);
        if let Some(l) = &libs {
            cmd.env("LD_LIBRARY_PATH", l);
        }
        let child = cmd
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut p = FaultProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            log_file,
            _dir: dir,
        };
        wait_listening("haproxy", &mut p.child, port, &p.log_file)?;
        Ok(p)
    }

    /// HAProxy's request log so far (one line per request: status, method, path).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// Requests the proxy answered with a status line `status` whose path contains `path`.
    pub fn count(&self, status: u16, method: &str, path: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                l.contains(&format!(" {status} "))
                    && l.contains(&format!("\"{method} "))
                    && l.contains(path)
            })
            .count()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_file
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pinned Toxiproxy release (Shopify's TCP fault proxy, from the Go module proxy).
pub const TOXIPROXY_VERSION: &str = "v2.5.0";

/// Installs Toxiproxy's server (once) and returns the binary's path.
pub fn toxiproxy_binary() -> Result<PathBuf> {
    go_install(
        "github.com/Shopify/toxiproxy/v2/cmd/server",
        TOXIPROXY_VERSION,
        "server",
        &format!("toxiproxy-server-{TOXIPROXY_VERSION}"),
    )
}

/// A running Toxiproxy with one proxy in front of `upstream`, driven through its HTTP API;
/// killed on drop. Toxics are TCP faults: latency, connections reset, replies cut off after
/// the server has received (and applied) the request.
pub struct Toxiproxy {
    /// `http://127.0.0.1:<port>`: the proxied endpoint.
    pub endpoint: String,
    api_port: u16,
    child: Child,
    log_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Toxiproxy {
    pub fn start(upstream: &str) -> Result<Toxiproxy> {
        let bin = toxiproxy_binary()?;
        let server = upstream
            .strip_prefix("http://")
            .with_context(|| format!("upstream {upstream:?} is not http://host:port"))?
            .to_string();
        let dir = tempfile::Builder::new()
            .prefix("segvault-toxiproxy-")
            .tempdir()?;
        let api_port = free_port()?;
        let log_file = dir.path().join("toxiproxy.out");
        let log = std::fs::File::create(&log_file)?;
        let child = Command::new(&bin)
            .args(["-host", "127.0.0.1", "-port", &api_port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut t = Toxiproxy {
            endpoint: String::new(),
            api_port,
            child,
            log_file,
            _dir: dir,
        };
        wait_listening("toxiproxy", &mut t.child, api_port, &t.log_file)?;
        let port = free_port()?;
        t.api(
            "POST",
            "/proxies",
            &format!(
                r#"{{"name":"store","listen":"127.0.0.1:{port}","upstream":"{server}","enabled":true}}"#
            ),
        )?;
        t.endpoint = format!("http://127.0.0.1:{port}");
        Ok(t)
    }

    /// Adds a toxic (see Toxiproxy's README for types and attributes), e.g.
    /// `add("cut", "limit_data", "downstream", 0.05, r#"{"bytes":100}"#)`.
    pub fn add(
        &self,
        name: &str,
        kind: &str,
        stream: &str,
        toxicity: f64,
        attributes: &str,
    ) -> Result<()> {
        self.api(
            "POST",
            "/proxies/store/toxics",
            &format!(
                r#"{{"name":"{name}","type":"{kind}","stream":"{stream}","toxicity":{toxicity},"attributes":{attributes}}}"#
            ),
        )
        .map(|_| ())
    }

    /// Removes a toxic.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.api("DELETE", &format!("/proxies/store/toxics/{name}"), "")
            .map(|_| ())
    }

    fn api(&self, method: &str, path: &str, body: &str) -> Result<String> {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", self.api_port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let status: u16 = resp
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if !(200..300).contains(&status) {
            bail!("toxiproxy {method} {path}: {resp}");
        }
        Ok(resp)
    }
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
