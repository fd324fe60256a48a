//! The commit protocol under faults and concurrency: no range the archive has published ever
//! loses an object, whatever the store's replies and however many archivers run at once.
//!
//! - A conditional create of a manifest that the store applied but answered 503 (a real
//!   proxy, HAProxy, rewrites the reply after versitygw applied the PUT): object_store retries,
//!   gets 412, and the pass must recognise the stored manifest as its own, not as another
//!   broker's win, and must not delete the objects it names.
//! - Two `archive --once` on the same log dir and store at the same moment (a cron job beside
//!   the agent, an agent restarted during its predecessor's grace period), 20 rounds on a
//!   file store and 20 on S3: every range once, every object its manifest names present, and
//!   nothing else left under `data/`.

use crate::common::paths::fixture;
use crate::common::run::{json_lines, output, total};
use crate::common::store::{audit, list_files};
use segvault_harness::fixtures::copy_dir;
use segvault_harness::{FaultProxy, S3Server};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The fixture every test here archives.
const VERSION: &str = "4.3.1";

fn segvault(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut c = crate::common::run::segvault();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn run(args: &[&str], env: &[(&str, String)]) -> Output {
    output(&mut segvault(args, env))
}

fn spawn_archive(log_dir: &Path, url: &str, env: &[(&str, String)]) -> Child {
    segvault(
        &[
            "archive",
            "--once",
            "--format",
            "json",
            "--log-dir",
            log_dir.to_str().unwrap(),
            "--store",
            url,
        ],
        env,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

/// The total line of an `archive --format json` run's stdout.
fn total_of(stdout: &[u8]) -> Value {
    total(&json_lines(stdout)).clone()
}

/// Restores the archive at `url` into a new dir and checks every published segment range:
/// the restored `.log` is byte for byte the source's.
fn restores_byte_identical(url: &str, env: &[(&str, String)], src: &Path, dst: &Path, root: &Path) {
    let out = run(&["restore", url, "--to", dst.to_str().unwrap()], env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut compared = 0;
    for k in list_files(root, "segvault/v1") {
        if !k.contains("/chain/") {
            continue;
        }
        let m: Value = serde_json::from_slice(&fs::read(root.join(&k)).unwrap()).unwrap();
        if m["kind"] != "segment" || m["slice_position"] != 0 {
            continue;
        }
        let name = format!(
            "{}-{}/{:020}.log",
            m["topic"].as_str().unwrap(),
            m["partition"],
            m["segment_base_offset"].as_i64().unwrap()
        );
        let restored = fs::read(dst.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            restored == fs::read(src.join(&name)).unwrap(),
            "{name}: restored bytes differ from the source"
        );
        compared += 1;
    }
    assert!(compared >= 20, "only {compared} ranges compared");
}

#[test]
fn a_lost_reply_to_a_manifest_create_is_our_own_win() {
    let _machine = crate::common::machine::shared();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    copy_dir(&fixture(VERSION), &src, &[]).unwrap();
    let s3 = S3Server::start(&["archive"]).unwrap();
    let proxy = FaultProxy::lost_create_replies(&s3.endpoint).unwrap();
    let through_proxy = s3.env_via(&proxy.endpoint);
    let url = "s3://archive/kafka";
    let root = s3.root.join("archive/kafka");

    let out = spawn_archive(&src, url, &through_proxy)
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let t = total_of(&out.stdout);

    // The fault was real: every manifest's first create was applied and answered 503.
    let a = audit(&root);
    assert!(a.manifests.len() >= 20, "{} manifests", a.manifests.len());
    let lost = proxy.count(503, "PUT", "/chain/");
    assert_eq!(
        lost,
        a.manifests.len(),
        "lost replies vs manifests; proxy log:\n{}",
        proxy.log()
    );
    // Each one was recognised as this pass's own win.
    assert_eq!(
        t["uploaded_segments"].as_u64(),
        Some(a.manifests.len() as u64),
        "{t}"
    );
    assert!(
        !stderr.contains("already archived"),
        "a lost reply was taken for another broker's win:\n{stderr}"
    );
    assert!(
        a.missing.is_empty(),
        "{} objects lost, e.g. {:?}",
        a.missing.len(),
        &a.missing[..a.missing.len().min(3)]
    );
    assert_eq!(a.unreferenced, Vec::<String>::new());

    // A second pass (no faults) has nothing to do, and the archive restores byte for byte.
    let again = run(
        &[
            "archive",
            "--once",
            "--format",
            "json",
            "--log-dir",
            src.to_str().unwrap(),
            "--store",
            url,
        ],
        &s3.env(),
    );
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(total_of(&again.stdout)["uploaded_segments"], 0);
    let ls = run(&["ls", url], &s3.env());
    assert_eq!(
        ls.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ls.stdout)
    );
    restores_byte_identical(url, &s3.env(), &src, &tmp.path().join("dst"), &root);
}

/// Two archivers started together on one log dir and one store, `rounds` times, each round on
/// an empty archive.
fn two_archivers_at_once(
    rounds: usize,
    store: &dyn Fn(usize) -> (String, PathBuf),
    env: &[(&str, String)],
) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    copy_dir(&fixture(VERSION), &src, &[]).unwrap();
    let mut both_uploaded = 0;
    for round in 0..rounds {
        let (url, root) = store(round);
        let a = spawn_archive(&src, &url, env);
        let b = spawn_archive(&src, &url, env);
        let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        for o in [&oa, &ob] {
            assert_eq!(
                o.status.code(),
                Some(0),
                "round {round}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let (ta, tb) = (total_of(&oa.stdout), total_of(&ob.stdout));
        let (ua, ub) = (
            ta["uploaded_segments"].as_u64().unwrap(),
            tb["uploaded_segments"].as_u64().unwrap(),
        );
        both_uploaded += (ua > 0 && ub > 0) as usize;
        let au = audit(&root);
        assert_eq!(
            au.missing,
            Vec::<String>::new(),
            "round {round} ({url}): objects lost"
        );
        assert_eq!(
            au.unreferenced,
            Vec::<String>::new(),
            "round {round} ({url}): a loser's objects left behind"
        );
        assert_eq!(
            ua + ub,
            au.manifests.len() as u64,
            "round {round}: each range published by exactly one of the two"
        );
        if round == 0 {
            restores_byte_identical(&url, env, &src, &tmp.path().join("dst"), &root);
        }
    }
    // The two really raced: in most rounds both published some of the ranges.
    eprintln!("{both_uploaded} of {rounds} rounds had both archivers publishing ranges");
    assert!(
        both_uploaded >= 1,
        "the two archivers never overlapped in {rounds} rounds"
    );
}

#[test]
fn two_archivers_at_once_on_a_file_store_lose_nothing() {
    let _machine = crate::common::machine::shared();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().to_path_buf();
    two_archivers_at_once(
        20,
        &|round| {
            let root = base.join(format!("store-{round}"));
            (format!("file://{}", root.display()), root)
        },
        &[],
    );
}

#[test]
fn two_archivers_at_once_on_s3_lose_nothing() {
    let _machine = crate::common::machine::shared();
    let s3 = S3Server::start(&["archive"]).unwrap();
    let root = s3.root.join("archive");
    two_archivers_at_once(
        20,
        &|round| {
            (
                format!("s3://archive/round-{round}"),
                root.join(format!("round-{round}")),
            )
        },
        &s3.env(),
    );
}

fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    let st = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(st.success(), "mkfifo {}", path.display());
}

/// Waits for `child` with a deadline, draining its output meanwhile (a full pipe must not
/// stall it): a hang is a failure, not a stuck suite.
fn output_within(child: Child, secs: u64) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("the process hung for {secs} s");
        }
    }
}

