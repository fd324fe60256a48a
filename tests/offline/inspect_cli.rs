//! `segvault inspect` on real files: every corpus `.log` against SEGMENTS.tsv, the
//! fixtures' records, payload modes, internal-topic decoders and index cross-checks.

use crate::common::logdir::files_with;
use crate::common::paths::{corpus, fixture_versions};
use crate::common::run::{code, json_lines, of_type, output, segvault};
use std::path::PathBuf;

use base64::Engine;
use serde_json::Value;

fn inspect(args: &[&str], files: &[PathBuf]) -> (i32, Vec<Value>) {
    let out = output(
        segvault()
            .arg("inspect")
            .args(["--format", "json"])
            .args(args)
            .args(files),
    );
    (code(&out), json_lines(&out.stdout))
}

#[test]
fn every_corpus_log_agrees_with_segments_tsv() {
    let tsv = std::fs::read_to_string(corpus().join("SEGMENTS.tsv")).unwrap();
    let mut n = 0;
    for line in tsv.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let path = corpus().join(f[0]);
        let (code, lines) = inspect(&[], std::slice::from_ref(&path));
        assert_eq!(code, 0, "{}", f[0]);
        let batches = of_type(&lines, "batch");
        assert_eq!(batches.len(), f[6].parse::<usize>().unwrap(), "{}", f[0]);
        let records: i64 = batches.iter().map(|b| b["records"].as_i64().unwrap()).sum();
        assert_eq!(records, f[8].parse::<i64>().unwrap(), "{}", f[0]);
        let last = batches
            .iter()
            .map(|b| b["last_offset"].as_i64().unwrap())
            .max()
            .unwrap();
        assert_eq!(last, f[9].parse::<i64>().unwrap(), "{}", f[0]);
        assert_eq!(
            batches[0]["magic"].as_u64().unwrap().to_string(),
            f[2],
            "{}",
            f[0]
        );
        assert_eq!(
            batches[0]["base_offset"].as_i64().unwrap().to_string(),
            f[3]
        );
        // batch_len is the Length field: size − 12.
        assert_eq!(
            (batches[0]["size"].as_u64().unwrap() - 12).to_string(),
            f[4]
        );
        let txn = batches
            .iter()
            .filter(|b| b["transactional"] == true)
            .count();
        let ctrl = batches.iter().filter(|b| b["control"] == true).count();
        assert_eq!(
            (txn.to_string(), ctrl.to_string()),
            (f[10].to_string(), f[11].to_string())
        );
        let codecs: std::collections::BTreeSet<&str> = batches
            .iter()
            .map(|b| b["codec"].as_str().unwrap())
            .collect();
        let codecs: Vec<&str> = codecs.into_iter().collect();
        assert_eq!(codecs.join(","), f[7], "{}", f[0]);
        let summary = of_type(&lines, "summary");
        assert_eq!(summary.len(), 1);
        assert_eq!(
            summary[0]["crc_failures"].as_u64().unwrap().to_string(),
            f[13]
        );
        assert_eq!(
            summary[0]["partial_tail_bytes"]
                .as_u64()
                .unwrap()
                .to_string(),
            f[14]
        );
        assert_eq!(
            summary[0]["batches"].as_u64().unwrap() as usize,
            batches.len()
        );
        n += 1;
    }
    assert!(n >= 50, "{n}");
}

