//! Conformance with Apache Kafka's own `kafka-dump-log` (`DumpLogSegments`).
//!
//! For every `.log` and KRaft `.checkpoint` in the shared corpus and in `fixtures/` (both
//! versions, `clean` and `live`), runs kafka-dump-log at batch level and with
//! `--deep-iteration`, and `segvault inspect --format json` (with and without `--records`),
//! and requires the two to agree on every batch (position, base/last offset, shallow record
//! count, magic, codec, CRC validity), on every record offset, and on trailing bytes. For every
//! `.index` and `.timeindex` it runs kafka-dump-log plainly and with `--verify-index-only`
//! and requires the set of index entries kafka-dump-log complains about to equal the set of
//! entries segvault reports a problem for (severity `note` or `corrupt`). Corpus files are
//! also checked against the counts in `SEGMENTS.tsv`.
//!
//! The corpus is dumped with Kafka 3.9.2, each fixture tree with its own broker's version.
//! kafka-dump-log takes many files per call, so each group of files costs four JVM starts
//! (shallow, deep, index plain, index verify-only), run in parallel with segvault.
//!
//! Every disagreement is collected and reported together, with file and offset.
//!
//! Over 800 lines on purpose: the tests of one concern and the helpers that build their state
//! are kept in one file, read together.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::logdir::walk;
use crate::common::paths::{corpus, fixture_root};
use segvault_harness::KafkaDist;
use serde_json::Value;

/// kafka-dump-log moved from Scala (`kafka.tools`) to Java (`org.apache.kafka.tools`) in 4.0.
fn dump_log_class(version: &str) -> &'static str {
    if version.starts_with("3.") {
        "kafka.tools.DumpLogSegments"
    } else {
        "org.apache.kafka.tools.DumpLogSegments"
    }
}

/// Files of one tree dumped with one Kafka version.
#[derive(Debug, Default, Clone)]
struct Group {
    name: String,
    version: String,
    /// `.log` and `.checkpoint` (KRaft snapshots, `bootstrap.checkpoint`).
    logs: Vec<PathBuf>,
    /// `.index` and `.timeindex` whose `.log` (and, for a time index, `.index`) exist:
    /// kafka-dump-log needs them and aborts the whole run otherwise.
    indexes: Vec<PathBuf>,
}

fn group(name: &str, version: &str, root: &Path) -> Group {
    let files = walk(root).into_iter().filter(|p| p.is_file());
    let mut g = Group {
        name: name.into(),
        version: version.into(),
        ..Group::default()
    };
    for f in files {
        let f = std::path::absolute(&f).unwrap_or(f);
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        let sibling = |e: &str| f.with_extension(e).is_file();
        match ext {
            "log" | "checkpoint" => g.logs.push(f),
            "index" if sibling("log") => g.indexes.push(f),
            "timeindex" if sibling("log") && sibling("index") => g.indexes.push(f),
            _ => {}
        }
    }
    g
}

// ---------------------------------------------------------------------------------------
// kafka-dump-log output

#[derive(Debug, Clone, Default)]
struct DumpBatch {
    position: u64,
    /// v2 only (legacy lines print the last offset only).
    base_offset: Option<i64>,
    last_offset: i64,
    /// v2 `count`; legacy entries count 1.
    count: i64,
    magic: u8,
    codec: String,
    valid: bool,
    /// Record offsets (deep iteration only).
    records: Vec<i64>,
}

#[derive(Debug, Clone, Default)]
struct DumpLog {
    batches: Vec<DumpBatch>,
    trailing: u64,
}

#[derive(Debug, Clone, Default)]
struct DumpIndex {
    /// `.index`: (offset, position); `.timeindex`: (timestamp, offset).
    entries: Vec<(i64, i64)>,
    empty: bool,
    /// `.index`: index offsets whose first batch has another last offset.
    /// `.timeindex`: offsets of entries with any complaint.
    flagged: BTreeSet<i64>,
    /// Raw complaint lines, for messages.
    complaints: Vec<String>,
}

#[derive(Debug, Default)]
struct Dump {
    logs: HashMap<PathBuf, DumpLog>,
    indexes: HashMap<PathBuf, DumpIndex>,
}

/// `key: value` pairs of a kafka-dump-log line (`CreateTime: 5` included).
fn fields(line: &str) -> HashMap<String, String> {
    let toks: Vec<&str> = line.split_whitespace().collect();
    let mut m = HashMap::new();
    for w in toks.windows(2) {
        if let Some(k) = w[0].strip_suffix(':') {
            m.entry(k.to_string())
                .or_insert_with(|| w[1].trim_end_matches(',').to_string());
        }
    }
    m
}

