//! A log dir read as plain files, independently of the code under test: its segments, its
//! checkpoints, its partition dirs, every file under it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Every file under `dir`, recursively, sorted.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p)
            } else {
                out.push(p)
            }
        }
    }
    out.sort();
    out
}

/// The entries of `dir` whose name ends with `suffix`, sorted.
pub fn files_with(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Base offsets of the segments (`<base>.log`) in a partition directory, sorted. A `.log`
/// whose name is not a number fails the test.
pub fn segments(dir: &Path) -> Vec<i64> {
    let mut v: Vec<i64> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.unwrap().file_name();
            let base = name.to_str()?.strip_suffix(".log")?;
            Some(
                base.parse()
                    .unwrap_or_else(|e| panic!("{}: {base}.log: {e}", dir.display())),
            )
        })
        .collect();
    v.sort();
    v
}

/// Partition dirs of a log dir (`<topic>-<partition>`), by name, sorted; hidden ones and
/// `__cluster_metadata-0` left out.
pub fn partition_dirs(log_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(log_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            !n.starts_with('.')
                && n != "__cluster_metadata-0"
                && n.rsplit_once('-')
                    .is_some_and(|(_, p)| p.parse::<i32>().is_ok())
        })
        .collect();
    v.sort();
    v
}

/// One line of an offset checkpoint (`<topic> <partition> <offset>`), None if it is not one.
fn checkpoint_line(line: &str) -> Option<((String, i32), i64)> {
    let f: Vec<&str> = line.split(' ').collect();
    match f[..] {
        [topic, partition, offset] => Some((
            (topic.to_string(), partition.parse().ok()?),
            offset.parse().ok()?,
        )),
        _ => None,
    }
}

/// An offset checkpoint file (`replication-offset-checkpoint`, `recovery-point-offset-…`):
/// a version line, a count line, then `<topic> <partition> <offset>` per partition. A missing
/// file or a line of another form fails the test.
pub fn checkpoint(path: &Path) -> BTreeMap<(String, i32), i64> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .skip(2)
        .map(|l| {
            checkpoint_line(l)
                .unwrap_or_else(|| panic!("{}: not a checkpoint line: {l:?}", path.display()))
        })
        .collect()
}

/// [`checkpoint`] of a file a running broker rewrites: empty if the file is not there (yet),
/// and lines of another form skipped.
pub fn checkpoint_so_far(path: &Path) -> BTreeMap<(String, i32), i64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(checkpoint_line)
        .collect()
}

/// The high watermarks in `log_dir`'s `replication-offset-checkpoint` (see [`checkpoint`]).
pub fn high_watermarks(log_dir: &Path) -> BTreeMap<(String, i32), i64> {
    checkpoint(&log_dir.join("replication-offset-checkpoint"))
}

/// The partition's high watermark in `replication-offset-checkpoint`, if it is there yet.
pub fn high_watermark(log_dir: &Path, topic: &str, partition: i32) -> Option<i64> {
    checkpoint_so_far(&log_dir.join("replication-offset-checkpoint"))
        .get(&(topic.to_string(), partition))
        .copied()
}

/// `[base, next)` of every closed segment of `topic-0` whose end is at or below the high
/// watermark: what the archive must hold.
pub fn closed_committed(log_dir: &Path, topic: &str) -> Vec<(i64, i64)> {
    closed_committed_in(log_dir, topic, 0)
}

/// `[base, next)` of every closed segment of `topic-partition` whose end is at or below the
/// high watermark.
pub fn closed_committed_in(log_dir: &Path, topic: &str, partition: i32) -> Vec<(i64, i64)> {
    let bases = segments(&log_dir.join(format!("{topic}-{partition}")));
    let hw = high_watermark(log_dir, topic, partition).unwrap_or(-1);
    bases
        .windows(2)
        .map(|w| (w[0], w[1]))
        .filter(|&(_, n)| n <= hw)
        .collect()
}

/// Asserts that every segment (`<base>.log`) of every partition dir of `log_dir` has its
/// `.index` and `.timeindex` beside it: a broker that finds one missing logs an ERROR and
/// recovers the segment. Returns how many segments were checked.
pub fn assert_every_segment_indexed(log_dir: &Path) -> usize {
    let mut checked = 0;
    for d in partition_dirs(log_dir) {
        let pdir = log_dir.join(&d);
        for base in segments(&pdir) {
            for ext in ["index", "timeindex"] {
                let f = pdir.join(format!("{base:020}.{ext}"));
                assert!(f.is_file(), "{}: missing beside its .log", f.display());
            }
            checked += 1;
        }
    }
    checked
}

/// The offset of the newest KRaft snapshot (`<offset>-<epoch>.checkpoint`) in the log dir's
/// `__cluster_metadata-0`, -1 if it has none (or no metadata log).
pub fn newest_kraft_snapshot(log_dir: &Path) -> i64 {
    fs::read_dir(log_dir.join("__cluster_metadata-0"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".checkpoint")?
                .split('-')
                .next()?
                .parse::<i64>()
                .ok()
        })
        .max()
        .unwrap_or(-1)
}