/// A FIFO where a closed segment's `.log` or a `partition.metadata` should be: nothing
/// blocks on it, the two partitions fail naming the file (exit 2), and every other partition
/// is archived exactly as from an intact copy. `verify` reports it and does not hang either.
#[test]
fn a_fifo_in_one_partition_fails_only_that_partition() {
    let _machine = crate::common::machine::shared();
    let tmp = tempfile::tempdir().unwrap();
    let intact = tmp.path().join("intact");
    copy_dir(&fixture(VERSION), &intact, &[]).unwrap();
    let bad = tmp.path().join("bad");
    copy_dir(&fixture(VERSION), &bad, &[]).unwrap();
    let seg = bad.join("codec-none-0/00000000000000000020.log");
    mkfifo(&seg);
    let pm = bad.join("codec-gzip-1/partition.metadata");
    mkfifo(&pm);

    let url_ok = format!("file://{}", tmp.path().join("store-ok").display());
    let ok = output_within(spawn_archive(&intact, &url_ok, &[]), 120);
    assert_eq!(ok.status.code(), Some(0));
    let url_bad = format!("file://{}", tmp.path().join("store-bad").display());
    let out = output_within(spawn_archive(&bad, &url_bad, &[]), 120);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for p in [&seg, &pm] {
        assert!(
            stderr.contains(&p.display().to_string()) && stderr.contains("FIFO"),
            "{} not named: {stderr}",
            p.display()
        );
    }
    assert_eq!(total_of(&out.stdout)["failures"], 2);
    // Every other partition's ranges are there, as from the intact copy; codec-none-0 up to
    // the FIFO.
    let ranges = |root: &Path| -> Vec<String> {
        let mut v: Vec<String> = list_files(root, "segvault/v1")
            .into_iter()
            .filter(|k| k.contains("/chain/"))
            .collect();
        v.sort();
        v
    };
    let want: Vec<String> = ranges(&tmp.path().join("store-ok"))
        .into_iter()
        .filter(|k| !k.contains("/topics/codec-gzip/") || !k.contains("/1/chain/"))
        .filter(|k| {
            !(k.contains("/topics/codec-none/")
                && k.contains("/0/chain/")
                && !k.ends_with("/00000000000000000000.json"))
        })
        .collect();
    assert_eq!(ranges(&tmp.path().join("store-bad")), want);
    let a = audit(&tmp.path().join("store-bad"));
    assert!(a.missing.is_empty(), "{:?}", a.missing);

    let v = output_within(
        segvault(&["verify", "--format", "json", bad.to_str().unwrap()], &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        120,
    );
    let text = String::from_utf8_lossy(&v.stdout).into_owned();
    assert_ne!(v.status.code(), Some(0), "{text}");
    assert!(
        text.contains("codec-gzip-1") && text.contains("FIFO"),
        "verify does not name the FIFO: {text}"
    );
}

/// Without `replication-offset-checkpoint` (or with a garbled one) no segment can be known
/// committed: the pass says so and exits 2, never a silent "0 segments" with exit 0.
#[test]
fn a_missing_or_garbled_high_watermark_checkpoint_is_a_failure() {
    let _machine = crate::common::machine::shared();
    for garble in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("logs");
        copy_dir(&fixture(VERSION), &src, &[]).unwrap();
        let cp = src.join("replication-offset-checkpoint");
        if garble {
            fs::write(&cp, b"0\nnot a number\n").unwrap();
        } else {
            fs::remove_file(&cp).unwrap();
        }
        let url = format!("file://{}", tmp.path().join("store").display());
        let out = output_within(spawn_archive(&src, &url, &[]), 120);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "garbled {garble}: {stderr}");
        assert!(
            stderr.contains("replication-offset-checkpoint") && stderr.contains("committed"),
            "garbled {garble}: {stderr}"
        );
        assert_eq!(total_of(&out.stdout)["uploaded_segments"], 0);
    }
}