fn num<T: std::str::FromStr>(m: &HashMap<String, String>, k: &str, line: &str) -> T {
    m.get(k)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("kafka-dump-log line without numeric {k:?}: {line}"))
}

fn run_dump_log(dist: &KafkaDist, args: &[&str], files: &[PathBuf]) -> Output {
    let list = files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = dist.java(dump_log_class(&dist.version), 512);
    cmd.args(args).arg("--files").arg(list);
    cmd.output().expect("running kafka-dump-log (java)")
}

/// Parses stdout (and stderr, for index complaints) of one kafka-dump-log run.
// Over 120 lines on purpose: one match over the line kinds of kafka-dump-log's output.
fn parse_dump(out: &str, err: &str, dump: &mut Dump) -> Vec<Vec<i64>> {
    let mut current: Option<PathBuf> = None;
    for line in out.lines() {
        if let Some(p) = line.strip_prefix("Dumping ") {
            let p = PathBuf::from(p.trim());
            let is_log = matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("log" | "checkpoint")
            );
            // A file dumped again (a rerun) starts over.
            if is_log {
                dump.logs.insert(p.clone(), DumpLog::default());
            } else {
                dump.indexes.insert(p.clone(), DumpIndex::default());
            }
            current = Some(p);
            continue;
        }
        let Some(file) = current.clone() else {
            continue;
        };
        let ext = file
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_string();
        match ext.as_str() {
            "log" | "checkpoint" => {
                let log = dump.logs.get_mut(&file).unwrap();
                if line.starts_with("baseOffset: ")
                    || (line.starts_with("offset: ") && line.contains(" isvalid: "))
                {
                    let f = fields(line);
                    let v2 = line.starts_with("baseOffset: ");
                    let last: i64 = num(&f, if v2 { "lastOffset" } else { "offset" }, line);
                    log.batches.push(DumpBatch {
                        position: num(&f, "position", line),
                        base_offset: v2.then(|| num(&f, "baseOffset", line)),
                        last_offset: last,
                        count: if v2 { num(&f, "count", line) } else { 1 },
                        magic: num(&f, "magic", line),
                        codec: f.get("compresscodec").cloned().unwrap_or_default(),
                        valid: f.get("isvalid").map(String::as_str) == Some("true"),
                        records: Vec::new(),
                    });
                } else if let Some(rest) = line.strip_prefix("| offset: ") {
                    let off: i64 = rest
                        .split_whitespace()
                        .next()
                        .and_then(|t| t.parse().ok())
                        .unwrap_or_else(|| panic!("record line: {line}"));
                    log.batches
                        .last_mut()
                        .unwrap_or_else(|| {
                            panic!("record before any batch in {}: {line}", file.display())
                        })
                        .records
                        .push(off);
                } else if let Some(rest) = line.strip_prefix("Found ") {
                    if let Some(n) = rest.split_whitespace().next().and_then(|t| t.parse().ok()) {
                        if rest.contains(" invalid bytes at the end of ") {
                            log.trailing = n;
                        }
                    }
                }
            }
            "index" | "timeindex" => {
                let idx = dump.indexes.get_mut(&file).unwrap();
                if line.ends_with(" is empty.") {
                    idx.empty = true;
                } else if ext == "index" && line.starts_with("offset: ") {
                    let f = fields(line);
                    idx.entries
                        .push((num(&f, "offset", line), num(&f, "position", line)));
                } else if ext == "timeindex" && line.starts_with("timestamp: ") {
                    let f = fields(line);
                    idx.entries
                        .push((num(&f, "timestamp", line), num(&f, "offset", line)));
                }
            }
            _ => {}
        }
    }

    // stderr: per-file complaint sections, and one section ("not found") without a file name,
    // which is returned for the caller to attribute.
    enum Section {
        None,
        IndexMismatch(PathBuf),
        TimeMismatch(PathBuf),
        NotFound,
    }
    let mut section = Section::None;
    let mut unattributed = Vec::new();
    for line in err.lines() {
        if let Some(p) = line.strip_prefix("Mismatches in :") {
            section = Section::IndexMismatch(PathBuf::from(p.trim()));
        } else if let Some(p) = line
            .strip_prefix("Found timestamp mismatch in :")
            .or_else(|| line.strip_prefix("Found out of order timestamp in :"))
        {
            section = Section::TimeMismatch(PathBuf::from(p.trim()));
        } else if line.starts_with("The following indexed offsets are not found in the log.") {
            // One such section per time index, but without its name.
            unattributed.push(Vec::new());
            section = Section::NotFound;
        } else if line.starts_with("Non-consecutive offsets in ") {
            section = Section::None;
        } else {
            let t = line.trim();
            match &section {
                Section::IndexMismatch(p) if t.starts_with("Index offset: ") => {
                    let f = fields(t);
                    let idx = dump.indexes.entry(p.clone()).or_default();
                    idx.flagged.insert(num(&f, "offset", t));
                    idx.complaints.push(t.to_string());
                }
                Section::TimeMismatch(p) if t.starts_with("Index timestamp: ") => {
                    let f = fields(t);
                    let ts: i64 = num(&f, "timestamp", t);
                    let idx = dump.indexes.entry(p.clone()).or_default();
                    // Attributed to entries by timestamp, which the plain run printed.
                    idx.complaints.push(format!("timestamp {ts}: {t}"));
                }
                Section::NotFound if t.starts_with("Indexed offset: ") => {
                    let f = fields(t);
                    if let Some(g) = unattributed.last_mut() {
                        g.push(num(&f, "offset", t));
                    }
                }
                _ => {}
            }
        }
    }
    unattributed
}

