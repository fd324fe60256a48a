//! The agent's metrics, in Prometheus' text exposition format, and the small HTTP server
//! that serves them (`GET /metrics`) with a health check (`GET /healthz`).
//!
//! Counters are totals since the agent started; gauges describe the last completed pass.
//! Everything is plain atomics: rendering never blocks a pass.

use super::pass::Report;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// The metric names, types and help texts, in the order they are rendered (also shown by
/// `segvault agent --help`).
pub const METRICS: &[(&str, &str, &str)] = &[
    ("segvault_uploaded_bytes_total", "counter", "Bytes stored for archived segments (after compression), since the agent started."),
    ("segvault_uploaded_segments_total", "counter", "Segment ranges archived (manifests created by this agent), since the agent started; counted when each is published, also in passes that fail later."),
    ("segvault_pass_failures_total", "counter", "Passes that ended with an error (store, I/O); the agent retries at the next trigger."),
    ("segvault_corrupt_segments_total", "counter", "Distinct segments refused because a batch failed verification (each counted once per agent run)."),
    ("segvault_divergences_total", "counter", "Distinct ranges where a replica holds other batches than the archive (each counted once per agent run)."),
    ("segvault_gaps_total", "counter", "Ranges recorded as gaps: offsets no replica had when the archive reached them."),
    ("segvault_passes_total", "counter", "Passes finished, successful or not."),
    ("segvault_checkpoint_rewrites_ignored_total", "counter", "Rewrites of a root checkpoint (replication-offset-checkpoint every few seconds on a live broker) that committed no closed segment waiting for it: no pass was started for them."),
    ("segvault_archive_lag_segments", "gauge", "Closed segments not yet archived, committed or not (the active segment is never counted), from the log dir listing after every pass, failed or not."),
    ("segvault_archive_lag_seconds", "gauge", "Seconds since the last successful pass that left no closed committed segment unarchived (since the agent started if none has yet); 0 when the last pass caught up."),
    ("segvault_oldest_unarchived_segment_age_seconds", "gauge", "Now minus the .log mtime of the oldest closed segment not archived after the last pass; 0 if none."),
    ("segvault_last_pass_timestamp_seconds", "gauge", "Unix time the last successful pass finished; 0 before the first."),
    ("segvault_consecutive_failed_passes", "gauge", "Passes that failed in a row since the last successful one; /healthz answers 503 from --unhealthy-after-failures on."),
];

/// Shared metric state.
#[derive(Debug)]
pub struct Metrics {
    pub uploaded_bytes: AtomicU64,
    pub uploaded_segments: AtomicU64,
    pub pass_failures: AtomicU64,
    pub corrupt_segments: AtomicU64,
    pub divergences: AtomicU64,
    pub gaps: AtomicU64,
    pub passes: AtomicU64,
    pub checkpoint_rewrites_ignored: AtomicU64,
    pub lag_segments: AtomicU64,
    /// When the archive was last caught up (ms since the epoch).
    pub caught_up_at_ms: AtomicI64,
    /// Whether the last successful pass left nothing committed unarchived.
    pub caught_up: AtomicBool,
    /// mtime of the oldest unarchived closed segment, ms; `i64::MIN` for none.
    pub oldest_unarchived_mtime_ms: AtomicI64,
    /// When the last successful pass finished, ms; 0 before the first.
    pub last_pass_ms: AtomicI64,
    /// Set once the first pass has completed successfully.
    pub ready: AtomicBool,
    /// Failed passes since the last successful one.
    pub consecutive_failures: AtomicU64,
    /// When the agent started (ms): the age of "no successful pass yet".
    pub started_ms: i64,
    /// /healthz answers 503 once this many passes failed in a row ...
    pub unhealthy_after_failures: u64,
    /// ... or once the last successful pass (or the start, before one) is older than this.
    pub unhealthy_after_ms: i64,
}

/// What /healthz answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    Starting,
    Unhealthy(String),
}

pub use crate::sys::now_ms;

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            uploaded_bytes: AtomicU64::new(0),
            uploaded_segments: AtomicU64::new(0),
            pass_failures: AtomicU64::new(0),
            corrupt_segments: AtomicU64::new(0),
            divergences: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            passes: AtomicU64::new(0),
            checkpoint_rewrites_ignored: AtomicU64::new(0),
            lag_segments: AtomicU64::new(0),
            caught_up_at_ms: AtomicI64::new(now_ms()),
            caught_up: AtomicBool::new(false),
            oldest_unarchived_mtime_ms: AtomicI64::new(i64::MIN),
            last_pass_ms: AtomicI64::new(0),
            ready: AtomicBool::new(false),
            consecutive_failures: AtomicU64::new(0),
            started_ms: now_ms(),
            unhealthy_after_failures: 3,
            unhealthy_after_ms: 600_000,
        }
    }
}

impl Metrics {
    /// Counts a range the moment it is published (see `PassOptions::on_published`).
    pub fn published(&self, bytes: u64) {
        self.uploaded_segments.fetch_add(1, Relaxed);
        self.uploaded_bytes.fetch_add(bytes, Relaxed);
    }

    /// Records a successful pass. Uploads are counted as they are published, corrupt
    /// segments and divergences by the caller (deduplicated), since a pass reports them
    /// again until they are resolved.
    pub fn pass_succeeded(&self, r: &Report) {
        let now = now_ms();
        self.passes.fetch_add(1, Relaxed);
        self.gaps.fetch_add(r.gaps, Relaxed);
        self.set_lag(r.unarchived_segments, r.oldest_unarchived_mtime_ms);
        let caught_up = r.unarchived_committed_segments == 0;
        if caught_up {
            self.caught_up_at_ms.store(now, Relaxed);
        }
        self.caught_up.store(caught_up, Relaxed);
        self.last_pass_ms.store(now, Relaxed);
        self.consecutive_failures.store(0, Relaxed);
        self.ready.store(true, Relaxed);
    }