/// A password in a store URL never appears in what segvault prints.
#[test]
fn a_password_in_the_store_url_is_never_printed() {
    let _machine = crate::common::machine::shared();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    copy_dir(&fixture(VERSION), &src, &[]).unwrap();
    for args in [
        vec!["ls", "s3://user:hunter2@nobucket/x?sig=s3cr3t"],
        vec![
            "archive",
            "--once",
            "--store",
            "https://user:hunter2@127.0.0.1:1/x?sig=s3cr3t",
            "--log-dir",
            src.to_str().unwrap(),
        ],
    ] {
        let out = run(
            &args,
            &[
                ("AWS_ACCESS_KEY_ID", "k".into()),
                ("AWS_SECRET_ACCESS_KEY", "s".into()),
            ],
        );
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ne!(out.status.code(), Some(0), "{all}");
        assert!(
            !all.contains("hunter2") && !all.contains("s3cr3t"),
            "{args:?}: {all}"
        );
    }
}

/// A copy of the fixture whose `codec-none-0` first segment is `[0, 20)` in 4 batches of 5
/// records of 2 MiB (its indexes left out). Returns the log dir and that segment.
fn with_a_big_segment(tmp: &Path) -> (PathBuf, PathBuf) {
    use segvault_format::encode::{encode_batch, BatchSpec, RecordSpec};
    let src = tmp.join("logs");
    copy_dir(&fixture(VERSION), &src, &[]).unwrap();
    let seg = src.join("codec-none-0/00000000000000000000.log");
    let mut big = Vec::new();
    for b in 0..4i64 {
        big.extend(encode_batch(&BatchSpec {
            base_offset: b * 5,
            records: (0..5)
                .map(|r| {
                    RecordSpec::kv(b"k", format!("{b}-{r}-{}", "x".repeat(2 << 20)).as_bytes())
                })
                .collect(),
            ..Default::default()
        }));
    }
    fs::write(&seg, &big).unwrap();
    for ext in ["index", "timeindex"] {
        let _ = fs::remove_file(seg.with_extension(ext));
    }
    (src, seg)
}