/// Turns timestamp complaints into entry offsets (needs the plain run's entries).
fn attribute_time_complaints(dump: &mut Dump) {
    for (p, idx) in dump.indexes.iter_mut() {
        if p.extension().and_then(|e| e.to_str()) != Some("timeindex") {
            continue;
        }
        for c in &idx.complaints {
            if let Some(ts) = c
                .strip_prefix("timestamp ")
                .and_then(|r| r.split(':').next())
                .and_then(|t| t.parse::<i64>().ok())
            {
                for &(t, off) in &idx.entries {
                    if t == ts {
                        idx.flagged.insert(off);
                    }
                }
            }
        }
    }
}

fn is_timeindex(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()) == Some("timeindex")
}

/// Runs kafka-dump-log over `files` in one JVM and parses its output into `dump`. If the JVM
/// fails (kafka-dump-log throws on some inputs and then skips every later file), the list is
/// halved until the files it fails on are isolated; those go to `failed`.
fn dump_files(
    dist: &KafkaDist,
    args: &[&str],
    files: &[PathBuf],
    dump: &mut Dump,
    failed: &mut Vec<(PathBuf, String)>,
) {
    if files.is_empty() {
        return;
    }
    let o = run_dump_log(dist, args, files);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    if !o.status.success() {
        if files.len() == 1 {
            let why = err
                .lines()
                .find(|l| l.contains("Exception") || l.contains("Error"))
                .unwrap_or("")
                .to_string();
            failed.push((files[0].clone(), why));
            return;
        }
        let (a, b) = files.split_at(files.len() / 2);
        dump_files(dist, args, a, dump, failed);
        dump_files(dist, args, b, dump, failed);
        return;
    }
    let not_found = parse_dump(&out, &err, dump);
    if not_found.is_empty() || args.contains(&"--verify-index-only") {
        // (--verify-index-only prints no entries to attribute by; only its .index verdicts
        // are compared.)
        return;
    }
    // "not found" sections carry no file name. A section's offsets are entries of its time
    // index (printed by the plain run): a set of identical sections whose candidates are
    // exactly as many as the sections is attributed; anything else is dumped again one
    // file at a time.
    let times: Vec<PathBuf> = files.iter().filter(|p| is_timeindex(p)).cloned().collect();
    let mut by_sig: BTreeMap<Vec<i64>, usize> = BTreeMap::new();
    for g in not_found {
        *by_sig.entry(g).or_default() += 1;
    }
    let mut assigned: HashMap<PathBuf, Vec<i64>> = HashMap::new();
    let mut rerun: BTreeSet<PathBuf> = BTreeSet::new();
    for (sig, n) in by_sig {
        let cands: Vec<&PathBuf> = times
            .iter()
            .filter(|t| {
                let e = dump.indexes.get(*t).map(|i| &i.entries);
                e.is_some_and(|e| sig.iter().all(|o| e.iter().any(|x| x.1 == *o)))
            })
            .collect();
        if cands.len() == n {
            for c in cands {
                if assigned.insert(c.clone(), sig.clone()).is_some() {
                    rerun.insert(c.clone());
                }
            }
        } else {
            rerun.extend(cands.into_iter().cloned());
        }
    }
    for (t, offs) in assigned {
        if rerun.contains(&t) {
            continue;
        }
        let idx = dump.indexes.entry(t).or_default();
        for off in offs {
            idx.flagged.insert(off);
            idx.complaints
                .push(format!("Indexed offset: {off} not found"));
        }
    }
    for t in rerun {
        let o = run_dump_log(dist, args, std::slice::from_ref(&t));
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        let groups = parse_dump(&out, &err, dump);
        let idx = dump.indexes.entry(t).or_default();
        for off in groups.into_iter().flatten() {
            idx.flagged.insert(off);
            idx.complaints
                .push(format!("Indexed offset: {off} not found"));
        }
    }
}

