//! Swapping cleaned segments in, so that a crash at any point leaves either the old segments
//! or the new one, as Kafka's `.cleaned` / `.swap` files do.
//!
//! The cleaner writes the new segment as `<base>.log.cleaned` (and its indexes as
//! `<base>.index.cleaned`, `<base>.timeindex.cleaned`) and syncs it. The swap then:
//! 1. renames the log to `<base>-<end>.log.swap` (the name records the offsets it replaces)
//!    and syncs the directory: from here on the new segment wins;
//! 2. deletes the old segments' files;
//! 3. renames the swap file to `<base>.log` and the indexes to their names, and syncs the
//!    directory.
//!
//! On open, [`recover`] deletes any `.cleaned` file (a pass that had not reached step 1) and
//! finishes any `.swap` (steps 2 and 3). Indexes are rebuilt from the log on open anyway.

use crate::error::{Error, Result};
use crate::log::segment::{file_name, list_segments, Segment, CLEANED_SUFFIX, EXTENSIONS};
use crate::storage::Dir;

const SWAP_SUFFIX: &str = ".log.swap";

fn swap_name(base: i64, end: i64) -> String {
    format!("{base:020}-{end:020}{SWAP_SUFFIX}")
}

/// Replaces `old` (already out of the log's map) by the cleaned segment at `base` covering
/// offsets up to `end`.
pub(crate) fn swap_in(dir: &Dir, base: i64, end: i64, old: &[Segment]) -> Result<()> {
    let swap = swap_name(base, end);
    dir.rename(&(file_name(base, "log") + CLEANED_SUFFIX), &swap)?;
    dir.sync()?;
    for s in old {
        s.delete_files();
    }
    finish(dir, base, &swap)
}

/// Step 3: the swap file becomes the segment.
fn finish(dir: &Dir, base: i64, swap: &str) -> Result<()> {
    dir.rename(swap, &file_name(base, "log"))?;
    for ext in &EXTENSIONS[1..] {
        let cleaned = file_name(base, ext) + CLEANED_SUFFIX;
        if dir.exists(&cleaned) {
            dir.rename(&cleaned, &file_name(base, ext))?;
        }
    }
    dir.sync()
}

/// Completes or rolls back a swap a crash interrupted.
pub(crate) fn recover(dir: &Dir) -> Result<()> {
    let mut swaps = Vec::new();
    let mut abandoned = 0;
    for (name, _) in dir.list()? {
        if name.ends_with(CLEANED_SUFFIX) {
            dir.fs.remove_file(&dir.join(&name)).map_err(|e| Error::io("deleting a cleaned file", e))?;
            abandoned += 1;
        } else if let Some(range) = name.strip_suffix(SWAP_SUFFIX) {
            let parsed =
                range.split_once('-').and_then(|(b, e)| Some((b.parse::<i64>().ok()?, e.parse::<i64>().ok()?)));
            match parsed {
                Some((base, end)) => swaps.push((base, end, name)),
                None => {
                    return Err(Error::Corrupt(format!("{}: unreadable swap file name", dir.join(&name).display())))
                }
            }
        }
    }
    let n = swaps.len();
    for (base, end, swap) in swaps {
        for (old, _) in list_segments(dir)? {
            if (base..end).contains(&old) {
                for ext in EXTENSIONS {
                    dir.remove(&file_name(old, ext));
                }
            }
        }
        finish(dir, base, &swap)?;
        tracing::warn!(?dir, base, end, "completed a cleaned-segment swap a crash interrupted");
    }
    if n > 0 || abandoned > 0 {
        dir.sync()?;
    }
    Ok(())
}
