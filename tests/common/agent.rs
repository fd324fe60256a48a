//! Running `segvault agent` from a test: spawning, signalling, polling its endpoints.

use super::run::segvault;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Starts `segvault agent` with its stderr appended to `log`.
pub fn spawn_agent(
    log_dir: &Path,
    store: &str,
    env: &[(&'static str, String)],
    extra: &[&str],
    log: &Path,
) -> Child {
    let err = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    segvault()
        .args(["agent", "--store", store, "--log-dir"])
        .arg(log_dir)
        .args(extra)
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap()
}

/// Kills a running agent with SIGKILL; fails the test, showing the agent's `log`, if it had
/// already exited.
pub fn kill_running(agent: &mut Child, log: &Path) {
    assert!(
        agent.try_wait().unwrap().is_none(),
        "agent exited early:\n{}",
        fs::read_to_string(log).unwrap()
    );
    agent.kill().unwrap();
    agent.wait().unwrap();
}

pub fn sigterm(child: &Child) {
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

pub fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("agent did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` until it returns `Some`, failing with `what` after `within`.
pub fn poll<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.1 GET: (status, body), or None if nothing listens yet.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split(' ').nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

pub fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing from:\n{body}"))
}