/// Dumps one group: kafka-dump-log over the logs (shallow and `--deep-iteration`) and over
/// the indexes (plain and `--verify-index-only`), two JVMs at a time. Returns the merged dump,
/// the files kafka-dump-log failed on, and harness-level disagreements.
fn dump_group(g: &Group) -> (Dump, Vec<(PathBuf, String)>, Vec<String>) {
    let dist = KafkaDist::get(&g.version).expect("Kafka distribution");
    let mut problems = Vec::new();
    let (mut shallow, mut deep, mut plain, mut verify) = (
        Dump::default(),
        Dump::default(),
        Dump::default(),
        Dump::default(),
    );
    let (mut f1, mut f2, mut f3, mut f4) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            dump_files(&dist, &[], &g.logs, &mut shallow, &mut f1);
            dump_files(&dist, &["--deep-iteration"], &g.logs, &mut deep, &mut f2);
        });
        dump_files(&dist, &[], &g.indexes, &mut plain, &mut f3);
        dump_files(
            &dist,
            &["--verify-index-only"],
            &g.indexes,
            &mut verify,
            &mut f4,
        );
    });
    attribute_time_complaints(&mut plain);
    let failed_logs: BTreeSet<PathBuf> = f1.iter().chain(&f2).map(|(p, _)| p.clone()).collect();

    // The deep run's batch lines must be the shallow run's; keep the deep one (it has records).
    for f in &g.logs {
        if failed_logs.contains(f) {
            continue;
        }
        let (Some(a), Some(b)) = (shallow.logs.get(f), deep.logs.get(f)) else {
            problems.push(format!(
                "[{}] kafka-dump-log did not dump {}",
                g.name,
                f.display()
            ));
            continue;
        };
        let pa: Vec<_> = a
            .batches
            .iter()
            .map(|b| (b.position, b.last_offset, b.valid))
            .collect();
        let pb: Vec<_> = b
            .batches
            .iter()
            .map(|b| (b.position, b.last_offset, b.valid))
            .collect();
        if pa != pb || a.trailing != b.trailing {
            problems.push(format!(
                "[{}] kafka-dump-log shallow and deep batch lines differ for {}",
                g.name,
                f.display()
            ));
        }
    }
    // --verify-index-only must complain about the same index entries as the plain run.
    for f in g.indexes.iter().filter(|p| !is_timeindex(p)) {
        let a = plain
            .indexes
            .get(f)
            .map(|i| i.flagged.clone())
            .unwrap_or_default();
        let b = verify
            .indexes
            .get(f)
            .map(|i| i.flagged.clone())
            .unwrap_or_default();
        if a != b {
            problems.push(format!(
                "[{}] kafka-dump-log plain and --verify-index-only disagree on {}: {a:?} vs {b:?}",
                g.name,
                f.display()
            ));
        }
    }
    let mut failed: Vec<(PathBuf, String)> = f2.into_iter().chain(f3).collect();
    failed.sort();
    failed.dedup_by(|a, b| a.0 == b.0);
    (
        Dump {
            logs: deep.logs,
            indexes: plain.indexes,
        },
        failed,
        problems,
    )
}

// ---------------------------------------------------------------------------------------
// segvault inspect output

#[derive(Debug, Default)]
struct Inspected {
    batches: Vec<Value>,
    records: Vec<Value>,
    index_entries: Vec<Value>,
    problems: Vec<Value>,
    summary: Option<Value>,
}

/// The binary under test; `SEGVAULT_BIN` overrides it (e.g. a release build).
fn segvault() -> Command {
    match std::env::var_os("SEGVAULT_BIN") {
        Some(b) => Command::new(b),
        None => crate::common::run::segvault(),
    }
}

