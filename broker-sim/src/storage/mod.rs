//! The file system under the broker, behind a trait: the real one ([`RealFs`]) or a simulated
//! disk ([`SimFs`]) that keeps everything in memory and, on a simulated crash, loses what was
//! written since each file's last sync.
//!
//! Everything broker-sim persists goes through [`Fs`]: segments and their indexes, the
//! checkpoints beside them (log start, leader epochs, cleaner), topic metadata, dynamic broker
//! configs, the producer-id block and the cluster id. A cluster in memory has no `Fs` at all.

mod real;
mod sim;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) use real::RealFs;
pub use sim::SimFs;

use crate::error::{Error, Result};

/// How [`Fs::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, for reading and writing.
    Existing,
    /// Created if missing, emptied if present.
    CreateTruncate,
}

/// A file system.
pub trait Fs: Send + Sync + fmt::Debug {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of a directory's entries with their modification times (ms since the epoch).
    fn list(&self, dir: &Path) -> io::Result<Vec<(String, i64)>>;
    /// Opens a file for positioned reads and writes.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>>;
    /// A whole (small) file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Renames a file, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Deletes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Whether a file exists.
    fn exists(&self, path: &Path) -> bool;
    /// Makes a directory's entries (creations, renames, deletions) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// An open file.
#[allow(clippy::len_without_is_empty)]
pub trait FsFile: Send + Sync + fmt::Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Reads exactly `buf.len()` bytes at `pos`.
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
    /// Writes all of `buf` at `pos`.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's contents durable.
    fn sync(&self) -> io::Result<()>;
}

/// A directory on a file system.
#[derive(Clone)]
pub(crate) struct Dir {
    /// The file system.
    pub(crate) fs: Arc<dyn Fs>,
    /// The directory's path.
    pub(crate) path: PathBuf,
}

impl fmt::Debug for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

impl Dir {
    /// `path` on `fs`.
    pub(crate) fn new(fs: Arc<dyn Fs>, path: impl Into<PathBuf>) -> Self {
        Dir { fs, path: path.into() }
    }

    /// `path` on the real file system (tests).
    #[cfg(test)]
    pub(crate) fn real(path: impl Into<PathBuf>) -> Self {
        Dir::new(Arc::new(RealFs), path)
    }

    /// A subdirectory (not created).
    pub(crate) fn sub(&self, name: impl AsRef<Path>) -> Dir {
        Dir { fs: Arc::clone(&self.fs), path: self.path.join(name) }
    }

    /// The path of `name` in this directory.
    pub(crate) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// Creates the directory (and its parents).
    pub(crate) fn create(&self) -> Result<()> {
        self.fs.create_dir_all(&self.path).map_err(|e| Error::io("creating a directory", e))
    }

    /// Opens `name` in this directory.
    pub(crate) fn open(&self, name: &str, mode: OpenMode, what: &'static str) -> Result<Arc<dyn FsFile>> {
        self.fs.open(&self.join(name), mode).map_err(|e| Error::io(what, e))
    }

    /// The entries of the directory with their modification times.
    pub(crate) fn list(&self) -> Result<Vec<(String, i64)>> {
        self.fs.list(&self.path).map_err(|e| Error::io("listing a directory", e))
    }

    /// `name` as text, or `None` if it does not exist or cannot be read.
    pub(crate) fn read_string(&self, name: &str) -> Option<String> {
        self.fs.read(&self.join(name)).ok().and_then(|b| String::from_utf8(b).ok())
    }

    /// Renames `from` to `to` within the directory.
    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.fs.rename(&self.join(from), &self.join(to)).map_err(|e| Error::io("renaming a file", e))
    }

    /// Deletes `name`, ignoring a missing file.
    pub(crate) fn remove(&self, name: &str) {
        let _ = self.fs.remove_file(&self.join(name));
    }

    /// Whether `name` exists.
    pub(crate) fn exists(&self, name: &str) -> bool {
        self.fs.exists(&self.join(name))
    }

    /// Makes the directory's entries durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.fs.sync_dir(&self.path).map_err(|e| Error::io("syncing a directory", e))
    }

    /// Writes a small file atomically: a temporary file, synced, renamed over `name`, and the
    /// directory synced.
    pub(crate) fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let tmp = format!("{name}.tmp");
        let f = self.open(&tmp, OpenMode::CreateTruncate, "writing a checkpoint")?;
        f.write_all_at(bytes, 0).map_err(|e| Error::io("writing a checkpoint", e))?;
        f.sync().map_err(|e| Error::io("syncing a checkpoint", e))?;
        self.rename(&tmp, name)?;
        self.sync()
    }
}
