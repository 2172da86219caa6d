//! A simulated disk: files in memory, each with the length its last sync made durable. A
//! simulated crash ([`SimFs::crash`]) cuts every file back to its durable length plus a part of
//! its unsynced tail chosen by the caller (a torn write), as a power loss would.
//!
//! Directory operations (create, rename, delete) are durable at once, as on a journaling file
//! system that orders metadata; only file contents can be lost. [`SimFs::fail_power`] models
//! a power loss in the middle of a request: the first sync after it never completes, and the
//! process is dead from there on. Handles opened before a crash
//! keep pointing at the lost files, so a dead broker's writes never reach the disk its
//! successor opens.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Fs, FsFile, OpenMode};

/// What a file holds.
#[derive(Debug, Default)]
struct FileData {
    data: Vec<u8>,
    /// Bytes made durable by the last sync (never more than `data.len()`).
    synced: usize,
    mtime: i64,
}

/// One simulated file.
#[derive(Debug, Default)]
struct SimFile {
    inner: Mutex<FileData>,
    /// The disk's clock, for modification times.
    now: Arc<AtomicI64>,
    /// The power: see [`Power`].
    power: Arc<AtomicU8>,
}

/// The power states of a simulated disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Power {
    /// Everything works.
    On = 0,
    /// The power is failing: the next sync never completes, and nothing after it happens.
    Failing = 1,
    /// The process died in a sync: no further write, rename or deletion reaches the disk.
    Off = 2,
}

fn power(p: &AtomicU8) -> Power {
    match p.load(Ordering::Relaxed) {
        0 => Power::On,
        1 => Power::Failing,
        _ => Power::Off,
    }
}

/// An open simulated file.
#[derive(Debug)]
struct Handle(Arc<SimFile>);

impl FsFile for Handle {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.inner.lock().data.len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let f = self.0.inner.lock();
        let start = usize::try_from(pos).map_err(|_| io::ErrorKind::InvalidInput)?;
        let src = f.data.get(start..start + buf.len()).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        if power(&self.0.power) == Power::Off {
            return Ok(());
        }
        let mut f = self.0.inner.lock();
        let start = usize::try_from(pos).map_err(|_| io::ErrorKind::InvalidInput)?;
        if f.data.len() < start + buf.len() {
            f.data.resize(start + buf.len(), 0);
        }
        f.data[start..start + buf.len()].copy_from_slice(buf);
        // Overwriting durable bytes makes them uncertain until the next sync.
        f.synced = f.synced.min(start);
        f.mtime = self.0.now.load(Ordering::Relaxed);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if power(&self.0.power) == Power::Off {
            return Ok(());
        }
        let mut f = self.0.inner.lock();
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        f.data.resize(len, 0);
        f.synced = f.synced.min(len);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        if power(&self.0.power) != Power::On {
            self.0.power.store(Power::Off as u8, Ordering::Relaxed);
            return Ok(());
        }
        let mut f = self.0.inner.lock();
        f.synced = f.data.len();
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Tree {
    files: BTreeMap<PathBuf, Arc<SimFile>>,
    dirs: BTreeSet<PathBuf>,
}

/// A simulated disk (see the module documentation).
#[derive(Debug, Default)]
pub struct SimFs {
    tree: Mutex<Tree>,
    now: Arc<AtomicI64>,
    power: Arc<AtomicU8>,
}

/// What a simulated crash lost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CrashLoss {
    /// Files that lost bytes.
    pub files: usize,
    /// Unsynced bytes lost.
    pub bytes: u64,
}

impl SimFs {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// The power starts failing (`true`): the next sync never completes and the process is
    /// dead from then on, so nothing it writes, renames or deletes afterwards reaches the disk
    /// (a crash should follow). `false` restores the power.
    pub fn fail_power(&self, failing: bool) {
        let state = if failing { Power::Failing } else { Power::On };
        self.power.store(state as u8, Ordering::Relaxed);
    }

    fn off(&self) -> bool {
        power(&self.power) == Power::Off
    }

    /// Sets the clock that stamps modification times.
    pub fn set_now(&self, now_ms: i64) {
        self.now.store(now_ms, Ordering::Relaxed);
    }