#[test]
fn json_schema_fields_present() {
    let dir = fixture_versions()[0].join("clean/txn-0");
    let log = files_with(&dir, ".log").pop().unwrap();
    let (code, lines) = inspect(&["--records"], std::slice::from_ref(&log));
    assert_eq!(code, 0);
    let batch_fields = [
        "file",
        "position",
        "size",
        "base_offset",
        "last_offset",
        "magic",
        "codec",
        "records",
        "crc",
        "crc_valid",
        "partition_leader_epoch",
        "producer_id",
        "producer_epoch",
        "base_sequence",
        "transactional",
        "control",
        "timestamp_type",
        "max_timestamp",
    ];
    let record_fields = [
        "file",
        "batch_position",
        "offset",
        "timestamp",
        "key_size",
        "value_size",
        "headers",
        "key",
        "value",
        "control",
        "decoded",
    ];
    let summary_fields = [
        "file",
        "batches",
        "records",
        "bytes",
        "crc_failures",
        "index_mismatches",
        "partial_tail_bytes",
        "problems",
    ];
    for (ty, fields) in [
        ("batch", &batch_fields[..]),
        ("record", &record_fields[..]),
        ("summary", &summary_fields[..]),
    ] {
        let ls = of_type(&lines, ty);
        assert!(!ls.is_empty(), "no {ty} lines");
        for l in ls {
            for f in fields {
                assert!(l.get(f).is_some(), "{ty} line without {f}: {l}");
            }
        }
    }
    // Control markers are decoded; their batches are transactional.
    let markers: Vec<_> = of_type(&lines, "record")
        .into_iter()
        .filter(|r| !r["control"].is_null())
        .collect();
    assert!(!markers.is_empty());
    assert!(markers
        .iter()
        .all(|m| m["control"]["type"] == "COMMIT" || m["control"]["type"] == "ABORT"));
    assert!(
        markers.iter().any(|m| m["control"]["type"] == "ABORT"),
        "the txn workload aborts"
    );
    // Index entries and the txn index.
    let idx = log.with_extension("txnindex");
    let (code, lines) = inspect(
        &[],
        &[
            idx,
            log.with_extension("index"),
            log.with_extension("timeindex"),
        ],
    );
    assert_eq!(code, 0, "{lines:#?}");
    let entries = of_type(&lines, "index_entry");
    let txn: Vec<_> = entries.iter().filter(|e| e["index"] == "txn").collect();
    assert!(!txn.is_empty());
    for e in &txn {
        for f in [
            "file",
            "entry",
            "producer_id",
            "first_offset",
            "last_offset",
            "last_stable_offset",
        ] {
            assert!(e.get(f).is_some(), "{e}");
        }
    }
    for e in entries.iter().filter(|e| e["index"] == "time") {
        assert!(e["timestamp"].is_i64() && e["offset"].is_i64(), "{e}");
    }
    assert_eq!(of_type(&lines, "summary").len(), 3);
}

/// --records on every fixture partition yields the records the broker served.
#[test]
fn records_match_expected_counts() {
    for v in fixture_versions() {
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(v.join("expected.json")).unwrap())
                .unwrap();
        for (topic, t) in expected["topics"].as_object().unwrap() {
            for (p, d) in t["digests"]["read_uncommitted"].as_object().unwrap() {
                let logs = files_with(&v.join(format!("clean/{topic}-{p}")), ".log");
                let (code, lines) = inspect(&["--records", "--payload", "none"], &logs);
                assert_eq!(code, 0);
                let data: Vec<_> = of_type(&lines, "record")
                    .into_iter()
                    .filter(|r| r["control"].is_null())
                    .collect();
                assert_eq!(
                    data.len() as u64,
                    d["records"].as_u64().unwrap(),
                    "{topic}-{p}"
                );
                assert_eq!(
                    data.first().unwrap()["offset"],
                    d["first_offset"],
                    "{topic}-{p}"
                );
                assert_eq!(
                    data.last().unwrap()["offset"],
                    d["last_offset"],
                    "{topic}-{p}"
                );
                // --payload none leaves keys and values out.
                assert!(data.iter().all(|r| r.get("value").is_none()));
            }
        }
    }
}

