//! `segvault verify` on real log directories: the fixtures written by real Kafka 3.9.2 and
//! 4.3.1 brokers (clean and live copies) and every log dir of the shared corpus.

use crate::common::paths::{corpus, fixture_versions};
use crate::common::run::{code, failures, json_lines, of_type, output, segvault, stderr};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Runs verify with JSON output; returns (exit code, parsed lines, stderr).
fn verify(args: &[&str], dirs: &[&Path]) -> (i32, Vec<Value>, String) {
    let out = output(
        segvault()
            .arg("verify")
            .arg("--format")
            .arg("json")
            .args(args)
            .args(dirs),
    );
    (code(&out), json_lines(&out.stdout), stderr(&out))
}

#[test]
fn every_fixture_log_dir_verifies_clean() {
    for v in fixture_versions() {
        for copy in ["clean", "live"] {
            let dir = v.join(copy);
            let (code, lines, stderr) = verify(&[], &[&dir]);
            assert_eq!(
                code,
                0,
                "{}: {:#?} {stderr}",
                dir.display(),
                failures(&lines)
            );
            let total = of_type(&lines, "total");
            assert_eq!(total.len(), 1);
            assert_eq!(total[0]["ok"], true);
            assert!(total[0]["batches"].as_u64().unwrap() > 100);
            assert_eq!(total[0]["crc_failures"], 0);
            assert_eq!(total[0]["index_mismatches"], 0);
            // Every line has a type; every partition of the dir is listed.
            assert!(lines.iter().all(|l| l["type"].is_string()));
            let parts = of_type(&lines, "partition");
            assert!(parts.iter().any(|p| p["topic"] == "__consumer_offsets"));
            assert!(parts.iter().any(|p| p["topic"] == "__transaction_state"));
            if copy == "clean" {
                let meta = parts
                    .iter()
                    .find(|p| p["topic"] == "__cluster_metadata")
                    .unwrap();
                assert!(meta["kraft_snapshots"].as_u64().unwrap() >= 1, "{meta}");
            }
        }
    }
}

/// Records on disk agree with what the broker served (expected.json): records minus
/// control markers = records a read_uncommitted consumer got; first and last offsets
/// (the last data offset may be followed by a transaction marker).
#[test]
fn totals_agree_with_expected_json() {
    for v in fixture_versions() {
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(v.join("expected.json")).unwrap())
                .unwrap();
        for copy in ["clean", "live"] {
            let (code, lines, _) = verify(&[], &[&v.join(copy)]);
            assert_eq!(code, 0);
            let parts = of_type(&lines, "partition");
            let mut checked = 0;
            for (topic, t) in expected["topics"].as_object().unwrap() {
                for (p, d) in t["digests"]["read_uncommitted"].as_object().unwrap() {
                    let part = parts
                        .iter()
                        .find(|x| {
                            x["topic"] == *topic && x["partition"] == p.parse::<i64>().unwrap()
                        })
                        .unwrap_or_else(|| panic!("{copy}: no partition line for {topic}-{p}"));
                    let records = part["records"].as_u64().unwrap();
                    let control = part["control_records"].as_u64().unwrap();
                    assert_eq!(
                        records - control,
                        d["records"].as_u64().unwrap(),
                        "{copy} {topic}-{p}: {part}"
                    );
                    assert_eq!(
                        part["first_offset"], d["first_offset"],
                        "{copy} {topic}-{p}"
                    );
                    let last = part["last_offset"].as_i64().unwrap();
                    let want = d["last_offset"].as_i64().unwrap();
                    if topic == "txn" {
                        // The last data record is followed by its COMMIT/ABORT marker.
                        assert!(last > want && control > 0, "{copy} {topic}-{p}: {part}");
                    } else {
                        assert_eq!(last, want, "{copy} {topic}-{p}");
                        assert_eq!(control, 0, "{copy} {topic}-{p}");
                    }
                    assert_eq!(part["topic_id"], t["topic_id"], "{copy} {topic}-{p}");
                    checked += 1;
                }
            }
            assert!(checked >= 15, "{checked}");
        }
    }
}

#[test]
fn transient_files_are_reported_as_skipped() {
    for v in fixture_versions() {
        let (_, lines, _) = verify(&[], &[&v.join("clean")]);
        let skipped = of_type(&lines, "skipped");
        let deleted: Vec<_> = skipped
            .iter()
            .filter(|s| {
                let p = s["path"].as_str().unwrap();
                p.contains("compacted-0") && p.ends_with(".log.deleted")
            })
            .collect();
        assert!(!deleted.is_empty(), "{}: {skipped:#?}", v.display());
        assert!(deleted
            .iter()
            .all(|s| s["reason"].as_str().unwrap().contains(".deleted")));
        // They are not counted as segments: the compacted partition has only its live ones.
        let part = of_type(&lines, "partition")
            .into_iter()
            .find(|p| p["topic"] == "compacted")
            .unwrap()
            .clone();
        let live_logs = std::fs::read_dir(v.join("clean/compacted-0"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .count();
        assert_eq!(part["segments"].as_u64().unwrap(), live_logs as u64);
    }
}

/// The live copies have preallocated, zero-filled indexes: notes, not mismatches.
#[test]
fn live_copy_zero_index_tails_are_notes() {
    for v in fixture_versions() {
        let (code, lines, _) = verify(&[], &[&v.join("live")]);
        assert_eq!(code, 0);
        let tails: Vec<_> = of_type(&lines, "problem")
            .into_iter()
            .filter(|p| p["kind"] == "index_preallocated_tail")
            .collect();
        assert!(tails.len() >= 10, "{tails:#?}");
        assert!(tails.iter().all(|p| p["severity"] == "note"));
    }
}

/// Log dirs of the corpus: directories holding at least one partition directory.
fn corpus_log_dirs() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut is_log_dir = false;
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let holds_log = std::fs::read_dir(&p)
                .unwrap()
                .flatten()
                .any(|f| f.file_name().to_string_lossy().ends_with(".log"));
            if segvault_format::names::parse_partition_dir(&name).is_some() && holds_log {
                is_log_dir = true;
            } else {
                walk(&p, out);
            }
        }
        if is_log_dir {
            out.push(dir.to_path_buf());
        }
    }
    let mut v = Vec::new();
    walk(&corpus(), &mut v);
    v.sort();
    v
}