    /// A power loss: every file keeps its synced bytes plus `keep(unsynced)` bytes of its
    /// unsynced tail (a number from 0 to `unsynced`), in path order. Open handles are cut off
    /// from the surviving files.
    pub fn crash(&self, mut keep: impl FnMut(usize) -> usize) -> CrashLoss {
        let mut tree = self.tree.lock();
        let mut loss = CrashLoss::default();
        for file in tree.files.values_mut() {
            let f = file.inner.lock();
            let unsynced = f.data.len() - f.synced;
            let kept = f.synced + keep(unsynced).min(unsynced);
            if kept < f.data.len() {
                loss.files += 1;
                loss.bytes += (f.data.len() - kept) as u64;
            }
            let survivor = FileData { data: f.data[..kept].to_vec(), synced: kept, mtime: f.mtime };
            drop(f);
            *file = self.file(survivor);
        }
        loss
    }

    /// Bytes written but not yet synced, over every file.
    pub fn unsynced_bytes(&self) -> u64 {
        self.tree.lock().files.values().map(|f| f.inner.lock()).map(|f| (f.data.len() - f.synced) as u64).sum()
    }

    fn file(&self, data: FileData) -> Arc<SimFile> {
        Arc::new(SimFile { inner: Mutex::new(data), now: Arc::clone(&self.now), power: Arc::clone(&self.power) })
    }

    fn missing(path: &Path) -> io::Error {
        io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", path.display()))
    }
}

impl Fs for SimFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if self.off() {
            return Ok(());
        }
        let mut tree = self.tree.lock();
        for a in path.ancestors() {
            tree.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<(String, i64)>> {
        let tree = self.tree.lock();
        if !tree.dirs.contains(dir) {
            return Err(Self::missing(dir));
        }
        let mut out: Vec<(String, i64)> = tree
            .files
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, f)| (p.file_name().unwrap_or_default().to_string_lossy().into_owned(), f.inner.lock().mtime))
            .collect();
        out.extend(
            tree.dirs
                .iter()
                .filter(|d| d.parent() == Some(dir))
                .map(|d| (d.file_name().unwrap_or_default().to_string_lossy().into_owned(), 0)),
        );
        out.sort();
        Ok(out)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>> {
        let mut tree = self.tree.lock();
        let parent = path.parent().unwrap_or(Path::new(""));
        if !tree.dirs.contains(parent) {
            return Err(Self::missing(parent));
        }
        let file = match (tree.files.get(path), mode) {
            (Some(f), OpenMode::Existing) => Arc::clone(f),
            (None, OpenMode::Existing) => return Err(Self::missing(path)),
            (_, OpenMode::CreateTruncate) => {
                let now = self.now.load(Ordering::Relaxed);
                let f = self.file(FileData { mtime: now, ..Default::default() });
                if !self.off() {
                    tree.files.insert(path.to_path_buf(), Arc::clone(&f));
                }
                f
            }
        };
        Ok(Arc::new(Handle(file)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let tree = self.tree.lock();
        let f = tree.files.get(path).ok_or_else(|| Self::missing(path))?;
        let data = f.inner.lock().data.clone();
        Ok(data)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.off() {
            return Ok(());
        }
        let mut tree = self.tree.lock();
        let f = tree.files.remove(from).ok_or_else(|| Self::missing(from))?;
        tree.files.insert(to.to_path_buf(), f);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        if self.off() {
            return Ok(());
        }
        self.tree.lock().files.remove(path).map(|_| ()).ok_or_else(|| Self::missing(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        if self.off() {
            return Ok(());
        }
        let mut tree = self.tree.lock();
        tree.files.retain(|p, _| !p.starts_with(path));
        tree.dirs.retain(|d| !d.starts_with(path));
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let tree = self.tree.lock();
        tree.files.contains_key(path) || tree.dirs.contains(path)
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_lose_only_the_unsynced_tail_on_a_crash() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let f = fs.open(Path::new("/d/a"), OpenMode::CreateTruncate).unwrap();
        f.write_all_at(b"durable", 0).unwrap();
        f.sync().unwrap();
        f.write_all_at(b"-tail", 7).unwrap();
        assert_eq!(fs.unsynced_bytes(), 5);
        let loss = fs.crash(|unsynced| unsynced / 2);
        assert_eq!(loss, CrashLoss { files: 1, bytes: 3 });
        assert_eq!(fs.read(Path::new("/d/a")).unwrap(), b"durable-t", "a torn write keeps part of the tail");
        // The old handle writes into the lost file, not the survivor.
        f.write_all_at(b"zombie", 0).unwrap();
        assert_eq!(fs.read(Path::new("/d/a")).unwrap(), b"durable-t");
        fs.rename(Path::new("/d/a"), Path::new("/d/b")).unwrap();
        assert_eq!(fs.list(Path::new("/d")).unwrap().into_iter().map(|e| e.0).collect::<Vec<_>>(), vec!["b"]);
        assert!(fs.open(Path::new("/e/x"), OpenMode::CreateTruncate).is_err(), "no such directory");
    }
}
