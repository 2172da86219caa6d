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

use std::path::Path;

use crate::error::{Error, Result};
use crate::log::segment::{file_name, Segment, CLEANED_SUFFIX, EXTENSIONS};

const SWAP_SUFFIX: &str = ".log.swap";

fn swap_name(base: i64, end: i64) -> String {
    format!("{base:020}-{end:020}{SWAP_SUFFIX}")
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("syncing partition directory", e))
}

fn rename(dir: &Path, from: &str, to: &str) -> Result<()> {
    std::fs::rename(dir.join(from), dir.join(to)).map_err(|e| Error::io("renaming cleaned segment", e))
}

/// Replaces `old` (already out of the log's map) by the cleaned segment at `base` covering
/// offsets up to `end`.
pub(crate) fn swap_in(dir: &Path, base: i64, end: i64, old: &[Segment]) -> Result<()> {
    let swap = swap_name(base, end);
    rename(dir, &(file_name(base, "log") + CLEANED_SUFFIX), &swap)?;
    sync_dir(dir)?;
    for s in old {
        s.delete_files();
    }
    finish(dir, base, &swap)
}

/// Step 3: the swap file becomes the segment.
fn finish(dir: &Path, base: i64, swap: &str) -> Result<()> {
    rename(dir, swap, &file_name(base, "log"))?;
    for ext in &EXTENSIONS[1..] {
        let cleaned = file_name(base, ext) + CLEANED_SUFFIX;
        if dir.join(&cleaned).exists() {
            rename(dir, &cleaned, &file_name(base, ext))?;
        }
    }
    sync_dir(dir)
}

/// Completes or rolls back a swap a crash interrupted. Returns how many swaps it completed
/// and how many abandoned cleaned files it deleted.
pub(crate) fn recover(dir: &Path) -> Result<(usize, usize)> {
    let mut swaps = Vec::new();
    let mut abandoned = 0;
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("listing partition directory", e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("listing partition directory", e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(CLEANED_SUFFIX) {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io("deleting a cleaned file", e))?;
            abandoned += 1;
        } else if let Some(range) = name.strip_suffix(SWAP_SUFFIX) {
            let parsed =
                range.split_once('-').and_then(|(b, e)| Some((b.parse::<i64>().ok()?, e.parse::<i64>().ok()?)));
            match parsed {
                Some((base, end)) => swaps.push((base, end, name)),
                None => return Err(Error::Corrupt(format!("{}: unreadable swap file name", entry.path().display()))),
            }
        }
    }
    let n = swaps.len();
    for (base, end, swap) in swaps {
        for (old, _) in super::super::segment::list_segments(dir)? {
            if (base..end).contains(&old) {
                for ext in EXTENSIONS {
                    let _ = std::fs::remove_file(dir.join(file_name(old, ext)));
                }
            }
        }
        finish(dir, base, &swap)?;
        tracing::warn!(dir = %dir.display(), base, end, "completed a cleaned-segment swap a crash interrupted");
    }
    if n > 0 || abandoned > 0 {
        sync_dir(dir)?;
    }
    Ok((n, abandoned))
}