#[test]
fn every_corpus_log_dir_verifies_clean() {
    let dirs = corpus_log_dirs();
    assert!(dirs.len() >= 9, "{dirs:?}");
    let refs: Vec<&Path> = dirs.iter().map(|d| d.as_path()).collect();
    let (code, lines, stderr) = verify(&[], &refs);
    assert_eq!(code, 0, "{:#?} {stderr}", failures(&lines));
    assert_eq!(of_type(&lines, "log_dir").len(), dirs.len());
    // kafka-dump-log's index check fires on 13 valid multi-batch appends of invoice-0.
    let notes = of_type(&lines, "problem")
        .into_iter()
        .filter(|p| p["kind"] == "index_dump_log_mismatch")
        .filter(|p| p["file"].as_str().unwrap().contains("invoice-0"))
        .count();
    assert_eq!(notes, 13);
}

/// Per partition, shallow verify agrees with SEGMENTS.tsv summed over the partition's logs.
#[test]
fn corpus_totals_agree_with_segments_tsv() {
    let tsv = std::fs::read_to_string(corpus().join("SEGMENTS.tsv")).unwrap();
    // partition dir -> (batches, records, last offset)
    let mut want: BTreeMap<PathBuf, (u64, u64, i64)> = BTreeMap::new();
    for line in tsv.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let dir = corpus().join(f[0]).parent().unwrap().to_path_buf();
        let e = want.entry(dir).or_insert((0, 0, -1));
        e.0 += f[6].parse::<u64>().unwrap();
        e.1 += f[8].parse::<u64>().unwrap();
        e.2 = e.2.max(f[9].parse::<i64>().unwrap());
    }
    let dirs = corpus_log_dirs();
    let refs: Vec<&Path> = dirs.iter().map(|d| d.as_path()).collect();
    let (code, lines, _) = verify(&["--shallow"], &refs);
    assert_eq!(code, 0);
    let mut seen = 0;
    for p in of_type(&lines, "partition") {
        let path = PathBuf::from(p["path"].as_str().unwrap());
        let Some(&(b, r, last)) = want.get(&path) else {
            continue;
        };
        assert_eq!(p["batches"].as_u64().unwrap(), b, "{}", path.display());
        assert_eq!(p["records"].as_u64().unwrap(), r, "{}", path.display());
        assert_eq!(
            p["last_offset"].as_i64().unwrap(),
            last,
            "{}",
            path.display()
        );
        seen += 1;
    }
    assert_eq!(seen, want.len(), "every partition of SEGMENTS.tsv verified");
}

#[test]
fn text_output_and_exit_codes_for_bad_arguments() {
    let v = &fixture_versions()[0];
    let out = segvault()
        .args(["verify"])
        .arg(v.join("clean"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("codec-zstd-0") && text.contains("total:"),
        "{text}"
    );
    // No progress bar when stderr is not a terminal.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Missing dir and a file given as a log dir: exit 2, named on stderr.
    for bad in [v.join("no-such-dir"), v.join("expected.json")] {
        let out = segvault().arg("verify").arg(&bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", bad.display());
        assert!(String::from_utf8_lossy(&out.stderr).contains(&*bad.to_string_lossy()));
    }
    // Usage error.
    let out = segvault().arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A live broker renames files between `verify`'s listing and its reading of them (retention
/// and the log cleaner rename segments to `.deleted`): a listed file that is gone is a note
/// naming it ("vanished", not verified), never corruption; everything else is verified.
#[test]
fn files_gone_after_the_listing_are_notes_not_corruption() {
    use segvault_core::logdir::{self, verify::VerifyOptions};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    segvault_harness::fixtures::copy_dir(&fixture_versions()[0].join("clean"), &dir, &[]).unwrap();
    let listing = logdir::scan(&dir).unwrap();
    let p = dir.join("codec-none-0");
    let gone = [
        p.join("00000000000000000000.log"),
        p.join("00000000000000000020.timeindex"),
    ];
    for f in &gone {
        std::fs::rename(
            f,
            f.with_extension(format!(
                "{}.deleted",
                f.extension().unwrap().to_str().unwrap()
            )),
        )
        .unwrap();
    }
    let r = logdir::verify::verify_listing(&listing, VerifyOptions::default(), &|_| {});
    let problems: Vec<_> = r.partitions.iter().flat_map(|p| &p.problems).collect();
    let vanished: Vec<_> = problems.iter().filter(|p| p.kind == "vanished").collect();
    assert_eq!(
        vanished.iter().map(|p| p.file.clone()).collect::<Vec<_>>(),
        gone,
        "{problems:#?}"
    );
    assert!(vanished.iter().all(|p| p.message.contains("not verified")));
    assert_eq!(r.totals.corrupt, 0, "{problems:#?}");
    assert!(r.totals.segments > 40, "{:?}", r.totals);
}
