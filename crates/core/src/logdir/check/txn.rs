//! The `.txnindex` cross-check: its aborted transactions matched against the ABORT markers
//! the walk meets in the `.log`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::events::{Event, IndexEntryLine, Out};
use super::problem::{Problem, Severity};

/// The aborted transactions a `.txnindex` lists, each matched when the walk meets its ABORT
/// marker.
#[derive(Default)]
pub(super) struct AbortedTxns {
    /// The `.txnindex`, if the segment has one.
    path: Option<PathBuf>,
    /// (producer id, marker offset) -> (entry, matched).
    entries: HashMap<(i64, i64), (usize, bool)>,
}

impl AbortedTxns {
    /// Reads a `.txnindex` (`None`: the segment has none), emitting its entries when `emit`.
    pub(super) fn read(
        txnindex: Option<(&Path, &[u8])>,
        emit: bool,
        out: &mut Out<'_, '_>,
    ) -> AbortedTxns {
        let mut aborted = AbortedTxns::default();
        let Some((path, map)) = txnindex else {
            return aborted;
        };
        aborted.path = Some(path.to_path_buf());
        match segvault_format::index::parse_txn_index(map) {
            Ok(entries) => {
                for (i, t) in entries.iter().enumerate() {
                    if emit {
                        let mut l = IndexEntryLine::new(path, "txn", i);
                        l.producer_id = Some(t.producer_id);
                        l.first_offset = Some(t.first_offset);
                        l.last_offset = Some(t.last_offset);
                        l.last_stable_offset = Some(t.last_stable_offset);
                        out.emit(Event::IndexEntry(&l));
                    }
                    aborted
                        .entries
                        .insert((t.producer_id, t.last_offset), (i, false));
                }
                out.file_stats.index_entries += entries.len() as u64;
            }
            Err(e) => out.problem(Problem::from_format(path, Severity::Corrupt, &e)),
        }
        aborted
    }

    /// An ABORT marker of producer `pid` at offset `marker`, in the batch at byte `pos` of
    /// `log`: matches its entry, or reports that the `.txnindex` lacks one.
    pub(super) fn marker(
        &mut self,
        log: &Path,
        pos: u64,
        (pid, marker): (i64, i64),
        active: bool,
        has_txnindex: bool,
        out: &mut Out<'_, '_>,
    ) {
        match self.entries.get_mut(&(pid, marker)) {
            Some(slot) => slot.1 = true,
            None if has_txnindex || !active => {
                let sev = if active {
                    Severity::Note
                } else {
                    Severity::Corrupt
                };
                out.file_stats.data.index_mismatches += u64::from(sev == Severity::Corrupt);
                out.problem(
                    Problem::new(log, sev, "txn_index_missing", format!(
                        "expected the .txnindex to list the aborted transaction of producer {pid} whose ABORT marker is at offset {marker}, found {} (read_committed consumers would receive its records)",
                        if has_txnindex { "no such entry" } else { "no .txnindex" }
                    )).at(Some(pos), Some(marker)),
                );
            }
            None => {}
        }
    }

    /// Reports the entries whose ABORT marker the walk never met (once the whole `.log` was
    /// read).
    pub(super) fn finish(&self, active: bool, out: &mut Out<'_, '_>) {
        let mut left: Vec<_> = self.entries.iter().filter(|(_, (_, m))| !m).collect();
        left.sort_by_key(|(_, (i, _))| *i);
        for ((pid, marker), (i, _)) in left {
            let sev = if active {
                Severity::Note
            } else {
                Severity::Corrupt
            };
            out.file_stats.data.index_mismatches += u64::from(sev == Severity::Corrupt);
            let path = self.path.clone().unwrap_or_default();
            out.problem(
                Problem::new(&path, sev, "txn_index_mismatch", format!(
                    "entry {i}: expected an ABORT marker of producer {pid} at offset {marker} in the .log, found none"
                )).at(Some((*i * 34) as u64), Some(*marker)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logdir::check::events::collect;

    #[test]
    fn aborted_transactions_matched_against_markers() {
        // .txnindex entries: version 0, producer id, first offset, last offset, LSO.
        let entry = |pid: i64, first: i64, last: i64| -> Vec<u8> {
            let mut v = 0i16.to_be_bytes().to_vec();
            for x in [pid, first, last, 0] {
                v.extend(x.to_be_bytes());
            }
            v
        };
        let bytes = [entry(7, 0, 5), entry(8, 6, 9)].concat();
        let log = Path::new("x.log");
        let (kinds, stats) = collect(|out| {
            let mut a = AbortedTxns::read(Some((Path::new("x.txnindex"), &bytes)), false, out);
            a.marker(log, 0, (7, 5), false, true, out);
            a.marker(log, 0, (9, 12), false, true, out);
            a.finish(false, out);
        });
        assert_eq!(kinds, ["txn_index_missing", "txn_index_mismatch"]);
        assert_eq!((stats.index_entries, stats.data.index_mismatches), (2, 2));
        // Without a .txnindex, an abort in the active segment is not judged.
        let (kinds, _) = collect(|out| {
            let mut a = AbortedTxns::read(None, false, out);
            a.marker(log, 0, (9, 12), true, false, out);
            a.finish(true, out);
        });
        assert!(kinds.is_empty(), "{kinds:?}");
    }
}