fn canon(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Runs `segvault inspect --format json [extra] FILES` and buckets its lines by file.
fn inspect(
    files: &[PathBuf],
    extra: &[&str],
    problems: &mut Vec<String>,
) -> HashMap<PathBuf, Inspected> {
    let mut out = HashMap::new();
    if files.is_empty() {
        return out;
    }
    let o = segvault()
        .args(["inspect", "--format", "json"])
        .args(extra)
        .args(files)
        .output()
        .expect("running segvault inspect");
    let code = o.status.code();
    if !matches!(code, Some(0) | Some(1)) {
        problems.push(format!(
            "segvault inspect {extra:?} exited {:?}: {}",
            code,
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    let mut any_integrity_problem = false;
    for line in String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!(
                    "segvault inspect printed a line that is not JSON ({e}): {line}"
                ));
                continue;
            }
        };
        let Some(file) = v["file"].as_str() else {
            problems.push(format!("segvault inspect line without \"file\": {line}"));
            continue;
        };
        let e: &mut Inspected = out.entry(canon(Path::new(file))).or_default();
        match v["type"].as_str() {
            Some("batch") => {
                any_integrity_problem |= v["crc_valid"] == Value::Bool(false);
                e.batches.push(v)
            }
            Some("record") => e.records.push(v),
            Some("index_entry") => e.index_entries.push(v),
            Some("problem") => {
                any_integrity_problem |=
                    matches!(v["severity"].as_str(), Some("corrupt" | "partial"));
                e.problems.push(v)
            }
            Some("summary") => e.summary = Some(v),
            _ => problems.push(format!("segvault inspect line of unknown type: {line}")),
        }
    }
    if any_integrity_problem && code == Some(0) {
        problems.push(format!("segvault inspect {extra:?} exited 0 although it reported corrupt/partial data or a CRC failure"));
    }
    if !any_integrity_problem && code == Some(1) {
        problems.push(format!("segvault inspect {extra:?} exited 1 but reported no corrupt/partial problem and no CRC failure"));
    }
    out
}

fn i64_of(v: &Value, k: &str) -> Option<i64> {
    v[k].as_i64()
}

// ---------------------------------------------------------------------------------------
// comparison

// Over 120 lines on purpose: one field-by-field comparison of a kafka-dump-log batch line
// with segvault's, every field side by side.
fn compare_log(
    file: &Path,
    d: &DumpLog,
    shallow: Option<&Inspected>,
    deep: Option<&Inspected>,
    errs: &mut Vec<String>,
) {
    let f = file.display();
    let Some(s) = shallow else {
        errs.push(format!("{f}: segvault inspect printed nothing for it"));
        return;
    };
    if s.batches.len() != d.batches.len() {
        errs.push(format!(
            "{f}: {} batches by kafka-dump-log, {} by segvault",
            d.batches.len(),
            s.batches.len()
        ));
    }
    for (k, (db, sb)) in d.batches.iter().zip(&s.batches).enumerate() {
        let mut diff = Vec::new();
        let pos = sb["position"].as_u64();
        if pos != Some(db.position) {
            diff.push(format!("position {} vs {:?}", db.position, pos));
        }
        if let Some(base) = db.base_offset {
            if i64_of(sb, "base_offset") != Some(base) {
                diff.push(format!("base_offset {base} vs {}", sb["base_offset"]));
            }
        }
        if i64_of(sb, "last_offset") != Some(db.last_offset) {
            diff.push(format!(
                "last_offset {} vs {}",
                db.last_offset, sb["last_offset"]
            ));
        }
        if i64_of(sb, "records") != Some(db.count) {
            diff.push(format!("records {} vs {}", db.count, sb["records"]));
        }
        if sb["magic"].as_u64() != Some(u64::from(db.magic)) {
            diff.push(format!("magic {} vs {}", db.magic, sb["magic"]));
        }
        if let Some(c) = sb["codec"].as_str() {
            if !c.eq_ignore_ascii_case(&db.codec) {
                diff.push(format!("codec {} vs {c}", db.codec));
            }
        } else {
            diff.push(format!("codec {} vs {}", db.codec, sb["codec"]));
        }
        if sb["crc_valid"].as_bool() != Some(db.valid) {
            diff.push(format!("crc valid {} vs {}", db.valid, sb["crc_valid"]));
        }
        if !diff.is_empty() {
            errs.push(format!(
                "{f}: batch #{k} at position {} (last offset {}): kafka-dump-log vs segvault: {}",
                db.position,
                db.last_offset,
                diff.join(", ")
            ));
        }
    }
    // Trailing bytes: kafka-dump-log's "Found N invalid bytes at the end".
    if d.trailing > 0 {
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        let start = size - d.trailing;
        let tail = s
            .summary
            .as_ref()
            .and_then(|v| v["partial_tail_bytes"].as_u64())
            .unwrap_or(0);
        let flagged = s.problems.iter().any(|p| {
            p["position"].as_u64() == Some(start)
                && matches!(p["severity"].as_str(), Some("partial" | "corrupt"))
        });
        if tail != d.trailing && !flagged {
            errs.push(format!("{f}: kafka-dump-log found {} invalid bytes at the end (from position {start}); segvault reports partial_tail_bytes {tail} and no partial/corrupt problem there", d.trailing));
        }
    }
    if let Some(sum) = &s.summary {
        let n = d.batches.len() as u64;
        if sum["batches"].as_u64() != Some(n) {
            errs.push(format!(
                "{f}: summary batches {} vs kafka-dump-log {n}",
                sum["batches"]
            ));
        }
        let bad = d.batches.iter().filter(|b| !b.valid).count() as u64;
        if sum["crc_failures"].as_u64() != Some(bad) {
            errs.push(format!(
                "{f}: summary crc_failures {} vs kafka-dump-log {bad}",
                sum["crc_failures"]
            ));
        }
    } else {
        errs.push(format!("{f}: no summary line from segvault inspect"));
    }

    // Records: the offsets under each batch.
    let Some(deep) = deep else {
        errs.push(format!(
            "{f}: segvault inspect --records printed nothing for it"
        ));
        return;
    };
    let mut by_batch: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for r in &deep.records {
        by_batch
            .entry(r["batch_position"].as_u64().unwrap_or(u64::MAX))
            .or_default()
            .push(i64_of(r, "offset").unwrap_or(i64::MIN));
    }
    let dump_total: usize = d.batches.iter().map(|b| b.records.len()).sum();
    if dump_total != deep.records.len() {
        errs.push(format!("{f}: {dump_total} records by kafka-dump-log --deep-iteration, {} by segvault --records", deep.records.len()));
    }
    let mut shown = 0;
    for b in &d.batches {
        let ours = by_batch.get(&b.position).cloned().unwrap_or_default();
        if ours != b.records && shown < 5 {
            shown += 1;
            let first_diff = b
                .records
                .iter()
                .zip(&ours)
                .position(|(a, b)| a != b)
                .unwrap_or(b.records.len().min(ours.len()));
            errs.push(format!(
                "{f}: batch at position {} (last offset {}): kafka-dump-log has {} records, segvault {}; first difference at #{first_diff}: {:?} vs {:?}",
                b.position,
                b.last_offset,
                b.records.len(),
                ours.len(),
                b.records.get(first_diff),
                ours.get(first_diff)
            ));
        }
    }
}

