//! `segvault agent` next to a real broker rolling segments under load: event-driven passes,
//! metrics and health, graceful shutdown, kill -9 at random moments, startup errors.
//!
//! Nothing here sleeps to synchronise: every wait polls a real outcome (the store, the
//! metrics endpoint, the process) against a deadline. The only sleeps are the chaos test's
//! random run times before a SIGKILL, which are the point of that test.

use crate::common::agent::{http_get, kill_running, metric, poll, sigterm, spawn_agent, wait_exit};
use crate::common::broker::{broker, producer, TOPIC};
use crate::common::logdir::{closed_committed, high_watermark, segments};
use crate::common::paths::fixture;
use crate::common::rng::Rng;
use crate::common::run::segvault;
use crate::common::store::{
    check_store, check_store_keeping_garbage, is_staging, list_files, manifests, TestStore,
};
use segvault_harness::cluster::free_port;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Waits for the producer, then for the checkpointed high watermark to reach the log end
/// (the last roll is committed only then).
fn finish_load(mut producer: Child, log_dir: &Path) {
    let status = poll("the producer to finish", Duration::from_secs(240), || {
        producer.try_wait().unwrap()
    });
    assert!(status.success(), "producer failed");
    let pdir = log_dir.join(format!("{TOPIC}-0"));
    poll(
        "the high watermark checkpoint to catch up",
        Duration::from_secs(60),
        || (high_watermark(log_dir, TOPIC, 0) >= segments(&pdir).last().copied()).then_some(()),
    );
}

/// Manifest ranges of `TOPIC` in a filesystem store.
fn archived(store: &Path) -> Vec<(i64, i64)> {
    let keys = list_files(store, "segvault/v1");
    manifests(TOPIC, &keys, &|k| fs::read(store.join(k)).unwrap())
        .iter()
        .map(|(s, m)| (*s, m["next_offset"].as_i64().unwrap()))
        .collect()
}

/// Polls until every closed committed segment has its manifest.
fn wait_caught_up(store: &Path, log_dir: &Path) {
    poll(
        "every closed committed segment to be archived",
        Duration::from_secs(90),
        || {
            let want = closed_committed(log_dir, TOPIC);
            (!want.is_empty() && archived(store) == want).then_some(())
        },
    );
}

#[test]
fn agent_archives_a_rolling_broker_and_stops_cleanly() {
    let _machine = crate::common::machine::shared();
    let tmp = tempfile::tempdir().unwrap();
    agent_archives_a_rolling_broker(&TestStore::file(tmp.path()), tmp.path());
}

#[test]
fn agent_archives_a_rolling_broker_to_s3() {
    let _machine = crate::common::machine::shared();
    let tmp = tempfile::tempdir().unwrap();
    agent_archives_a_rolling_broker(&TestStore::s3(), tmp.path());
}

