//! One segment or index file on its own, as `segvault inspect` is given it: its base
//! offset, whether it is its directory's active segment, and which `.log` an index
//! describes. These read the directory beside the file, not a [`scan`](super::scan).

use std::path::{Path, PathBuf};

use segvault_format::names::{parse_file_name, FileName, SegmentFileKind};

/// The segment's base offset, from a canonical or plain-digit file name.
pub fn base_offset_of(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    match parse_file_name(name) {
        FileName::Segment(s) => Some(s.offset),
        _ => None,
    }
}

/// The file name of `path`, lossily; empty if it has none.
fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether `log` is its directory's active segment: no `.log` with a higher base offset
/// beside it. A file whose name has no offset counts as active (nothing says otherwise).
pub fn is_active_segment(log: &Path) -> bool {
    use segvault_format::names::TransientSuffix;
    let name = name_of(log);
    // A segment renamed away (retention, cleaner) or a finished replacement: never appended to.
    if let FileName::Segment(s) = parse_file_name(&name) {
        if matches!(
            s.suffix,
            Some(TransientSuffix::Deleted | TransientSuffix::Swap)
        ) {
            return false;
        }
    }
    let Some(base) = base_offset_of(log) else {
        return true;
    };
    let Some(dir) = log.parent() else { return true };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return true;
    };
    !rd.flatten().any(|e| {
        let n = e.file_name();
        let n = n.to_string_lossy();
        matches!(parse_file_name(&n), FileName::Segment(s) if s.kind == SegmentFileKind::Log && s.suffix.is_none() && s.offset > base)
    })
}

/// The `.log` an index describes: the same base offset and the same transient suffix, if
/// any (`X.timeindex.deleted` goes with `X.log.deleted`, renamed together), else `X.log`.
pub fn log_beside(index: &Path) -> PathBuf {
    let name = name_of(index);
    if let FileName::Segment(s) = parse_file_name(&name) {
        if let Some(suffix) = s.suffix {
            let live = index.with_file_name(&name[..name.len() - suffix.as_str().len()]);
            let renamed = live.with_extension(format!("log{}", suffix.as_str()));
            return if renamed.is_file() {
                renamed
            } else {
                live.with_extension("log")
            };
        }
    }
    index.with_extension("log")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, b"").unwrap();
        p
    }

    #[test]
    fn the_highest_live_log_is_active() {
        let d = tempfile::tempdir().unwrap();
        let first = touch(d.path(), "00000000000000000000.log");
        let second = touch(d.path(), "00000000000000000100.log");
        // Neither a renamed-away segment nor an index makes another one closed.
        touch(d.path(), "00000000000000000200.log.deleted");
        touch(d.path(), "00000000000000000300.index");
        assert!(!is_active_segment(&first));
        assert!(is_active_segment(&second));
        let deleted = d.path().join("00000000000000000200.log.deleted");
        assert!(!is_active_segment(&deleted));
        let swap = touch(d.path(), "00000000000000000400.log.swap");
        assert!(!is_active_segment(&swap));
        // No offset in the name: nothing says it is closed.
        assert!(is_active_segment(&touch(d.path(), "copy.log")));
        assert_eq!(base_offset_of(&second), Some(100));
        assert_eq!(base_offset_of(Path::new("copy.log")), None);
    }

    #[test]
    fn an_index_goes_with_the_log_of_its_offset_and_suffix() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        assert_eq!(
            log_beside(&dir.join("00000000000000000100.timeindex")),
            dir.join("00000000000000000100.log")
        );
        // Renamed together when the renamed .log exists, else the live one.
        let idx = dir.join("00000000000000000100.timeindex.deleted");
        assert_eq!(log_beside(&idx), dir.join("00000000000000000100.log"));
        touch(dir, "00000000000000000100.log.deleted");
        assert_eq!(
            log_beside(&idx),
            dir.join("00000000000000000100.log.deleted")
        );
    }
}
