//! What the archive's metadata costs in store requests, counted by the store itself
//! (versitygw's own access log), on wide synthetic log dirs cloned from a real fixture
//! segment (see `segvault_harness::wide`). Request counts are exact, so they are pass/fail.

use crate::common::agent::{http_get, metric, poll, sigterm, spawn_agent, wait_exit};
use crate::common::paths;
use segvault_harness::wide::{self, Wide};
use segvault_harness::{Request, S3Server};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(120);

/// Requests by kind (`LIST`, `GET`, `HEAD`, `PUT`, `DELETE`, `POST`).
fn by_kind(reqs: &[Request]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in reqs {
        *out.entry(r.kind().to_string()).or_default() += 1;
    }
    out
}

fn since(s3: &S3Server, mark: usize) -> Vec<Request> {
    s3.requests().unwrap().split_off(mark)
}

fn metrics(port: u16) -> Option<String> {
    http_get(port, "/metrics").and_then(|(status, body)| (status == 200).then_some(body))
}

/// Polls the agent's metrics until `name` reaches at least `want`; returns the body.
fn wait_metric(port: u16, name: &str, want: f64, log: &Path) -> String {
    poll(&format!("{name} >= {want}"), WITHIN, || {
        let body = metrics(port)?;
        (metric(&body, name) >= want).then_some(body)
    });
    metrics(port)
        .unwrap_or_else(|| panic!("metrics gone:\n{}", std::fs::read_to_string(log).unwrap()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// Over 120 lines on purpose: one agent's life beside an idle broker, step by step, each
// step's request count asserted where it happens.
#[test]
fn an_agent_beside_an_idle_broker_makes_no_store_request_until_a_segment_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let fixture = paths::fixture("4.3.1");
    let shape = Wide {
        topics: 12,
        partitions_per_topic: 5,
        segments: 2,
    };
    wide::write(&logs, &fixture, shape).unwrap();
    let ranges = (shape.topics * shape.partitions_per_topic * shape.segments) as f64;
    let s3 = S3Server::start(&["archive"]).unwrap();
    let port = free_port();
    let log = dir.path().join("agent.log");
    let mut agent = spawn_agent(
        &logs,
        "s3://archive/kafka",
        &s3.env(),
        &[
            "--rescan-interval",
            "0.3",
            "--debounce-ms",
            "20",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ],
        &log,
    );
    // The first pass archives every closed segment.
    let body = wait_metric(port, "segvault_uploaded_segments_total", ranges, &log);
    let passes = metric(&body, "segvault_passes_total");
    wait_metric(port, "segvault_passes_total", passes + 1.0, &log);
    assert_eq!(
        metric(&metrics(port).unwrap(), "segvault_uploaded_segments_total"),
        ranges
    );

    // Passes with nothing new (the periodic rescan) make no request at all.
    let mark = s3.requests().unwrap().len();
    let body = metrics(port).unwrap();
    let passes = metric(&body, "segvault_passes_total");
    wait_metric(port, "segvault_passes_total", passes + 5.0, &log);
    let idle = since(&s3, mark);
    assert!(
        idle.is_empty(),
        "5 passes with nothing new made requests: {idle:#?}"
    );

    // The broker rewrites its high watermark checkpoint (same content): no pass needed.
    let ignored = metric(&body, "segvault_checkpoint_rewrites_ignored_total");
    for n in 1..=5 {
        wide::rewrite_checkpoint(&logs).unwrap();
        wait_metric(
            port,
            "segvault_checkpoint_rewrites_ignored_total",
            ignored + n as f64,
            &log,
        );
    }
    let rewrites = since(&s3, mark);
    assert!(
        rewrites.is_empty(),
        "checkpoint rewrites made requests: {rewrites:#?}"
    );

    // One partition rolls and its high watermark commits the closed segment: the new range
    // costs its data objects, its manifest, and the checkpoint's copy; nothing is listed,
    // read or looked at.
    let topic = Wide::topic(3);
    wide::roll(&logs, &fixture, &topic, 2).unwrap();
    wait_metric(port, "segvault_uploaded_segments_total", ranges + 1.0, &log);
    let passes = metric(&metrics(port).unwrap(), "segvault_passes_total");
    wait_metric(port, "segvault_passes_total", passes + 1.0, &log);
    let new = since(&s3, mark);
    let kinds = by_kind(&new);
    let puts: Vec<&str> = new
        .iter()
        .filter(|r| r.kind() == "PUT")
        .map(|r| r.key.as_str())
        .collect();
    let data = puts.iter().filter(|u| u.contains("/data/")).count();
    let manifests = puts.iter().filter(|u| u.contains("/chain/")).count();
    let copies = puts.iter().filter(|u| u.contains("/brokers/")).count();
    assert_eq!(
        (manifests, copies, data, puts.len()),
        (1, 1, puts.len() - 2, new.len()),
        "one new range: expected only PUTs (its data objects, one manifest, one checkpoint copy), got {kinds:?}: {new:#?}"
    );
    assert!(
        data >= 2,
        "expected the range's .log and its indexes: {puts:#?}"
    );
    assert!(
        puts.iter().any(|u| u.contains(&format!("topics/{topic}/"))
            && u.ends_with(&format!("/chain/{:020}.json", 40))),
        "the manifest of [40, 60) of {topic}-2: {puts:#?}"
    );

    sigterm(&agent);
    assert!(wait_exit(&mut agent, WITHIN).success());
}
