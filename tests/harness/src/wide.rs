//! Wide synthetic log dirs for the metadata-cost tests and benchmark: many partitions, or
//! partitions with many segments, cloned from one real fixture segment.
//!
//! The source is a closed segment a real broker wrote (`fixtures/kafka-4.3.1/clean/
//! codec-lz4-0/00000000000000000020.*`, 20 offsets in v2 batches). A clone at another base
//! offset moves every batch's `baseOffset`; a v2 batch's CRC covers the bytes from its
//! attributes on, not its base offset, and its indexes hold offsets relative to the
//! segment's base, so every clone verifies clean (`segvault verify`) and its indexes are
//! right as they are. Each partition holds `segments` closed, committed segments (its high
//! watermark in `replication-offset-checkpoint` is its end) and an active one.

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::Path;

/// The fixture segment the clones are made of, and how many offsets it spans.
const SOURCE_PARTITION: &str = "codec-lz4-0";
const SOURCE_BASE: i64 = 20;
const SPAN: i64 = 20;

/// The shape of a wide log dir.
#[derive(Debug, Clone, Copy)]
pub struct Wide {
    pub topics: usize,
    pub partitions_per_topic: usize,
    /// Closed, committed segments per partition (an active one follows them).
    pub segments: usize,
}

impl Wide {
    /// Offsets each partition holds (its high watermark).
    pub fn end_offset(&self) -> i64 {
        (self.segments as i64 + 1) * SPAN
    }
    /// The name of topic `t`.
    pub fn topic(t: usize) -> String {
        format!("wide-{t:05}")
    }
}

/// Writes the log dir `out` (which must not exist) from the fixture log dir `fixture`
/// (`fixtures/kafka-4.3.1/clean`).
pub fn write(out: &Path, fixture: &Path, shape: Wide) -> Result<()> {
    if out.exists() {
        bail!("{} exists: expected a new directory", out.display());
    }
    let src = fixture.join(SOURCE_PARTITION);
    let name = |ext: &str| src.join(format!("{SOURCE_BASE:020}.{ext}"));
    let log =
        fs::read(name("log")).with_context(|| format!("reading {}", name("log").display()))?;
    let timeindex = fs::read(name("timeindex"))?;
    let snapshot = fs::read(name("snapshot"))?;
    fs::create_dir_all(out)?;
    fs::copy(fixture.join("meta.properties"), out.join("meta.properties"))?;
    let mut hws = Vec::new();
    for t in 0..shape.topics {
        let topic = Wide::topic(t);
        let id = topic_id(t);
        for p in 0..shape.partitions_per_topic {
            let dir = out.join(format!("{topic}-{p}"));
            fs::create_dir(&dir)?;
            fs::write(
                dir.join("partition.metadata"),
                format!("version: 0\ntopic_id: {id}"),
            )?;
            fs::write(dir.join("leader-epoch-checkpoint"), "0\n1\n0 0\n")?;
            for s in 0..=shape.segments as i64 {
                let base = s * SPAN;
                let seg = |ext: &str| dir.join(format!("{base:020}.{ext}"));
                fs::write(seg("log"), rebased(&log, base - SOURCE_BASE)?)?;
                fs::write(seg("index"), b"")?;
                fs::write(seg("timeindex"), &timeindex)?;
                if s > 0 {
                    fs::write(seg("snapshot"), &snapshot)?;
                }
            }
            hws.push(format!("{topic} {p} {}", shape.end_offset()));
        }
    }
    let checkpoint = format!("0\n{}\n{}\n", hws.len(), hws.join("\n"));
    fs::write(out.join("replication-offset-checkpoint"), &checkpoint)?;
    fs::write(out.join("recovery-point-offset-checkpoint"), &checkpoint)?;
    Ok(())
}

/// What a broker does at a roll, to partition `<topic>-<partition>` of log dir `dir`: a new
/// active segment after the last one (its predecessor is now closed), and the high
/// watermark moved to the new segment's end (every segment committed). The checkpoint is
/// replaced as a broker replaces it (temp file, rename).
pub fn roll(dir: &Path, fixture: &Path, topic: &str, partition: i32) -> Result<()> {
    let pdir = dir.join(format!("{topic}-{partition}"));
    let last = fs::read_dir(&pdir)?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".log")?.parse::<i64>().ok()
        })
        .max()
        .with_context(|| format!("{}: no segment", pdir.display()))?;
    let base = last + SPAN;
    let src = fixture.join(SOURCE_PARTITION);
    let name = |ext: &str| src.join(format!("{SOURCE_BASE:020}.{ext}"));
    let seg = |ext: &str| pdir.join(format!("{base:020}.{ext}"));
    fs::write(
        seg("log"),
        rebased(&fs::read(name("log"))?, base - SOURCE_BASE)?,
    )?;
    fs::write(seg("index"), b"")?;
    fs::write(seg("timeindex"), fs::read(name("timeindex"))?)?;
    fs::write(seg("snapshot"), fs::read(name("snapshot"))?)?;
    let cp = dir.join("replication-offset-checkpoint");
    let text = fs::read_to_string(&cp)?;
    let prefix = format!("{topic} {partition} ");
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.strip_prefix(&prefix) {
            Some(_) => format!("{prefix}{}", base + SPAN),
            None => l.to_string(),
        })
        .collect();
    replace_file(&cp, format!("{}\n", lines.join("\n")).as_bytes())
}

/// Rewrites `replication-offset-checkpoint` of `dir` with the same content, as a broker
/// does every `replica.high.watermark.checkpoint.interval.ms` when nothing moved.
pub fn rewrite_checkpoint(dir: &Path) -> Result<()> {
    let cp = dir.join("replication-offset-checkpoint");
    replace_file(&cp, &fs::read(&cp)?)
}

fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// A topic id for topic `t`: 16 bytes, Kafka's URL-safe base64 without padding.
fn topic_id(t: usize) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("segvault-wide-{t}").as_bytes());
    base64_url(&d[..16])
}

fn base64_url(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &c| (n << 8) | c as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// `log` with every batch's base offset moved by `delta`.
fn rebased(log: &[u8], delta: i64) -> Result<Vec<u8>> {
    let mut out = log.to_vec();
    let mut pos = 0usize;
    while pos + 12 <= out.len() {
        let base = i64::from_be_bytes(out[pos..pos + 8].try_into()?);
        let len = i32::from_be_bytes(out[pos + 8..pos + 12].try_into()?) as usize;
        if out.get(pos + 16) != Some(&2) {
            bail!("batch at byte {pos}: expected magic 2");
        }
        out[pos..pos + 8].copy_from_slice(&(base + delta).to_be_bytes());
        pos += 12 + len;
    }
    if pos != out.len() {
        bail!("the source segment ends inside a batch at byte {pos}");
    }
    Ok(out)
}