/// Problems about an index file as a whole (length, preallocated or garbage tail), which
/// kafka-dump-log does not report per entry.
const STRUCTURAL_KINDS: &[&str] = &[
    "index_length",
    "index_tail_garbage",
    "index_preallocated_tail",
    "zero_tail",
    "no_log",
];

fn compare_index(file: &Path, d: &DumpIndex, s: Option<&Inspected>, errs: &mut Vec<String>) {
    let f = file.display();
    let Some(s) = s else {
        errs.push(format!("{f}: segvault inspect printed nothing for it"));
        return;
    };
    let ours: BTreeSet<i64> = s
        .problems
        .iter()
        .filter(|p| matches!(p["severity"].as_str(), Some("note" | "corrupt")))
        .filter(|p| !STRUCTURAL_KINDS.contains(&p["kind"].as_str().unwrap_or("")))
        .filter_map(|p| i64_of(p, "offset"))
        .collect();
    if ours != d.flagged {
        let only_dump: Vec<_> = d.flagged.difference(&ours).collect();
        let only_ours: Vec<_> = ours.difference(&d.flagged).collect();
        errs.push(format!(
            "{f}: index entries flagged only by kafka-dump-log {only_dump:?} ({}), only by segvault {only_ours:?} ({})",
            d.complaints.iter().take(5).cloned().collect::<Vec<_>>().join("; "),
            s.problems.iter().filter(|p| p["offset"].as_i64().is_some_and(|o| only_ours.contains(&&o))).take(3).map(|p| p.to_string()).collect::<Vec<_>>().join("; ")
        ));
    }
    // The entries kafka-dump-log prints (up to the first zero entry) must be segvault's first
    // entries, when segvault names their fields as kafka-dump-log does.
    let is_time = file.extension().and_then(|e| e.to_str()) == Some("timeindex");
    let (ka, kb) = if is_time {
        ("timestamp", "offset")
    } else {
        ("offset", "position")
    };
    let ours: Vec<(Option<i64>, Option<i64>)> = s
        .index_entries
        .iter()
        .map(|e| (i64_of(e, ka), i64_of(e, kb)))
        .collect();
    if ours.iter().all(|(a, b)| a.is_some() && b.is_some()) {
        if ours.len() < d.entries.len() {
            errs.push(format!(
                "{f}: kafka-dump-log printed {} entries, segvault {}",
                d.entries.len(),
                ours.len()
            ));
        }
        if let Some(i) = d
            .entries
            .iter()
            .zip(&ours)
            .position(|(a, b)| (Some(a.0), Some(a.1)) != *b)
        {
            errs.push(format!(
                "{f}: entry #{i}: kafka-dump-log {ka} {} {kb} {}, segvault {:?}",
                d.entries[i].0, d.entries[i].1, ours[i]
            ));
        }
    }
}

