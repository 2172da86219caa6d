//! The bytes of an in-memory segment, held in chunks of at most [`CHUNK`] bytes (one batch
//! larger than that gets a chunk of its own size).
//!
//! One growing `Vec` would double its buffer as the segment grows toward `segment.bytes`
//! (1 GiB by default): each doubling copies everything appended so far while the partition is
//! locked, stalling produce and fetch on it for tens of milliseconds once a segment reaches
//! hundreds of megabytes. A chunk is allocated once with its final capacity and never moves,
//! so an append copies only its own bytes, and the memory a segment takes from the system is
//! about the bytes it holds (fresh memory is slow: a page fault and zeroing per page).
//!
//! Reads share the chunk instead of copying: the bytes below a chunk's length never change
//! again, so a read hands out a [`Bytes`] over them that keeps the chunk alive. A fetch used to
//! copy up to a megabyte per partition into a fresh buffer; on this project's VMs touching
//! fresh memory costs ~1.6 ms per MB, so the broker spent most of its time in page faults.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

/// The capacity of the largest chunks.
pub(crate) const CHUNK: usize = 1 << 20;
/// The capacity of a segment's first chunk.
const FIRST_CHUNK: usize = 16 << 10;

/// A buffer allocated once with its capacity, appended to by its one writer (the
/// [`ChunkedBytes`] holding it) and read through views of bytes already appended.
struct Chunk {
    ptr: NonNull<u8>,
    cap: usize,
    /// Bytes written; only the writer stores it, after writing them.
    len: AtomicUsize,
}

// SAFETY: the bytes below `len` are never written again, and the only writer (the owning
// `ChunkedBytes`, through `&mut self`) writes above `len` only; the allocation never moves.
unsafe impl Send for Chunk {}
// SAFETY: as above: readers read only below `len`, published with release ordering.
unsafe impl Sync for Chunk {}

impl Chunk {
    fn with_capacity(cap: usize) -> Self {
        let mut v = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(cap));
        let ptr = NonNull::new(v.as_mut_ptr()).unwrap_or(NonNull::dangling());
        Chunk { ptr, cap: v.capacity(), len: AtomicUsize::new(0) }
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Appends `bytes` if they fit. Only the owning [`ChunkedBytes`] calls this.
    fn push(&self, bytes: &[u8]) -> bool {
        let len = self.len.load(Ordering::Relaxed);
        if bytes.len() > self.cap - len {
            return false;
        }
        // SAFETY: `len + bytes.len() <= cap` keeps the copy inside the allocation, above the
        // bytes readers may see; there is one writer.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(len), bytes.len()) };
        self.len.store(len + bytes.len(), Ordering::Release);
        true
    }

    /// The bytes appended so far.
    fn bytes(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were written (acquire pairs with `push`'s release) and
        // never change again.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len()) }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if self.cap > 0 {
            // SAFETY: allocated by `Vec::<u8>::with_capacity` with this capacity; `u8` needs
            // no drop, so a length of 0 frees just the buffer.
            unsafe { drop(Vec::from_raw_parts(self.ptr.as_ptr(), 0, self.cap)) };
        }
    }
}

/// A shared range of a chunk: what a read hands out inside a [`Bytes`].
struct ChunkView {
    chunk: Arc<Chunk>,
    from: usize,
    to: usize,
}

impl AsRef<[u8]> for ChunkView {
    fn as_ref(&self) -> &[u8] {
        &self.chunk.bytes()[self.from..self.to]
    }
}

/// Append-only bytes in chunks.
#[derive(Default)]
pub(crate) struct ChunkedBytes {
    chunks: Vec<Arc<Chunk>>,
    /// Where each chunk starts.
    starts: Vec<usize>,
    /// Total bytes, and so the position the next append starts at.
    len: usize,
}

impl std::fmt::Debug for ChunkedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkedBytes").field("chunks", &self.chunks.len()).field("len", &self.len).finish()
    }
}

