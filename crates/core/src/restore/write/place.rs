//! A built partition's rename into place, journalled ahead; what a partition dir already
//! holds (data, or a partition placed by an interrupted run).

use super::files::sync_dir;
use super::journal::Journal;
use super::RestoredPartition;
use crate::restore::error::{io, RestoreError};
use crate::restore::plan::PartitionPlan;
use segvault_format::segment::log_entries;
use segvault_format::text;
use std::fs;
use std::path::{Path, PathBuf};

/// A partition dir holds data if any `.log` in it is not empty.
pub(super) fn holds_data(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            e.file_name().to_string_lossy().ends_with(".log")
                && e.metadata().is_ok_and(|m| m.len() > 0)
        })
    })
}

/// Renames the built partition `name` from the staging dir into place (the old dir, if any,
/// aside first), then records it in the journal. Returns where it now is.
pub(super) fn place(
    to: &Path,
    staging: &Path,
    name: &str,
    journal_path: &Path,
    journal: &mut Journal,
) -> Result<PathBuf, RestoreError> {
    let dir = to.join(name);
    let stage = staging.join(name);
    let aside = staging.join(format!("replaced-{name}"));
    // Written ahead: a kill from here on leaves a journal that recognises the placed dir.
    journal.placing.insert(name.to_string());
    journal.save(journal_path)?;
    if dir.exists() {
        if aside.exists() {
            fs::remove_dir_all(&aside).map_err(io(&aside))?;
        }
        fs::rename(&dir, &aside).map_err(io(&dir))?;
    }
    fs::rename(&stage, &dir).map_err(io(&dir))?;
    sync_dir(to)?;
    if aside.exists() {
        fs::remove_dir_all(&aside).map_err(io(&aside))?;
    }
    journal.done.insert(name.to_string());
    journal.placing.remove(name);
    journal.save(journal_path)?;
    Ok(dir)
}

pub(super) fn resumed_report(
    p: &PartitionPlan,
    dir: &Path,
) -> Result<RestoredPartition, RestoreError> {
    let mut listing: Vec<i64> = fs::read_dir(dir)
        .map_err(io(dir))?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    listing.sort();
    let first = listing.first().copied().unwrap_or(0);
    let end = end_offset_of(dir, listing.last().copied())?;
    let topic_id = fs::read(dir.join("partition.metadata"))
        .ok()
        .and_then(|b| text::parse_partition_metadata(&b).ok())
        .map(|u| u.to_string())
        .unwrap_or_default();
    Ok(RestoredPartition {
        topic: p.topic.clone(),
        partition: p.partition,
        dir: dir.to_path_buf(),
        topic_id,
        segments: listing.len(),
        log_bytes: 0,
        log_start_offset: first,
        log_end_offset: end,
        cut_at: None,
        rebuilt_indexes: 0,
        resumed: true,
        open_transactions: vec![],
        open_transactions_cut: None,
    })
}

/// The offset after the last batch of the segment with base `last_base` in `dir`.
fn end_offset_of(dir: &Path, last_base: Option<i64>) -> Result<i64, RestoreError> {
    let Some(base) = last_base else { return Ok(0) };
    let path = dir.join(format!("{base:020}.log"));
    let log = crate::sys::map(&path).map_err(io(&path))?;
    let mut end = base;
    for b in log_entries(log.bytes()) {
        if let Some(l) = b.last_offset() {
            end = l + 1;
        }
    }
    Ok(end)
}