#[test]
fn payload_modes_render_the_same_bytes() {
    let log = files_with(&fixture_versions()[0].join("clean/codec-snappy-0"), ".log").remove(0);
    let get = |mode: &str| {
        let (code, lines) = inspect(
            &["--records", "--payload", mode],
            std::slice::from_ref(&log),
        );
        assert_eq!(code, 0);
        of_type(&lines, "record")
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    let (utf8, hex, b64) = (get("utf8"), get("hex"), get("base64"));
    assert!(!utf8.is_empty());
    for ((u, h), b) in utf8.iter().zip(&hex).zip(&b64) {
        let size = u["value_size"].as_i64().unwrap();
        if size < 0 {
            assert!(u["value"].is_null() && h["value"].is_null() && b["value"].is_null());
            continue;
        }
        let from_hex = hex::decode(h["value"].as_str().unwrap()).unwrap();
        let from_b64 = base64::engine::general_purpose::STANDARD
            .decode(b["value"].as_str().unwrap())
            .unwrap();
        assert_eq!(from_hex, from_b64);
        assert_eq!(from_hex.len() as i64, size);
        assert_eq!(
            String::from_utf8_lossy(&from_hex),
            u["value"].as_str().unwrap()
        );
    }
}

#[test]
fn internal_topics_are_decoded() {
    for v in fixture_versions() {
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(v.join("expected.json")).unwrap())
                .unwrap();
        // __consumer_offsets: group, topic, partition of every committed group offset.
        let logs = files_with(&v.join("clean/__consumer_offsets-0"), ".log");
        let (code, lines) = inspect(&["--records"], &logs);
        assert_eq!(code, 0);
        let decoded: Vec<&Value> = of_type(&lines, "record")
            .iter()
            .map(|r| &r["decoded"])
            .filter(|d| d["type"] == "offset_commit")
            .collect();
        for g in expected["groups"].as_array().unwrap() {
            assert!(
                decoded.iter().any(|d| d["group"] == g["group"]
                    && d["topic"] == g["topic"]
                    && d["partition"] == g["partition"]
                    && d["offset"] == g["offset"]),
                "{}: no offset commit for {g}",
                v.display()
            );
        }
        // __transaction_state: transactional ids and states.
        let logs = files_with(&v.join("clean/__transaction_state-0"), ".log");
        let (_, lines) = inspect(&["--records"], &logs);
        assert!(of_type(&lines, "record")
            .iter()
            .any(|r| r["decoded"]["type"] == "transaction"
                && r["decoded"]["state"] == "CompleteAbort"));
        // __cluster_metadata: TopicRecords name every fixture topic, in the log and in the
        // KRaft snapshot.
        let meta = v.join("clean/__cluster_metadata-0");
        for files in [files_with(&meta, ".log"), files_with(&meta, ".checkpoint")] {
            assert!(!files.is_empty());
            let (code, lines) = inspect(&["--records"], &files);
            assert_eq!(code, 0, "{files:?}");
            let names: Vec<&str> = of_type(&lines, "record")
                .iter()
                .filter(|r| r["decoded"]["type"] == "TopicRecord")
                .map(|r| r["decoded"]["name"].as_str().unwrap())
                .collect();
            for topic in expected["topics"].as_object().unwrap().keys() {
                assert!(
                    names.contains(&topic.as_str()),
                    "{files:?}: {topic} not in {names:?}"
                );
            }
        }
    }
}