    /// Records a failed pass, with the lag the log dirs show now (see the agent).
    pub fn pass_failed(&self, lag: Option<(u64, Option<i64>)>) {
        self.passes.fetch_add(1, Relaxed);
        self.pass_failures.fetch_add(1, Relaxed);
        self.consecutive_failures.fetch_add(1, Relaxed);
        if let Some((n, oldest)) = lag {
            self.set_lag(n, oldest);
        }
        // The archive cannot have caught up on a failed pass.
        self.caught_up.store(false, Relaxed);
    }

    fn set_lag(&self, segments: u64, oldest_mtime_ms: Option<i64>) {
        self.lag_segments.store(segments, Relaxed);
        self.oldest_unarchived_mtime_ms
            .store(oldest_mtime_ms.unwrap_or(i64::MIN), Relaxed);
    }

    /// 503 after `unhealthy_after_failures` failed passes in a row, or when the last
    /// successful pass is older than `unhealthy_after_ms` (counting from the start before the
    /// first); "starting" before the first pass, within that age.
    pub fn health(&self, now_ms: i64) -> Health {
        let failures = self.consecutive_failures.load(Relaxed);
        if failures >= self.unhealthy_after_failures.max(1) {
            return Health::Unhealthy(format!(
                "{failures} passes failed in a row (see the agent's log)"
            ));
        }
        let ready = self.ready.load(Relaxed);
        let since = if ready {
            self.last_pass_ms.load(Relaxed)
        } else {
            self.started_ms
        };
        let age = now_ms - since;
        if age > self.unhealthy_after_ms {
            return Health::Unhealthy(if ready {
                format!("the last successful pass finished {} s ago", age / 1000)
            } else {
                format!(
                    "no pass has succeeded in the {} s since the start",
                    age / 1000
                )
            });
        }
        if ready {
            Health::Ok
        } else {
            Health::Starting
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let now = now_ms();
        let secs = |ms: i64| ms as f64 / 1000.0;
        let lag_seconds = if self.caught_up.load(Relaxed) {
            0.0
        } else {
            secs((now - self.caught_up_at_ms.load(Relaxed)).max(0))
        };
        let oldest = self.oldest_unarchived_mtime_ms.load(Relaxed);
        let oldest_age = if oldest == i64::MIN {
            0.0
        } else {
            secs((now - oldest).max(0))
        };
        let values: [String; 13] = [
            self.uploaded_bytes.load(Relaxed).to_string(),
            self.uploaded_segments.load(Relaxed).to_string(),
            self.pass_failures.load(Relaxed).to_string(),
            self.corrupt_segments.load(Relaxed).to_string(),
            self.divergences.load(Relaxed).to_string(),
            self.gaps.load(Relaxed).to_string(),
            self.passes.load(Relaxed).to_string(),
            self.checkpoint_rewrites_ignored.load(Relaxed).to_string(),
            self.lag_segments.load(Relaxed).to_string(),
            format!("{lag_seconds:.3}"),
            format!("{oldest_age:.3}"),
            format!("{:.3}", secs(self.last_pass_ms.load(Relaxed))),
            self.consecutive_failures.load(Relaxed).to_string(),
        ];
        let mut out = String::with_capacity(2048);
        for ((name, kind, help), value) in METRICS.iter().zip(values) {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
        out
    }
}

/// Binds the metrics address now (so a bad address fails at startup) and returns the server
/// future, which serves until dropped.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = ()> + Send + 'static,
)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let serve = async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(&req, &metrics)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                // A slow or stuck client must not hold a task forever.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(30), conn).await;
            });
        }
    };
    Ok((local, serve))
}

fn respond<B>(
    req: &hyper::Request<B>,
    metrics: &Metrics,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/metrics") => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        (&hyper::Method::GET, "/healthz") => match metrics.health(now_ms()) {
            Health::Ok => (200, "text/plain; charset=utf-8", "ok\n".to_string()),
            Health::Starting => (
                503,
                "text/plain; charset=utf-8",
                "starting: no pass has completed yet\n".to_string(),
            ),
            Health::Unhealthy(why) => (
                503,
                "text/plain; charset=utf-8",
                format!("unhealthy: {why}\n"),
            ),
        },
        (&hyper::Method::GET, _) => (
            404,
            "text/plain; charset=utf-8",
            "not found; try /metrics or /healthz\n".to_string(),
        ),
        _ => (405, "text/plain; charset=utf-8", "only GET\n".to_string()),
    };
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_failures_and_age() {
        let m = Metrics {
            unhealthy_after_failures: 2,
            unhealthy_after_ms: 1_000,
            ..Metrics::default()
        };
        let t0 = m.started_ms;
        assert_eq!(m.health(t0), Health::Starting);
        assert!(matches!(m.health(t0 + 1_001), Health::Unhealthy(_)));
        m.pass_succeeded(&Report::default());
        let t = m.last_pass_ms.load(Relaxed);
        assert_eq!(m.health(t), Health::Ok);
        m.pass_failed(Some((7, None)));
        assert_eq!(m.health(t), Health::Ok);
        assert_eq!(m.lag_segments.load(Relaxed), 7);
        m.pass_failed(None);
        assert!(matches!(m.health(t), Health::Unhealthy(w) if w.contains("2 passes failed")));
        m.pass_succeeded(&Report::default());
        let t = m.last_pass_ms.load(Relaxed);
        assert_eq!(m.health(t), Health::Ok);
        assert!(
            matches!(m.health(t + 1_001), Health::Unhealthy(w) if w.contains("last successful pass"))
        );
    }
}
