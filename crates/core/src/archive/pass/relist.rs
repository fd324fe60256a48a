//! The listing a pass works from may be stale: the broker renames, replaces and deletes
//! segments while it runs. These look again (at the partition directory, at the mapped file)
//! before anything is published from what the listing said.

use super::report::Outcome;
use crate::archive::error::ArchiveError;
use crate::logdir::{self, PartitionDir, SegmentFiles};
use segvault_format::mapped::{file_id, MappedFile};
use std::path::PathBuf;

/// Maps the `.log` of a listed segment. The listing may be stale: retention or the log
/// cleaner may have renamed the file to `.deleted` since (its bytes are still the listed
/// segment's until the broker deletes it, `file.delete.delay.ms` later), or deleted it.
/// `None`: gone under both names.
pub(super) fn open_listed(seg: &SegmentFiles) -> Result<Option<MappedFile>, ArchiveError> {
    let mut deleted = seg.log.clone().into_os_string();
    deleted.push(".deleted");
    for path in [seg.log.clone(), PathBuf::from(deleted)] {
        match crate::sys::map(&path) {
            Ok(f) => return Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ArchiveError::File { path, source: e }),
        }
    }
    Ok(None)
}

/// The outcome of a listed segment gone under both its names.
pub(super) fn gone(seg: &SegmentFiles) -> Outcome {
    Outcome::Changed {
        base: seg.base_offset,
        message: format!(
            "{}: gone since the listing, also as .deleted (retention or the log cleaner removed it); left for the next pass",
            seg.log.display()
        ),
    }
}

/// Whether the broker has changed what the listing said about `seg` and its successor (at
/// `next`): the `.log` name no longer names the mapped file, or the segments from `seg` up to
/// its successor are not the listed ones any more. Segments rolled after them, or removed
/// before, do not count: they do not change what `seg` should hold.
pub(super) fn changed_since_listing(
    p: &PartitionDir,
    seg: &SegmentFiles,
    next: i64,
    log: &MappedFile,
) -> bool {
    if renamed(seg, log) {
        return true;
    }
    let within = |s: &&SegmentFiles| s.base_offset >= seg.base_offset && s.base_offset <= next;
    match logdir::scan_partition(&p.path, &p.topic, p.partition) {
        Ok(now) => now
            .segments
            .iter()
            .filter(within)
            .map(|s| s.base_offset)
            .ne(p.segments.iter().filter(within).map(|s| s.base_offset)),
        Err(_) => true,
    }
}

/// Whether a fresh look at the partition confirms that the listing missed no segment with a
/// base offset in `[lo, hi)`: none there that the listing lacks, and no `.log.swap` there.
/// The log cleaner renames the segments it merged to `.deleted` before it moves the merged
/// `.swap` into place, so a listing taken in between (or a directory read torn by those
/// renames) lacks segments that hold data; a range, gap or start built on it would lose
/// them for good. (`.deleted` files do not count: they are gone from the log.)
pub(super) fn listing_confirmed(p: &PartitionDir, lo: i64, hi: i64) -> bool {
    use segvault_format::names::{parse_file_name, FileName, SegmentFileKind, TransientSuffix};
    // Names only (one directory read, no file opened): this runs once per batch of ranges.
    let Ok(entries) = std::fs::read_dir(&p.path) else {
        return false;
    };
    let within = |b: i64| b >= lo && b < hi;
    let listed = |b: i64| {
        p.segments
            .binary_search_by_key(&b, |s| s.base_offset)
            .is_ok()
    };
    for entry in entries {
        let Ok(entry) = entry else {
            return false;
        };
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if let FileName::Segment(s) = parse_file_name(name) {
            if s.kind != SegmentFileKind::Log || !within(s.offset) {
                continue;
            }
            match s.suffix {
                None if !listed(s.offset) => return false,
                Some(TransientSuffix::Swap) => return false,
                _ => {}
            }
        }
    }
    true
}

/// The outcome of a listing [`listing_confirmed`] did not confirm.
pub(super) fn unconfirmed(p: &PartitionDir, at: i64) -> Outcome {
    Outcome::Changed {
        base: at,
        message: format!(
            "{}: the listing may have missed segments the broker was replacing (a .log.swap or an unlisted segment appeared); nothing published from offset {at}, left for the next pass",
            p.path.display()
        ),
    }
}

/// Whether the `.log` name of `seg` no longer names the mapped file (see [`FileId`](segvault_format::mapped::FileId)).
pub(super) fn renamed(seg: &SegmentFiles, log: &MappedFile) -> bool {
    file_id(&seg.log).ok() != Some(log.id())
}

/// An I/O error naming `path` if `map` was truncated while read (see
/// [`MappedFile::truncated`]).
pub(super) fn intact(map: &MappedFile, path: &std::path::Path) -> Result<(), ArchiveError> {
    map.check_intact().map_err(|e| ArchiveError::File {
        path: path.to_path_buf(),
        source: e,
    })
}
