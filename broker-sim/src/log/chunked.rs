//! The bytes of an in-memory segment, held in chunks of at most [`CHUNK`] bytes (one batch
//! larger than that gets a chunk of its own size).
//!
//! One growing `Vec` would double its buffer as the segment grows toward `segment.bytes`
//! (1 GiB by default): each doubling copies everything appended so far while the partition is
//! locked, stalling produce and fetch on it for tens of milliseconds once a segment reaches
//! hundreds of megabytes. A chunk is allocated once with its final capacity and never moves,
//! so an append copies only its own bytes, and the memory a segment takes from the system is
//! about the bytes it holds (fresh memory is slow: a page fault and zeroing per page).

use bytes::{Bytes, BytesMut};

/// The capacity of the largest chunks.
pub(crate) const CHUNK: usize = 1 << 20;
/// The capacity of a segment's first chunk.
const FIRST_CHUNK: usize = 16 << 10;

/// Append-only bytes in chunks.
#[derive(Debug, Default)]
pub(crate) struct ChunkedBytes {
    chunks: Vec<Vec<u8>>,
    /// Total bytes, and so the position the next append starts at.
    len: usize,
}

impl ChunkedBytes {
    /// Appends `bytes` (in the last chunk while it has room below [`CHUNK`]).
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match self.chunks.last_mut() {
            // Within the capacity it was given: never reallocated, so never copied again.
            Some(last) if last.len() + bytes.len() <= last.capacity() => last.extend_from_slice(bytes),
            last => {
                // Each chunk gets twice the capacity of the one before, from FIRST_CHUNK up to
                // CHUNK: a small partition stays small, a busy one appends into 1 MiB chunks.
                let next = last.map_or(FIRST_CHUNK, |l| (l.capacity() * 2).min(CHUNK));
                let mut chunk = Vec::with_capacity(next.max(bytes.len()));
                chunk.extend_from_slice(bytes);
                self.chunks.push(chunk);
            }
        }
        self.len += bytes.len();
    }

    /// Total bytes appended.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A copy of the bytes in `pos..pos + len`, clamped to what was appended.
    pub(crate) fn copy_range(&self, pos: usize, len: usize) -> Bytes {
        let end = pos.saturating_add(len).min(self.len);
        if pos >= end {
            return Bytes::new();
        }
        let mut out: Option<BytesMut> = None;
        let mut start = 0usize;
        for chunk in &self.chunks {
            let (from, to) = (start, start + chunk.len());
            start = to;
            if to <= pos {
                continue;
            }
            if from >= end {
                break;
            }
            let piece = &chunk[pos.max(from) - from..end.min(to) - from];
            if out.is_none() && end <= to {
                // The whole range is in this chunk: the common case, one copy.
                return Bytes::copy_from_slice(piece);
            }
            out.get_or_insert_with(|| BytesMut::with_capacity(end - pos)).extend_from_slice(piece);
        }
        out.map_or_else(Bytes::new, BytesMut::freeze)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(&c.copy_range(pos, len)[..], want, "range {pos}+{len}");
        }
    }

    #[test]
    fn should_never_move_a_full_chunk() {
        let mut c = ChunkedBytes::default();
        c.extend_from_slice(&vec![1u8; CHUNK - 1]);
        let first = c.chunks[0].as_ptr();
        for _ in 0..100 {
            c.extend_from_slice(&[2u8; 1000]);
        }
        assert_eq!(c.chunks[0].as_ptr(), first, "appends after the first chunk filled left it in place");
        assert_eq!(c.copy_range(CHUNK - 2, 3)[..], [1, 2, 2]);
    }

    #[test]
    fn should_fill_each_chunk_in_place_with_capacities_doubling_to_a_chunk() {
        let mut c = ChunkedBytes::default();
        let mut last = (0usize, std::ptr::null::<u8>());
        for i in 0..20_000u32 {
            c.extend_from_slice(&[i as u8; 300]);
            let now = (c.chunks.len(), c.chunks.last().expect("a chunk").as_ptr());
            if now.0 == last.0 {
                assert_eq!(now.1, last.1, "append {i} moved the chunk it appended to");
            }
            last = now;
        }
        let caps: Vec<usize> = c.chunks.iter().map(Vec::capacity).collect();
        assert_eq!(caps[..7], [16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, CHUNK]);
        assert!(caps[7..].iter().all(|&cap| cap == CHUNK), "{caps:?}");
        assert_eq!(c.len(), 20_000 * 300);
    }
}