#[test]
fn live_indexes_zero_tails_are_recognised() {
    for v in fixture_versions() {
        for dir in std::fs::read_dir(v.join("live"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
        {
            let mut files = files_with(&dir, ".index");
            files.extend(files_with(&dir, ".timeindex"));
            if files.is_empty() {
                continue;
            }
            let (code, lines) = inspect(&[], &files);
            assert_eq!(code, 0, "{}", dir.display());
            assert!(
                of_type(&lines, "problem")
                    .iter()
                    .all(|p| p["severity"] == "note"),
                "{lines:#?}"
            );
            // The active segment's indexes: tail entries reported, none read as entries.
            let logs = files_with(&dir, ".log");
            let active = logs.last().unwrap();
            let idx = active.with_extension("index");
            let s = of_type(&lines, "summary")
                .into_iter()
                .find(|s| s["file"] == idx.to_str().unwrap())
                .unwrap();
            let size = std::fs::metadata(&idx).unwrap().len();
            let (valid, tail) = (
                s["index_entries"].as_u64().unwrap(),
                s["index_tail_entries"].as_u64().unwrap(),
            );
            assert_eq!((valid + tail) * 8, size, "{s}");
            assert!(tail > 0, "{s}");
            let printed = of_type(&lines, "index_entry")
                .iter()
                .filter(|e| e["file"] == idx.to_str().unwrap())
                .count();
            assert_eq!(printed as u64, valid);
        }
    }
}

#[test]
fn dump_log_mismatches_are_notes() {
    let dir = corpus().join("dipendrasaini_kafka-learnning-series/tmp/kafka-logs-1/invoice-0");
    let (code, lines) = inspect(&[], &files_with(&dir, ".index"));
    assert_eq!(code, 0);
    let notes: Vec<_> = of_type(&lines, "problem")
        .into_iter()
        .filter(|p| p["kind"] == "index_dump_log_mismatch")
        .collect();
    assert_eq!(notes.len(), 13);
    assert!(notes.iter().all(
        |n| n["severity"] == "note" && n["message"].as_str().unwrap().contains("Index offset:")
    ));
    let sums: u64 = of_type(&lines, "summary")
        .iter()
        .map(|s| s["dump_log_index_mismatches"].as_u64().unwrap())
        .sum();
    assert_eq!(sums, 13);
    assert!(of_type(&lines, "summary")
        .iter()
        .all(|s| s["index_mismatches"] == 0));
}

#[test]
fn from_offset_and_max_bytes() {
    let log = corpus().join(
        "dipendrasaini_kafka-learnning-series/tmp/kafka-logs-1/invoice-0/00000000000000030626.log",
    );
    let (code, all) = inspect(&[], std::slice::from_ref(&log));
    assert_eq!(code, 0);
    let all = of_type(&all, "batch");
    let (code, from) = inspect(&["--from-offset", "50000"], std::slice::from_ref(&log));
    assert_eq!(code, 0);
    let from = of_type(&from, "batch");
    let want: Vec<_> = all
        .iter()
        .filter(|b| b["last_offset"].as_i64().unwrap() >= 50000)
        .collect();
    assert_eq!(from.len(), want.len());
    assert_eq!(from[0]["position"], want[0]["position"]);
    let (code, capped) = inspect(&["--max-bytes", "100000"], &[log]);
    assert_eq!(code, 0, "a --max-bytes cut is not a problem");
    let capped_batches = of_type(&capped, "batch");
    assert!(capped_batches.len() < all.len());
    assert!(capped_batches
        .iter()
        .all(|b| b["position"].as_u64().unwrap() + b["size"].as_u64().unwrap() <= 100000));
}

#[test]
fn other_files_and_text_format() {
    let v = fixture_versions()[0].join("clean");
    let files = vec![
        v.join("meta.properties"),
        v.join("replication-offset-checkpoint"),
        v.join("codec-none-0/partition.metadata"),
        v.join("codec-none-0/leader-epoch-checkpoint"),
        files_with(&v.join("codec-none-0"), ".snapshot").remove(0),
        v.join("__cluster_metadata-0/quorum-state"),
    ];
    let (code, lines) = inspect(&[], &files);
    assert_eq!(code, 0, "{lines:#?}");
    for ty in [
        "meta_properties",
        "checkpoint_entry",
        "partition_metadata",
        "leader_epoch",
        "quorum_state",
    ] {
        assert!(!of_type(&lines, ty).is_empty(), "{ty}");
    }
    assert_eq!(of_type(&lines, "summary").len(), files.len());
    let out = segvault()
        .args(["inspect", "--records"])
        .arg(files_with(&v.join("codec-gzip-0"), ".log").remove(0))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("baseOffset: 0")
            && text.contains("codec: gzip")
            && text.contains("| offset: 0"),
        "{text}"
    );
    assert!(text.lines().last().unwrap().starts_with("== "));
}

/// A file name that is not UTF-8 is reported, lossily, in valid JSON: never a panic.
#[test]
fn non_utf8_file_names_give_json_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"seg\xff.log");
    // A real segment under a name that is not UTF-8: every batch line names it.
    let seg = files_with(&fixture_versions()[0].join("clean/codec-none-0"), ".log")[0].clone();
    let copy = tmp.path().join(name);
    std::fs::copy(&seg, &copy).unwrap();
    let (code, lines) = inspect(&[], &[copy]);
    assert_eq!(code, 0);
    let batches = of_type(&lines, "batch");
    assert!(!batches.is_empty());
    assert!(batches
        .iter()
        .all(|b| b["file"].as_str().unwrap().ends_with("seg\u{fffd}.log")));
    assert_eq!(of_type(&lines, "summary").len(), 1);
    // A missing one: an error line and exit 2.
    let (code, lines) = inspect(
        &[],
        &[tmp
            .path()
            .join(std::ffi::OsStr::from_bytes(b"gone\xfe.log"))],
    );
    assert_eq!(code, 2);
    assert_eq!(of_type(&lines, "error").len(), 1);
}

