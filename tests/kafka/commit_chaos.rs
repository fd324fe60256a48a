//! The agent beside a real rolling broker for two minutes, archiving to S3 through real
//! faults, killed with SIGKILL at random moments, with `archive --once` runs beside it:
//! at the end every closed committed segment is in the store exactly once, with every object
//! its manifest names, byte-identical with the broker's files, and it restores.
//!
//! The path to the store: segvault -> Toxiproxy (latency, connections reset, replies cut off
//! after the request reached the server) -> HAProxy (10% of answers replaced by a 503 after
//! versitygw applied the request) -> versitygw.

use crate::common::agent::{kill_running, poll, sigterm, spawn_agent, wait_exit};
use crate::common::broker::{broker, producer, TOPIC};
use crate::common::logdir::{closed_committed, segments};
use crate::common::rng::Rng;
use crate::common::run::{assert_exit, segvault};
use crate::common::store::{audit, check_store_keeping_garbage, list_files, manifests};
use segvault_harness::{FaultProxy, S3Server, Toxiproxy};
use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
// Over 120 lines on purpose: one scenario against real brokers, each step working on the
// state the previous step left (split, its parts could only be called in this order).
fn agent_through_faults_and_kills_loses_nothing() {
    // Two minutes of load, faults and kills whose interleaving is the point: alone on 2 cores.
    let _machine = crate::common::machine::alone();
    let t0 = Instant::now();
    let mut rng = Rng::from_env(0x000c_4a05);
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&["archive"]).unwrap();
    let haproxy = FaultProxy::random_503(&s3.endpoint, 10).unwrap();
    let toxi = Toxiproxy::start(&haproxy.endpoint).unwrap();
    toxi.add(
        "latency",
        "latency",
        "downstream",
        1.0,
        r#"{"latency":5,"jitter":10}"#,
    )
    .unwrap();
    toxi.add(
        "reset",
        "reset_peer",
        "downstream",
        0.03,
        r#"{"timeout":20}"#,
    )
    .unwrap();
    toxi.add("cut", "limit_data", "downstream", 0.03, r#"{"bytes":64}"#)
        .unwrap();
    let faulty = s3.env_via(&toxi.endpoint);
    let url = "s3://archive/kafka";
    let root = s3.root.join("archive/kafka");

    let (c, log_dir) = broker();
    let log = tmp.path().join("agent.log");
    let mut load = producer(&c, 240_000);
    let args = [
        "--metrics-addr",
        "off",
        "--debounce-ms",
        "200",
        "--rescan-interval",
        "1",
    ];
    let (mut kills, mut once_runs, mut once_failed) = (0, 0, 0);
    while load.try_wait().unwrap().is_none() {
        let mut agent = spawn_agent(&log_dir, url, &faulty, &args, &log);
        let life = Duration::from_millis(500 + rng.next() % 3500);
        let until = Instant::now() + life;
        if rng.next().is_multiple_of(3) {
            // A cron job's pass beside the agent.
            let out = segvault()
                .args(["archive", "--once", "--store", url, "--log-dir"])
                .arg(&log_dir)
                .envs(faulty.iter().map(|(k, v)| (*k, v.as_str())))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .unwrap();
            once_runs += 1;
            // Under faults a pass may fail (exit 2); it must never find the archive damaged.
            match out.status.code() {
                Some(0) => {}
                Some(2) => once_failed += 1,
                other => panic!(
                    "archive --once exited {other:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        kill_running(&mut agent, &log);
        kills += 1;
    }
    assert!(load.wait().unwrap().success());
    // The last roll is committed once the high watermark checkpoint catches up.
    poll(
        "every closed segment committed",
        Duration::from_secs(60),
        || {
            let want = closed_committed(&log_dir, TOPIC);
            let bases = segments(&log_dir.join(format!("{TOPIC}-0")));
            (want.len() + 1 == bases.len()).then_some(())
        },
    );
    // A last agent, still through the faults, catches up; then SIGTERM.
    let mut agent = spawn_agent(&log_dir, url, &faulty, &args, &log);
    let want = closed_committed(&log_dir, TOPIC);
    poll(
        "the archive to catch up through the faults",
        Duration::from_secs(240),
        || {
            let keys = list_files(&root, "segvault/v1");
            let m = manifests(TOPIC, &keys, &|k| fs::read(root.join(k)).unwrap());
            (m.len() >= want.len()).then_some(())
        },
    );
    sigterm(&agent);
    let status = wait_exit(&mut agent, Duration::from_secs(60));
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        fs::read_to_string(&log).unwrap()
    );

    let lost_replies = haproxy.count(503, "PUT", "/");
    let (n, garbage) =
        check_store_keeping_garbage(&log_dir, TOPIC, &|p| list_files(&root, p), &|k| {
            fs::read(root.join(k))
                .unwrap_or_else(|e| panic!("{k}: {e}: a manifest names an object the store lost"))
        });
    let a = audit(&root);
    assert!(a.missing.is_empty(), "{:?}", a.missing);
    assert!(lost_replies > 0, "HAProxy injected no 503 after a PUT");
    assert!(kills >= 10, "only {kills} kills");

    // The archive restores, byte for byte, straight from versitygw.
    let dst = tmp.path().join("restored");
    let out = segvault()
        .args(["restore", url, "--to"])
        .arg(&dst)
        .args(["--topic", &format!("^{TOPIC}$")])
        .envs(s3.env().iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    for (start, _) in &want {
        let name = format!("{TOPIC}-0/{start:020}.log");
        assert!(
            fs::read(dst.join(&name)).unwrap() == fs::read(log_dir.join(&name)).unwrap(),
            "{name} restored differently"
        );
    }
    eprintln!(
        "{n} ranges archived exactly once through {kills} kills, {once_runs} concurrent archive --once \
         ({once_failed} failed under faults), {lost_replies} PUT answers replaced by 503 after applied; \
         {} leftover objects of killed attempts; restored byte-identical; {:?}",
        garbage.len(),
        t0.elapsed()
    );
}