/// kafka-dump-log opens an index read-only, so a preallocated (active-segment) index counts
/// every slot of its file as an entry; it stops at the first slot after the first whose offset
/// is the base offset, but judges slot 0 even when it is all zeros. An empty preallocated index
/// therefore yields one phantom complaint at the base offset. segvault reports such a file
/// as having no entries (a zero tail). Returns a note when the complaint was dropped.
fn drop_zero_slot_artefact(
    file: &Path,
    d: &mut DumpIndex,
    s: Option<&Inspected>,
) -> Option<String> {
    let base: i64 = file.file_stem()?.to_str()?.parse().ok()?;
    let width = if is_timeindex(file) { 12 } else { 8 };
    let bytes = std::fs::read(file).ok()?;
    let slot0_zero = bytes.len() >= width && bytes[..width].iter().all(|&b| b == 0);
    let ours = s.map_or(0, |i| i.index_entries.len());
    if !(slot0_zero && ours == 0) {
        return None;
    }
    // The phantom entry is printed (and judged) even when its check happens to pass.
    d.entries.clear();
    if d.flagged.remove(&base) {
        return Some(format!(
            "{}: kafka-dump-log judges the all-zero slot 0 of a preallocated index as an entry (offset {base}); segvault reads no entries",
            file.display()
        ));
    }
    None
}

/// SEGMENTS.tsv (counts taken when the corpus was built) against kafka-dump-log.
fn compare_segments_tsv(dump: &Dump, errs: &mut Vec<String>) {
    let root = corpus();
    let tsv = std::fs::read_to_string(root.join("SEGMENTS.tsv")).expect("SEGMENTS.tsv");
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim_end_matches('*') == name)
            .unwrap_or_else(|| panic!("SEGMENTS.tsv has no column {name}"))
    };
    let (cf, cb, cr, cl, cc, ct) = (
        col("file"),
        col("batches"),
        col("records"),
        col("last_off"),
        col("crc_bad"),
        col("trailing"),
    );
    let mut n = 0;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let c: Vec<&str> = line.split('\t').collect();
        let path = canon(&root.join(c[cf]));
        let Some(d) = dump
            .logs
            .iter()
            .find(|(p, _)| canon(p) == path)
            .map(|(_, d)| d)
        else {
            errs.push(format!(
                "SEGMENTS.tsv lists {} but kafka-dump-log did not dump it",
                c[cf]
            ));
            continue;
        };
        n += 1;
        let got = (
            d.batches.len().to_string(),
            d.batches.iter().map(|b| b.count).sum::<i64>().to_string(),
            d.batches
                .last()
                .map(|b| b.last_offset.to_string())
                .unwrap_or_default(),
            d.batches.iter().filter(|b| !b.valid).count().to_string(),
            d.trailing.to_string(),
        );
        let want = (
            c[cb].to_string(),
            c[cr].to_string(),
            c[cl].to_string(),
            c[cc].to_string(),
            c[ct].to_string(),
        );
        if got != want {
            errs.push(format!("{}: SEGMENTS.tsv (batches, records, last_off, crc_bad, trailing) {want:?}, kafka-dump-log {got:?}", c[cf]));
        }
    }
    assert!(n > 0, "SEGMENTS.tsv lists no segment");
}