/// Segments the broker renamed away (`.deleted`, awaiting `file.delete.delay.ms`) are still
/// logs: a forensic look at what retention or the cleaner removed reads them as such, with
/// their indexes, as closed segments.
#[test]
fn segments_renamed_to_deleted_are_inspected_as_logs() {
    let p = fixture_versions()[0].join("clean/compacted-0");
    let files = vec![
        p.join("00000000000000000150.log.deleted"),
        p.join("00000000000000000150.timeindex.deleted"),
        p.join("00000000000000000150.snapshot.deleted"),
    ];
    let (code, lines) = inspect(&["--records"], &files);
    assert_eq!(code, 0, "{lines:#?}");
    let batches = of_type(&lines, "batch");
    assert_eq!(
        (
            batches.first().and_then(|b| b["base_offset"].as_i64()),
            batches.last().and_then(|b| b["last_offset"].as_i64()),
            batches.len()
        ),
        (Some(150), Some(164), 4)
    );
    assert!(batches.iter().all(|b| b["crc_valid"] == true));
    assert!(!of_type(&lines, "record").is_empty());
    assert!(!of_type(&lines, "index_entry").is_empty(), "{lines:#?}");
    assert!(of_type(&lines, "problem").is_empty(), "{lines:#?}");
    assert_eq!(of_type(&lines, "summary").len(), files.len());
}

/// A closed segment holding ABORT markers, inspected alone: its ABORTs are matched against
/// the `.txnindex` beside it (before, `inspect X.log` reported every one missing, exit 1, on
/// the broker's own segment); without that file they are reported, exit 1.
#[test]
fn a_closed_segments_aborts_are_matched_against_its_txnindex() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("txn-0");
    segvault_harness::fixtures::copy_dir(
        &crate::common::paths::fixture("4.3.1").join("txn-0"),
        &dir,
        &[],
    )
    .unwrap();
    // A later segment: the one holding the ABORTs is closed.
    std::fs::write(dir.join("00000000000000000100.log"), b"").unwrap();
    let log = dir.join("00000000000000000005.log");
    let (code, lines) = inspect(&[], std::slice::from_ref(&log));
    assert_eq!(code, 0, "{lines:#?}");
    assert!(of_type(&lines, "problem").is_empty(), "{lines:#?}");
    let summary = &of_type(&lines, "summary")[0];
    assert!(summary["index_entries"].as_u64() >= Some(2), "{summary}");
    std::fs::remove_file(dir.join("00000000000000000005.txnindex")).unwrap();
    let (code, lines) = inspect(&[], std::slice::from_ref(&log));
    assert_eq!(code, 1, "{lines:#?}");
    let problems = of_type(&lines, "problem");
    assert!(!problems.is_empty());
    assert!(
        problems.iter().all(|p| p["kind"] == "txn_index_missing"),
        "{problems:#?}"
    );
}