/// The agent beside a broker rolling about two segments a second for a minute, then SIGTERM:
/// every closed committed segment archived exactly once and byte-identical, never the active
/// one, with metrics and structured logs that agree with the store.
fn agent_archives_a_rolling_broker(ts: &TestStore, tmp: &Path) {
    let t0 = Instant::now();
    let store = &ts.root;
    let (_c, log_dir) = broker();
    let port = free_port().unwrap();
    let log = tmp.join("agent.log");
    // A rescan interval far beyond the test: every pass after the first is event-driven.
    let addr = format!("127.0.0.1:{port}");
    let mut agent = spawn_agent(
        &log_dir,
        &ts.url,
        &ts.env,
        &[
            "--metrics-addr",
            &addr,
            "--rescan-interval",
            "3600",
            "--log-format",
            "json",
        ],
        &log,
    );
    let producer = producer(&_c, 120_000);

    let health = poll("/healthz to answer 200", Duration::from_secs(30), || {
        assert!(
            agent.try_wait().unwrap().is_none(),
            "agent exited:\n{}",
            fs::read_to_string(&log).unwrap()
        );
        http_get(port, "/healthz").filter(|(s, _)| *s == 200)
    });
    assert_eq!(health.1.trim(), "ok");
    // Archiving goes on during the load: manifests appear while the producer still runs.
    poll(
        "segments archived during the load",
        Duration::from_secs(60),
        || (archived(store).len() >= 5).then_some(()),
    );
    finish_load(producer, &log_dir);
    wait_caught_up(store, &log_dir);
    // Every closed segment is committed by now, so the lag gauges must reach 0; and the
    // upload counter must reach the manifests in the store: a scrape can fall between a
    // manifest's write and the count of its upload (seen once on 4.4.0: 115 counted, 116
    // manifests), so both are polled for, and compared exactly below.
    let body = poll(
        "segvault_archive_lag_segments to reach 0 and every manifest's upload to be counted",
        Duration::from_secs(30),
        || {
            let (_, body) = http_get(port, "/metrics")?;
            let manifests = archived(store).len() as f64;
            (metric(&body, "segvault_archive_lag_segments") == 0.0
                && metric(&body, "segvault_uploaded_segments_total") >= manifests)
                .then_some(body)
        },
    );
    assert_eq!(metric(&body, "segvault_archive_lag_seconds"), 0.0);
    assert_eq!(
        metric(&body, "segvault_oldest_unarchived_segment_age_seconds"),
        0.0
    );
    assert_eq!(metric(&body, "segvault_pass_failures_total"), 0.0);
    assert_eq!(metric(&body, "segvault_corrupt_segments_total"), 0.0);
    assert!(metric(&body, "segvault_passes_total") >= 3.0);
    assert!(metric(&body, "segvault_last_pass_timestamp_seconds") > 1.7e9);

    sigterm(&agent);
    let status = wait_exit(&mut agent, Duration::from_secs(40));
    let agent_log = fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "agent log:\n{agent_log}");

    let n = check_store(&log_dir, TOPIC, &|p| ts.list(p), &|k| ts.get(k));
    assert_eq!(
        metric(&body, "segvault_uploaded_segments_total") as usize,
        n,
        "uploads counted vs manifests"
    );
    let stored: u64 = ts
        .list("segvault/v1")
        .iter()
        .filter(|k| k.contains("/data/"))
        .map(|k| fs::metadata(store.join(k)).unwrap().len())
        .sum();
    assert_eq!(
        metric(&body, "segvault_uploaded_bytes_total") as u64,
        stored,
        "uploaded bytes vs data objects"
    );
    // One structured log line per archived segment.
    let lines: Vec<serde_json::Value> = agent_log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["message"] == "archived segment" && l["topic"] == TOPIC)
            .count(),
        n
    );
    // Every metric served is documented in --help.
    let help = String::from_utf8(
        segvault()
            .args(["agent", "--help"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for name in body
        .lines()
        .filter(|l| l.starts_with("segvault_"))
        .map(|l| l.split(' ').next().unwrap())
    {
        assert!(help.contains(name), "{name} is not documented in --help");
    }
    eprintln!(
        "archived {n} segments to {}; test took {:?}",
        ts.url,
        t0.elapsed()
    );
}

#[test]
fn agent_killed_at_random_moments_archives_exactly_once() {
    let _machine = crate::common::machine::shared();
    let t0 = Instant::now();
    let mut rng = Rng::from_env(0x5e6_7a17);
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let url = format!("file://{}", store.display());
    let (c, log_dir) = broker();
    let log = tmp.path().join("agent.log");
    let producer = producer(&c, 80_000);
    // A rate limit stretches each upload so that kills also land between a range's data
    // objects and its manifest.
    let chaos_args = [
        "--metrics-addr",
        "off",
        "--debounce-ms",
        "200",
        "--rate-limit",
        "4000000",
    ];
    let (mut unfinished, mut staging) = (0, 0);
    for _ in 0..20 {
        let mut agent = spawn_agent(&log_dir, &url, &[], &chaos_args, &log);
        std::thread::sleep(Duration::from_millis(200 + rng.next() % 1800));
        kill_running(&mut agent, &log);
        // What the kill left behind: data without a manifest, or a staging file.
        let keys = list_files(&store, "segvault/v1");
        let starts: Vec<String> = archived(&store)
            .iter()
            .map(|(s, n)| format!("/data/{s:020}-{n:020}/"))
            .collect();
        if keys
            .iter()
            .any(|k| k.contains("/data/") && !starts.iter().any(|s| k.contains(s.as_str())))
        {
            unfinished += 1;
        }
        staging += keys.iter().filter(|k| is_staging(k)).count();
    }
    let by_killed = fs::read_to_string(&log)
        .unwrap()
        .matches("archived segment")
        .count();
    eprintln!(
        "20 kills: the killed agents archived {by_killed} ranges; {unfinished} kills left a range's data \
         without its manifest, {staging} staging files seen"
    );
    finish_load(producer, &log_dir);
    // A kill between a range's data objects and its manifest is a window of milliseconds; make
    // sure the final run meets that state at least once: a half-written .log object and a
    // bogus index for the next range to claim, at the keys the agent itself uses.
    let planted = plant_unfinished_range(&store, &log_dir);
    let mut agent = spawn_agent(&log_dir, &url, &[], &["--metrics-addr", "off"], &log);
    wait_caught_up(&store, &log_dir);
    sigterm(&agent);
    let status = wait_exit(&mut agent, Duration::from_secs(40));
    assert_eq!(
        status.code(),
        Some(0),
        "agent log:\n{}",
        fs::read_to_string(&log).unwrap()
    );
    // Exactly once and byte-identical: every range a killed agent left unfinished was redone
    // under a fresh attempt's keys and completed. What a killed attempt left is never named
    // by a manifest, and only lies under ranges whose manifest exists (it can never be
    // published).
    let (n, garbage) =
        check_store_keeping_garbage(&log_dir, TOPIC, &|p| list_files(&store, p), &|k| {
            fs::read(store.join(k)).unwrap()
        });
    // The planted half-written objects were never published, and the pass that published
    // their range dropped them.
    let keys = list_files(&store, "segvault/v1");
    let m = manifests(TOPIC, &keys, &|k| fs::read(store.join(k)).unwrap());
    for k in &planted {
        assert!(
            !m.values().any(|m| m["objects"]["log"]["key"] == k.as_str()
                || m["objects"]["index"]["key"] == k.as_str()),
            "{k} was published"
        );
        assert!(
            !keys.contains(k),
            "{k} was not dropped when its range was published"
        );
    }
    eprintln!(
        "archived {n} segments across 21 agent runs ({} leftover objects of killed attempts); test took {:?}",
        garbage.len(),
        t0.elapsed()
    );
}

/// Writes the data objects of the range after the archive's current end as a killed upload
/// would leave them (no manifest), under an attempt of their own. Returns their keys.
fn plant_unfinished_range(store: &Path, log_dir: &Path) -> Vec<String> {
    let prop = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(key)?
                    .strip_prefix('=')
                    .map(|v| v.trim().to_string())
            })
            .unwrap()
    };
    let meta = fs::read_to_string(log_dir.join("meta.properties")).unwrap();
    let (cluster, node) = (prop(&meta, "cluster.id"), prop(&meta, "node.id"));
    let pdir = log_dir.join(format!("{TOPIC}-0"));
    let pm = fs::read_to_string(pdir.join("partition.metadata")).unwrap();
    let topic_id = pm
        .lines()
        .find_map(|l| l.strip_prefix("topic_id:"))
        .unwrap()
        .trim()
        .to_string();
    let end = archived(store).last().map_or(0, |r| r.1);
    let (start, next) = *closed_committed(log_dir, TOPIC)
        .iter()
        .find(|r| r.0 == end)
        .expect("a range left to archive");
    let dir = format!("segvault/v1/clusters/{cluster}/topics/{TOPIC}/{topic_id}/0/data/{start:020}-{next:020}/{node}/00000000000000000000000000000000");
    let log = fs::read(pdir.join(format!("{start:020}.log"))).unwrap();
    let mut keys = vec![];
    for (name, bytes) in [
        ("log", &log[..log.len() / 2]),
        ("index", &b"not an index"[..]),
    ] {
        let key = format!("{dir}/{name}");
        fs::create_dir_all(store.join(&dir)).unwrap();
        fs::write(store.join(&key), bytes).unwrap();
        keys.push(key);
    }
    keys
}