#[test]
// Over 120 lines on purpose: one scenario against real brokers, each step working on the
// state the previous step left (split, its parts could only be called in this order).
fn inspect_agrees_with_kafka_dump_log() {
    // A kafka-dump-log JVM per file group over the whole corpus: alone on 2 cores.
    let _machine = crate::common::machine::alone();
    let t0 = std::time::Instant::now();
    let mut groups = vec![group("corpus", "3.9.2", &corpus())];
    for v in segvault_harness::FIXTURE_VERSIONS {
        for copy in ["clean", "live"] {
            let root = fixture_root(v).join(copy);
            let g = group(&format!("fixtures/kafka-{v}/{copy}"), v, &root);
            assert!(
                !g.logs.is_empty(),
                "{} has no .log: regenerate fixtures (harness fixtures)",
                root.display()
            );
            groups.push(g);
        }
    }
    // One dump per version: fixture copies of a version share a JVM run.
    let mut by_version: BTreeMap<(bool, String), Group> = BTreeMap::new();
    for g in &groups {
        let e = by_version
            .entry((g.name == "corpus", g.version.clone()))
            .or_insert_with(|| Group {
                name: if g.name == "corpus" {
                    "corpus".into()
                } else {
                    format!("fixtures/kafka-{}", g.version)
                },
                version: g.version.clone(),
                ..Group::default()
            });
        e.logs.extend(g.logs.iter().cloned());
        e.indexes.extend(g.indexes.iter().cloned());
    }
    let runs: Vec<Group> = by_version.into_values().collect();
    for g in &runs {
        eprintln!(
            "{}: Kafka {}, {} logs/snapshots, {} indexes",
            g.name,
            g.version,
            g.logs.len(),
            g.indexes.len()
        );
    }

    let mut errs: Vec<String> = Vec::new();
    // kafka-dump-log for each group in parallel with segvault over everything.
    let all_logs: Vec<PathBuf> = runs.iter().flat_map(|g| g.logs.iter().cloned()).collect();
    let all_indexed: Vec<PathBuf> = runs
        .iter()
        .flat_map(|g| g.indexes.iter().cloned())
        .collect();
    let (dumps, (shallow, deep, idx, inspect_errs)) = std::thread::scope(|s| {
        let dumps: Vec<_> = runs
            .iter()
            .map(|g| s.spawn(move || dump_group(g)))
            .collect();
        let mut ie = Vec::new();
        let shallow = inspect(&all_logs, &[], &mut ie);
        let deep = inspect(&all_logs, &["--records"], &mut ie);
        let idx = inspect(&all_indexed, &[], &mut ie);
        (
            dumps
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>(),
            (shallow, deep, idx, ie),
        )
    });
    errs.extend(inspect_errs);
    let mut corpus_dump = None;
    let (mut nb, mut nr, mut ni) = (0usize, 0usize, 0usize);
    let mut notes: Vec<String> = Vec::new();
    for (g, (dump, failed, problems)) in runs.iter().zip(dumps) {
        errs.extend(problems);
        // Files kafka-dump-log throws on: segvault must call them corrupt or partial.
        for (f, why) in &failed {
            let flagged = [&shallow, &idx]
                .iter()
                .filter_map(|m| m.get(&canon(f)))
                .any(|i| {
                    i.problems
                        .iter()
                        .any(|p| matches!(p["severity"].as_str(), Some("corrupt" | "partial")))
                        || i.batches
                            .iter()
                            .any(|b| b["crc_valid"] == Value::Bool(false))
                });
            if flagged {
                notes.push(format!(
                    "{}: kafka-dump-log fails ({why}); segvault reports it corrupt/partial",
                    f.display()
                ));
            } else {
                errs.push(format!("{}: kafka-dump-log fails ({why}) but segvault reports no corrupt/partial problem", f.display()));
            }
        }
        let failed: BTreeSet<&PathBuf> = failed.iter().map(|(p, _)| p).collect();
        for f in g.logs.iter().filter(|f| !failed.contains(f)) {
            let Some(d) = dump.logs.get(f) else { continue };
            nb += d.batches.len();
            nr += d.batches.iter().map(|b| b.records.len()).sum::<usize>();
            let key = canon(f);
            compare_log(f, d, shallow.get(&key), deep.get(&key), &mut errs);
        }
        for f in g.indexes.iter().filter(|f| !failed.contains(f)) {
            ni += 1;
            let mut d = dump.indexes.get(f).cloned().unwrap_or_default();
            if let Some(note) = drop_zero_slot_artefact(f, &mut d, idx.get(&canon(f))) {
                notes.push(note);
            }
            compare_index(f, &d, idx.get(&canon(f)), &mut errs);
        }
        if g.name == "corpus" {
            corpus_dump = Some(dump);
        }
    }
    for n in &notes {
        eprintln!("note: {n}");
    }
    compare_segments_tsv(corpus_dump.as_ref().expect("corpus dumped"), &mut errs);

    eprintln!(
        "compared {} logs/snapshots ({nb} batches, {nr} records) and {ni} indexes in {:.1?}",
        all_logs.len(),
        t0.elapsed()
    );
    if !errs.is_empty() {
        let n = errs.len();
        errs.truncate(60);
        panic!(
            "{n} disagreements between segvault inspect and kafka-dump-log:\n  {}",
            errs.join("\n  ")
        );
    }
}