impl ChunkedBytes {
    /// Appends `bytes` (in the last chunk while it has room below [`CHUNK`]); they never span
    /// two chunks, so neither does a batch.
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        // Within the capacity it was given: never reallocated, so never copied again.
        if !self.chunks.last().is_some_and(|last| last.push(bytes)) {
            // Each chunk gets twice the capacity of the one before, from FIRST_CHUNK up to
            // CHUNK: a small partition stays small, a busy one appends into 1 MiB chunks.
            let next = self.chunks.last().map_or(FIRST_CHUNK, |l| (l.cap * 2).min(CHUNK));
            let chunk = Chunk::with_capacity(next.max(bytes.len()));
            let pushed = chunk.push(bytes);
            debug_assert!(pushed, "a fresh chunk has room for what it was sized for");
            self.starts.push(self.len);
            self.chunks.push(Arc::new(chunk));
        }
        self.len += bytes.len();
    }

    /// Every chunk's bytes as they are now, shared without a copy.
    pub(crate) fn chunks(&self) -> Vec<Bytes> {
        self.chunks
            .iter()
            .map(|c| Bytes::from_owner(ChunkView { chunk: Arc::clone(c), from: 0, to: c.len() }))
            .collect()
    }

    /// Total bytes appended.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The bytes in `pos..pos + len`, clamped to what was appended and to the end of the chunk
    /// holding `pos`, without copying: the reader gets whole batches, maybe fewer than asked.
    pub(crate) fn read_range(&self, pos: usize, len: usize) -> Bytes {
        let end = pos.saturating_add(len).min(self.len);
        if pos >= end {
            return Bytes::new();
        }
        // The last chunk starting at or before `pos`.
        let i = self.starts.partition_point(|&s| s <= pos) - 1;
        let (chunk, start) = (&self.chunks[i], self.starts[i]);
        let to = (end - start).min(chunk.len());
        Bytes::from_owner(ChunkView { chunk: Arc::clone(chunk), from: pos - start, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `pos..pos + len` back as a reader would: range after range, each up to the end
    /// of its chunk.
    fn read_all(c: &ChunkedBytes, pos: usize, len: usize) -> Vec<u8> {
        let end = pos.saturating_add(len).min(c.len());
        let mut out = Vec::new();
        let mut at = pos;
        while at < end {
            let piece = c.read_range(at, end - at);
            assert!(!piece.is_empty(), "a read inside the bytes returns something");
            out.extend_from_slice(&piece);
            at += piece.len();
        }
        out
    }

    #[test]
    fn should_read_back_any_range_across_chunk_boundaries() {
        let mut c = ChunkedBytes::default();
        let mut all = Vec::new();
        // Appends of varied sizes, some larger than a chunk.
        for (i, n) in [10usize, CHUNK - 20, 30, CHUNK + 5, 1, CHUNK / 2, CHUNK / 2, 7].into_iter().enumerate() {
            let piece: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
            c.extend_from_slice(&piece);
            all.extend_from_slice(&piece);
        }
        assert_eq!(c.len(), all.len());
        assert!(c.chunks.len() > 3, "several chunks: {}", c.chunks.len());
        assert!(c.chunks.iter().all(|ch| ch.len() <= CHUNK + 5), "no chunk grows past a chunk or one batch");
        let total = all.len();
        for (pos, len) in [
            (0, 10),
            (5, 20),
            (CHUNK - 15, 40),
            (0, total),
            (total - 3, 3),
            (total - 3, 100),
            (CHUNK, 2 * CHUNK),
            (total, 5),
            (total + 10, 5),
            (7, 0),
        ] {
            let want = &all[pos.min(total)..(pos + len).min(total)];
            assert_eq!(read_all(&c, pos, len), want, "range {pos}+{len}");
        }
    }

    #[test]
    fn should_stop_a_read_at_the_end_of_its_chunk_so_an_append_is_never_split() {
        let mut c = ChunkedBytes::default();
        c.extend_from_slice(&[1u8; 100]);
        c.extend_from_slice(&vec![2u8; FIRST_CHUNK]);
        // The second append did not fit the first chunk: it starts the second, whole.
        assert_eq!(c.chunks.len(), 2);
        assert_eq!(c.read_range(0, 1000)[..], [1u8; 100], "the first read ends with the first chunk");
        assert_eq!(c.read_range(100, usize::MAX)[..], vec![2u8; FIRST_CHUNK][..]);
        assert_eq!(c.read_range(150, 10)[..], [2u8; 10]);
    }

    #[test]
    fn should_keep_what_a_read_shared_while_appends_go_on_and_the_log_is_dropped() {
        let mut c = ChunkedBytes::default();
        c.extend_from_slice(b"abc");
        let shared = c.read_range(0, 3);
        // Appends land in the same chunk, after the shared bytes.
        for _ in 0..1000 {
            c.extend_from_slice(b"xyz");
        }
        assert_eq!(c.chunks.len(), 1);
        assert_eq!(&shared[..], b"abc");
        assert_eq!(&c.read_range(3, 3)[..], b"xyz");
        let tail = c.read_range(2998, 10);
        drop(c);
        assert_eq!(&shared[..], b"abc", "a read outlives the segment it came from");
        assert_eq!(&tail[..], b"yzxyz");
    }

    #[test]
    fn should_never_move_a_full_chunk() {
        let mut c = ChunkedBytes::default();
        c.extend_from_slice(&vec![1u8; CHUNK - 1]);
        let first = c.chunks[0].ptr;
        for _ in 0..100 {
            c.extend_from_slice(&[2u8; 1000]);
        }
        assert_eq!(c.chunks[0].ptr, first, "appends after the first chunk filled left it in place");
        assert_eq!(read_all(&c, CHUNK - 2, 3), [1, 2, 2]);
    }

    #[test]
    fn should_fill_each_chunk_in_place_with_capacities_doubling_to_a_chunk() {
        let mut c = ChunkedBytes::default();
        for i in 0..20_000u32 {
            c.extend_from_slice(&[i as u8; 300]);
        }
        let caps: Vec<usize> = c.chunks.iter().map(|ch| ch.cap).collect();
        assert_eq!(caps[..7], [16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, CHUNK]);
        assert!(caps[7..].iter().all(|&cap| cap == CHUNK), "{caps:?}");
        assert!(c.chunks.iter().all(|ch| ch.len() % 300 == 0), "no append is split across chunks");
        assert_eq!(c.len(), 20_000 * 300);
        let starts: Vec<usize> =
            c.chunks.iter().scan(0, |at, ch| Some(std::mem::replace(at, *at + ch.len()))).collect();
        assert_eq!(c.starts, starts);
    }
}