fn fixture_log_dir() -> PathBuf {
    fixture("4.3.1")
}

#[test]
fn startup_errors_exit_2_naming_the_path_or_url() {
    let _machine = crate::common::machine::shared();
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("file://{}", tmp.path().join("store").display());
    let run = |args: &[&str], env: &[(&str, String)]| {
        let out = segvault()
            .arg("agent")
            .args(args)
            .args(["--metrics-addr", "off"])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A log dir that does not exist.
    let missing = tmp.path().join("no-such-dir");
    let (code, err) = run(
        &["--store", &store, "--log-dir", missing.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    // A directory that is not a broker's log dir.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let (code, err) = run(
        &["--store", &store, "--log-dir", empty.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(empty.to_str().unwrap()) && err.contains("meta.properties"),
        "{err}"
    );
    // An S3 endpoint where nothing listens.
    let port = free_port().unwrap();
    let env = [
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "k".into()),
        ("AWS_SECRET_ACCESS_KEY", "s".into()),
        ("AWS_REGION", "us-east-1".into()),
    ];
    let t = Instant::now();
    let (code, err) = run(
        &[
            "--store",
            "s3://nobucket/archive",
            "--log-dir",
            fixture_log_dir().to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("s3://nobucket/archive"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the store check took {:?}",
        t.elapsed()
    );
    // A config file with a key the agent does not know.
    let cfg = tmp.path().join("bad.toml");
    fs::write(&cfg, "stroe = \"file:///x\"\n").unwrap();
    let (code, err) = run(&["--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("bad.toml") && err.contains("stroe"), "{err}");
}

#[test]
fn config_file_environment_and_flags_merge() {
    let _machine = crate::common::machine::shared();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    // The file names a log dir that does not exist; the flag overrides it. The store comes
    // from the file, the metrics address from the environment.
    let cfg = tmp.path().join("agent.toml");
    fs::write(
        &cfg,
        format!("log_dirs = [\"/no/such/dir\"]\nstore = \"file://{}\"\nmetrics_addr = \"off\"\nlog_format = \"json\"\n", store.display()),
    )
    .unwrap();
    let port = free_port().unwrap();
    let mut agent = segvault()
        .args([
            "agent",
            "--config",
            cfg.to_str().unwrap(),
            "--log-dir",
            fixture_log_dir().to_str().unwrap(),
        ])
        .env("SEGVAULT_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let body = poll("a pass over the fixture", Duration::from_secs(30), || {
        assert!(agent.try_wait().unwrap().is_none(), "agent exited");
        let (_, body) = http_get(port, "/metrics")?;
        (metric(&body, "segvault_passes_total") >= 1.0).then_some(body)
    });
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
    let chains = list_files(&store, "segvault/v1")
        .iter()
        .filter(|k| k.contains("/chain/"))
        .count();
    assert!(chains > 0);
    assert_eq!(
        metric(&body, "segvault_uploaded_segments_total") as usize,
        chains
    );
    sigterm(&agent);
    assert_eq!(
        wait_exit(&mut agent, Duration::from_secs(40)).code(),
        Some(0)
    );
    let mut err = String::new();
    agent
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "not JSON lines:\n{err}"
    );
}

/// A store outage (the file store's root replaced by a plain file, so every write fails) while
/// the broker keeps rolling: /healthz turns 503 after the configured number of failed passes,
/// the lag gauge keeps growing with the segments that roll (read off the log dir by the failed
/// passes), and once the store is back /healthz is 200 again and every published range is
/// counted.
#[test]
fn healthz_and_lag_tell_the_truth_through_a_store_outage() {
    let _machine = crate::common::machine::shared();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let url = format!("file://{}", store.display());
    let (c, log_dir) = broker();
    let port = free_port().unwrap();
    let log = tmp.path().join("agent.log");
    let addr = format!("127.0.0.1:{port}");
    let mut agent = spawn_agent(
        &log_dir,
        &url,
        &[],
        &[
            "--metrics-addr",
            &addr,
            "--rescan-interval",
            "0.5",
            "--debounce-ms",
            "100",
            "--unhealthy-after-failures",
            "2",
        ],
        &log,
    );
    let producer = producer(&c, 120_000);
    let metrics = || http_get(port, "/metrics").map(|(_, b)| b);
    poll(
        "/healthz 200 and a range archived",
        Duration::from_secs(60),
        || {
            let (s, _) = http_get(port, "/healthz")?;
            (s == 200 && metric(&metrics()?, "segvault_uploaded_segments_total") > 0.0)
                .then_some(())
        },
    );

    // The outage.
    let away = tmp.path().join("store.away");
    fs::rename(&store, &away).unwrap();
    fs::write(&store, b"not a directory").unwrap();
    let (status, body) = poll("/healthz to answer 503", Duration::from_secs(60), || {
        http_get(port, "/healthz").filter(|(s, _)| *s == 503)
    });
    assert!(body.contains("passes failed in a row"), "{status} {body}");
    let m = metrics().unwrap();
    assert!(
        metric(&m, "segvault_consecutive_failed_passes") >= 2.0,
        "{m}"
    );
    let lag0 = metric(&m, "segvault_archive_lag_segments");
    // Segments keep rolling: failed passes still move the lag gauge.
    poll(
        "the lag gauge to grow during the outage",
        Duration::from_secs(60),
        || (metric(&metrics()?, "segvault_archive_lag_segments") >= lag0 + 3.0).then_some(()),
    );

    // The store is back.
    fs::remove_file(&store).unwrap();
    fs::rename(&away, &store).unwrap();
    poll(
        "/healthz 200 after the outage",
        Duration::from_secs(60),
        || http_get(port, "/healthz").filter(|(s, _)| *s == 200),
    );
    finish_load(producer, &log_dir);
    wait_caught_up(&store, &log_dir);
    let body = poll("the lag to reach 0", Duration::from_secs(30), || {
        let b = metrics()?;
        (metric(&b, "segvault_archive_lag_segments") == 0.0).then_some(b)
    });
    assert_eq!(metric(&body, "segvault_consecutive_failed_passes"), 0.0);
    assert!(metric(&body, "segvault_pass_failures_total") >= 2.0);
    sigterm(&agent);
    let status = wait_exit(&mut agent, Duration::from_secs(40));
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        fs::read_to_string(&log).unwrap()
    );
    // Every range this agent published is counted.
    let n = check_store(&log_dir, TOPIC, &|p| list_files(&store, p), &|k| {
        fs::read(store.join(k)).unwrap()
    });
    assert_eq!(
        metric(&body, "segvault_uploaded_segments_total") as usize,
        n
    );
}