/// Polls `/proc/<pid>/maps` until `file` is mapped by the process.
fn wait_mapped(child: &mut Child, file: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let needle = file.display().to_string();
    loop {
        let maps = fs::read_to_string(format!("/proc/{}/maps", child.id())).unwrap_or_default();
        if maps.contains(&needle) {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited before mapping {needle}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "{needle} never mapped"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// A segment truncated while `archive` (rate-limited to 1 MB/s, so that it is mid-read however busy the machine) or `inspect`
/// (its output not drained, so that it is mid-walk) reads it: never SIGBUS. Each exits 2 with
/// an I/O error naming the file; the archive records no corruption for it and archives the
/// other partitions.
#[test]
fn a_segment_truncated_while_read_is_an_io_error_not_a_signal() {
    let _machine = crate::common::machine::shared();
    use segvault_format::encode::{encode_batch, BatchSpec, RecordSpec};
    let tmp = tempfile::tempdir().unwrap();
    let (src, seg) = with_a_big_segment(tmp.path());
    let url = format!("file://{}", tmp.path().join("store").display());
    let mut archive = segvault(
        &[
            "archive",
            "--once",
            "--format",
            "json",
            "--concurrency",
            "1",
            "--rate-limit",
            "1000000",
            "--log-dir",
            src.to_str().unwrap(),
            "--store",
            &url,
        ],
        &[],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_mapped(&mut archive, &seg);
    truncate(&seg, 1 << 20);
    let out = output_within(archive, 300);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{:?}: {stderr}", out.status);
    assert!(
        stderr.contains(&seg.display().to_string())
            && stderr.contains("truncated while it was read"),
        "{stderr}"
    );
    assert_eq!(total_of(&out.stdout)["failures"], 1);
    let keys = list_files(&tmp.path().join("store"), "segvault/v1");
    assert!(
        !keys.iter().any(|k| k.contains("/corrupt/")),
        "truncation reported as corruption"
    );
    assert!(keys
        .iter()
        .any(|k| k.contains("/topics/codec-gzip/") && k.contains("/chain/")));

    // inspect, walking records: its output is not drained until the file is truncated.
    let one = tmp.path().join("one.log");
    let mut many = Vec::new();
    for b in 0..20000i64 {
        many.extend(encode_batch(&BatchSpec {
            base_offset: b * 10,
            records: (0..10)
                .map(|r| RecordSpec::kv(b"k", format!("v{b}-{r}").as_bytes()))
                .collect(),
            ..Default::default()
        }));
    }
    fs::write(&one, &many).unwrap();
    let mut inspect = segvault(&["inspect", "--records", one.to_str().unwrap()], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_mapped(&mut inspect, &one);
    truncate(&one, 4096);
    let out = output_within(inspect, 120);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{:?}: {stderr}", out.status);
    assert!(stderr.contains("truncated while it was read"), "{stderr}");
}

/// The agent meets a segment truncated while it reads it: it survives (no SIGBUS), logs a
/// failed pass naming the file, records no corruption, and archives the other partitions.
#[test]
fn the_agent_survives_a_segment_truncated_while_it_reads_it() {
    let _machine = crate::common::machine::shared();
    use crate::common::agent::{poll, sigterm, spawn_agent, wait_exit};
    let tmp = tempfile::tempdir().unwrap();
    let (src, seg) = with_a_big_segment(tmp.path());
    let store = tmp.path().join("store");
    let url = format!("file://{}", store.display());
    let log = tmp.path().join("agent.log");
    let mut agent = spawn_agent(
        &src,
        &url,
        &[],
        &[
            "--metrics-addr",
            "off",
            "--concurrency",
            "1",
            "--rate-limit",
            "1000000",
            "--rescan-interval",
            "3600",
        ],
        &log,
    );
    wait_mapped(&mut agent, &seg);
    truncate(&seg, 1 << 20);
    poll(
        "the pass to fail naming the file",
        std::time::Duration::from_secs(120),
        || {
            let text = fs::read_to_string(&log).unwrap_or_default();
            (text.contains("truncated while it was read")
                && text.contains("pass failed for some partitions"))
            .then_some(())
        },
    );
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent died:\n{}",
        fs::read_to_string(&log).unwrap()
    );
    let keys = list_files(&store, "segvault/v1");
    assert!(keys
        .iter()
        .any(|k| k.contains("/topics/codec-gzip/") && k.contains("/chain/")));
    assert!(
        !keys.iter().any(|k| k.contains("/corrupt/")),
        "truncation reported as corruption"
    );
    sigterm(&agent);
    assert_eq!(
        wait_exit(&mut agent, std::time::Duration::from_secs(60)).code(),
        Some(0)
    );
}

/// A bare-metal restore whose read of the node's `replication-offset-checkpoint` fails (503
/// on every retry: HAProxy answers every GET of it so) fails naming the key, and restores
/// nothing: it never widens to every partition of the cluster.
#[test]
fn a_bare_metal_restore_that_cannot_read_the_nodes_checkpoint_restores_nothing() {
    let _machine = crate::common::machine::shared();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    copy_dir(&fixture(VERSION), &src, &[]).unwrap();
    let s3 = S3Server::start(&["archive"]).unwrap();
    let url = "s3://archive/kafka";
    let out = output_within(spawn_archive(&src, url, &s3.env()), 120);
    assert_eq!(out.status.code(), Some(0));
    let proxy = FaultProxy::always_503(&s3.endpoint, "/replication-offset-checkpoint").unwrap();
    let env = s3.env_via(&proxy.endpoint);
    let dst = tmp.path().join("dst");
    let child = segvault(&["restore", url, "--to", dst.to_str().unwrap()], &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = output_within(child, 300);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("replication-offset-checkpoint") && err.contains("nothing was restored"),
        "{err}"
    );
    assert!(
        proxy.count(503, "GET", "/replication-offset-checkpoint") >= 2,
        "{}",
        proxy.log()
    );
    let placed: Vec<String> = fs::read_dir(&dst)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !placed
            .iter()
            .any(|n| n.contains('-') && !n.starts_with('.')),
        "partitions placed: {placed:?}"
    );
}
