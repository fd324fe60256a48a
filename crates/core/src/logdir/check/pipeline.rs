//! Framing a `.log` and verifying its CRCs on a helper thread, ahead of the thread that
//! handles the entries.

use segvault_format::segment::{Batch, LogEntries};

/// Bytes and entries of one window of [`walk_entries`]: small
/// enough to stay in cache, large enough that handing one over costs nothing.
const WINDOW_BYTES: usize = 1 << 20;
const WINDOW_ENTRIES: usize = 64;

/// Frames the next window of entries into `into`, each with its CRC verdict.
fn next_window<'a>(walk: &mut LogEntries<'a>, into: &mut Vec<(Batch<'a>, bool)>) {
    into.clear();
    let mut bytes = 0usize;
    while bytes < WINDOW_BYTES && into.len() < WINDOW_ENTRIES {
        let Some(b) = walk.next() else { break };
        bytes = bytes.saturating_add(b.size());
        let ok = b.crc_ok();
        into.push((b, ok));
    }
}

/// Hands every entry of `walk` to `handle` with its CRC verdict, in order, and returns the
/// walk (its end says how the `.log` ended). With `pipeline`, a helper thread frames the next
/// windows of entries and verifies their CRCs (faulting their pages in) while this thread
/// handles the current one; bounded: at most two windows queued, one being framed, one
/// being handled. The entries and verdicts are the same either way.
pub(super) fn walk_entries<'a>(
    mut walk: LogEntries<'a>,
    pipeline: bool,
    mut handle: impl FnMut(Batch<'a>, bool),
) -> LogEntries<'a> {
    if !pipeline {
        for b in walk.by_ref() {
            let crc_ok = b.crc_ok();
            handle(b, crc_ok);
        }
        return walk;
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(Batch<'a>, bool)>>(2);
    let joined = std::thread::scope(|s| {
        let helper = s.spawn(move || {
            loop {
                let mut w = Vec::new();
                next_window(&mut walk, &mut w);
                if w.is_empty() || tx.send(w).is_err() {
                    break;
                }
            }
            walk
        });
        for w in rx {
            for (b, crc_ok) in w {
                handle(b, crc_ok);
            }
        }
        helper.join()
    });
    match joined {
        Ok(w) => w,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
