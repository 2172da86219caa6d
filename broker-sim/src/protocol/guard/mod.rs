//! Pre-decode request guard.
//!
//! kafka-protocol's array decoders call `Vec::with_capacity(n)` with the raw
//! length read from the wire, so a frame that claims 2^31 elements makes the
//! process abort on allocation before the decoder notices that the bytes are
//! missing.  Its string and bytes decoders likewise allocate `vec![0; n]` for
//! some target types.  This module walks a request body with a static schema
//! ([`schema`], generated from kafka-protocol's own decode functions by
//! `scripts/gen_guard_schema.py`) and checks every length prefix against the
//! bytes that remain, *before* the body is handed to kafka-protocol.
//!
//! The walker reads exactly what kafka-protocol reads, in the same order and
//! with the same varint semantics, so every length kafka-protocol would
//! allocate from has been bounded by the time it decodes:
//!
//! * an array of `n` elements must satisfy `n * min_element_size <= remaining`
//!   (the minimum wire size of an element is computed from the schema and is at
//!   least one byte, so this is never weaker than `n <= remaining`);
//! * a string or bytes length must be `<= remaining`;
//! * a null length (`-1`, or compact `0`) is accepted everywhere; kafka-protocol
//!   itself rejects null where it is not allowed;
//! * an unsigned varint longer than five bytes is rejected;
//! * in a tag section, each field's declared size must fit in what remains; a
//!   tag that the schema knows at this version is walked inside exactly that
//!   window and must fill it exactly (kafka-protocol decodes known tagged fields
//!   straight from the buffer, ignoring the declared size, so a mismatch would
//!   make its view of the following bytes differ from ours); unknown tags are
//!   skipped.
//!
//! Bytes after the body are not rejected: kafka-protocol ignores them too.
//!
//! The walker never panics, never indexes out of bounds, never allocates and
//! recurses no deeper than the (static) schema nesting.

mod schema;
#[cfg(test)]
mod tests;

use std::fmt;

use schema::{Kind, StructDef};

/// Why a request body was rejected before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GuardError {
    /// The body ended inside `field` (a fixed-size value or a length prefix).
    Truncated {
        /// `Struct.field` that could not be read completely.
        field: &'static str,
    },
    /// `field` claims more elements or bytes than can follow.
    ///
    /// For arrays `claimed` is the element count; for strings, bytes and
    /// tagged fields it is the byte length.  A varint longer than five bytes
    /// is reported with `claimed == u64::MAX`.
    LengthTooLarge {
        /// `Struct.field` whose length prefix is too large.
        field: &'static str,
        /// The length read from the wire.
        claimed: u64,
        /// The bytes left in the body (or tagged-field window) after the prefix.
        remaining: usize,
    },
    /// `field` has a negative length other than the null marker `-1`.
    NegativeLength {
        /// `Struct.field` with the negative length.
        field: &'static str,
    },
    /// The API key is not covered by the guard, or the version is one that
    /// kafka-protocol cannot decode for this API.
    UnknownApi {
        /// The API key of the request.
        api_key: i16,
    },
    /// A known tagged field did not fill the size its header declared;
    /// `count` bytes were left over inside the field.
    TrailingBytes {
        /// The number of bytes left over.
        count: usize,
    },
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardError::Truncated { field } => {
                write!(f, "request body ends inside field {field}")
            }
            GuardError::LengthTooLarge { field, claimed, remaining } if *claimed == u64::MAX => {
                write!(f, "field {field} has a varint longer than five bytes ({remaining} bytes remaining)")
            }
            GuardError::LengthTooLarge { field, claimed, remaining } => {
                write!(f, "field {field} claims length {claimed} but only {remaining} bytes remain")
            }
            GuardError::NegativeLength { field } => {
                write!(f, "field {field} has a negative length")
            }
            GuardError::UnknownApi { api_key } => {
                write!(f, "API key {api_key} at this version is not covered by the request guard")
            }
            GuardError::TrailingBytes { count } => {
                write!(f, "{count} byte(s) left over inside a tagged field's declared size")
            }
        }
    }
}

impl std::error::Error for GuardError {}

/// Checks a request body (the bytes after the request header) of `api_key` at `version`.
///
/// Returns `Ok(())` when every length prefix kafka-protocol will read is
/// bounded by the bytes that follow it; the body may still fail to decode for
/// other reasons (invalid UTF-8, null in a non-nullable field, ...).
pub(crate) fn check_request_body(api_key: i16, version: i16, body: &[u8]) -> Result<(), GuardError> {
    walk_request(api_key, version, body, &mut NoTrace).map(|_| ())
}

/// Observer of the length prefixes the walker reads; lets the tests find them.
trait Trace {
    /// Called after a length prefix of `field` was read at `offset` (`width` bytes).
    fn length_prefix(&mut self, field: &'static str, offset: usize, width: usize, is_array: bool);
}

/// The production observer: ignores everything.
struct NoTrace;

impl Trace for NoTrace {
    #[inline]
    fn length_prefix(&mut self, _: &'static str, _: usize, _: usize, _: bool) {}
}

/// Walks a whole request body; returns how many bytes the body occupies.
fn walk_request<T: Trace>(api_key: i16, version: i16, body: &[u8], trace: &mut T) -> Result<usize, GuardError> {
    let api = schema::lookup(api_key)
        .filter(|api| api.min_version <= version && version <= api.max_version)
        .ok_or(GuardError::UnknownApi { api_key })?;
    let mut cur = Cursor { buf: body, pos: 0, end: body.len() };
    walk_struct(&mut cur, api.body, version, trace)?;
    Ok(cur.pos)
}

/// A read position inside `buf[..end]`; offsets stay relative to the body start.
struct Cursor<'a> {
    /// The whole body.
    buf: &'a [u8],
    /// The next byte to read.
    pos: usize,
    /// One past the last readable byte (the end of a tagged-field window).
    end: usize,
}

impl Cursor<'_> {
    /// Bytes left before `end`.
    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    /// Takes the next `n` bytes, or reports `field` as truncated.
    fn take(&mut self, n: usize, field: &'static str) -> Result<&[u8], GuardError> {
        if n > self.remaining() {
            return Err(GuardError::Truncated { field });
        }
        let start = self.pos;
        self.pos += n;
        self.buf.get(start..self.pos).ok_or(GuardError::Truncated { field })
    }

    /// Reads one byte.
    fn u8(&mut self, field: &'static str) -> Result<u8, GuardError> {
        match self.take(1, field)? {
            [b] => Ok(*b),
            _ => Err(GuardError::Truncated { field }),
        }
    }

    /// Reads a big-endian `i16`.
    fn i16(&mut self, field: &'static str) -> Result<i16, GuardError> {
        match self.take(2, field)? {
            [a, b] => Ok(i16::from_be_bytes([*a, *b])),
            _ => Err(GuardError::Truncated { field }),
        }
    }

    /// Reads a big-endian `i32`.
    fn i32(&mut self, field: &'static str) -> Result<i32, GuardError> {
        match self.take(4, field)? {
            [a, b, c, d] => Ok(i32::from_be_bytes([*a, *b, *c, *d])),
            _ => Err(GuardError::Truncated { field }),
        }
    }

    /// Reads an unsigned varint exactly as kafka-protocol does (bits beyond 32
    /// are dropped), but rejects a fifth byte that has the continuation bit.
    fn uvarint(&mut self, field: &'static str) -> Result<u32, GuardError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.u8(field)?;
            value |= u32::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(GuardError::LengthTooLarge { field, claimed: u64::MAX, remaining: self.remaining() })
    }
}

/// Walks one struct (the body or a nested struct) at `version`.
fn walk_struct<T: Trace>(
    cur: &mut Cursor<'_>,
    def: &'static StructDef,
    version: i16,
    trace: &mut T,
) -> Result<(), GuardError> {
    let flexible = version >= def.flexible_from;
    for field in def.fields {
        if field.tag.is_none() && field.min <= version && version <= field.max {
            walk_kind(cur, &field.kind, field.name, version, flexible, trace)?;
        }
    }
    if flexible {
        walk_tags(cur, def, version, trace)?;
    }
    Ok(())
}

/// Walks the tag section of `def`.
fn walk_tags<T: Trace>(
    cur: &mut Cursor<'_>,
    def: &'static StructDef,
    version: i16,
    trace: &mut T,
) -> Result<(), GuardError> {
    let count = cur.uvarint(def.tagged)?;
    // Every tagged field takes at least two bytes (tag and size varints).
    if u64::from(count) * 2 > cur.remaining() as u64 {
        return Err(GuardError::LengthTooLarge {
            field: def.tagged,
            claimed: u64::from(count),
            remaining: cur.remaining(),
        });
    }
    for _ in 0..count {
        let tag = cur.uvarint(def.tagged)?;
        let size = cur.uvarint(def.tagged)? as usize;
        let known = def.fields.iter().find(|f| f.tag == Some(tag) && f.min <= version && version <= f.max);
        let name = known.map_or(def.tagged, |f| f.name);
        if size > cur.remaining() {
            return Err(GuardError::LengthTooLarge { field: name, claimed: size as u64, remaining: cur.remaining() });
        }
        match known {
            Some(field) => {
                let mut window = Cursor { buf: cur.buf, pos: cur.pos, end: cur.pos + size };
                walk_kind(&mut window, &field.kind, field.name, version, true, trace)?;
                if window.remaining() != 0 {
                    return Err(GuardError::TrailingBytes { count: window.remaining() });
                }
                cur.pos = window.pos;
            }
            None => {
                cur.take(size, name)?;
            }
        }
    }
    Ok(())
}

/// Walks one value of `kind`; `flexible` selects the compact encodings.
fn walk_kind<T: Trace>(
    cur: &mut Cursor<'_>,
    kind: &'static Kind,
    name: &'static str,
    version: i16,
    flexible: bool,
    trace: &mut T,
) -> Result<(), GuardError> {
    if let Some(size) = fixed_size(kind) {
        cur.take(size, name)?;
        return Ok(());
    }
    match kind {
        Kind::UVarInt => {
            cur.uvarint(name)?;
        }
        Kind::String | Kind::Bytes => {
            if let Some(len) = read_length(cur, kind, name, flexible, 1, trace)? {
                cur.take(len, name)?;
            }
        }
        Kind::Array(elem) => {
            let min = min_size(elem, version, flexible);
            if let Some(n) = read_length(cur, kind, name, flexible, min, trace)? {
                match fixed_size(elem) {
                    // n * size <= remaining was checked by read_length.
                    Some(size) => {
                        cur.take(n.saturating_mul(size), name)?;
                    }
                    None => {
                        for _ in 0..n {
                            walk_kind(cur, elem, name, version, flexible, trace)?;
                        }
                    }
                }
            }
        }
        Kind::StructArray(def) => {
            let min = struct_min_size(def, version);
            if let Some(n) = read_length(cur, kind, name, flexible, min, trace)? {
                for _ in 0..n {
                    walk_struct(cur, def, version, trace)?;
                }
            }
        }
        Kind::Struct(def) => walk_struct(cur, def, version, trace)?,
        Kind::OptionStruct(def) => {
            // kafka-protocol reads the struct only when the marker is exactly 1.
            let present = cur.u8(name)? == 1;
            if present {
                walk_struct(cur, def, version, trace)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Reads the length prefix of a string, bytes or array value and bounds it.
///
/// Returns `None` for null, otherwise the element count (arrays) or byte
/// length; `count * min_elem` is guaranteed to be at most the bytes remaining.
fn read_length<T: Trace>(
    cur: &mut Cursor<'_>,
    kind: &Kind,
    name: &'static str,
    flexible: bool,
    min_elem: usize,
    trace: &mut T,
) -> Result<Option<usize>, GuardError> {
    let offset = cur.pos;
    let len: Option<u64> = if flexible {
        match cur.uvarint(name)? {
            0 => None,
            n => Some(u64::from(n - 1)),
        }
    } else {
        let raw = if matches!(kind, Kind::String) { i32::from(cur.i16(name)?) } else { cur.i32(name)? };
        match raw {
            -1 => None,
            n if n < -1 => return Err(GuardError::NegativeLength { field: name }),
            n => Some(u64::from(n.unsigned_abs())),
        }
    };
    let is_array = matches!(kind, Kind::Array(_) | Kind::StructArray(_));
    trace.length_prefix(name, offset, cur.pos - offset, is_array);
    let Some(len) = len else {
        return Ok(None);
    };
    let remaining = cur.remaining();
    if len.saturating_mul(min_elem.max(1) as u64) > remaining as u64 {
        return Err(GuardError::LengthTooLarge { field: name, claimed: len, remaining });
    }
    // len <= remaining <= usize::MAX here.
    usize::try_from(len).map(Some).map_err(|_| GuardError::LengthTooLarge { field: name, claimed: len, remaining })
}

/// The wire size of a fixed-size kind.
fn fixed_size(kind: &Kind) -> Option<usize> {
    match kind {
        Kind::Bool | Kind::I8 => Some(1),
        Kind::I16 | Kind::U16 => Some(2),
        Kind::I32 | Kind::U32 => Some(4),
        Kind::I64 | Kind::F64 => Some(8),
        Kind::Uuid => Some(16),
        _ => None,
    }
}

/// The fewest bytes one value of `kind` can take at `version`.
fn min_size(kind: &Kind, version: i16, flexible: bool) -> usize {
    if let Some(size) = fixed_size(kind) {
        return size;
    }
    match kind {
        Kind::String if !flexible => 2,
        Kind::Bytes | Kind::Array(_) | Kind::StructArray(_) if !flexible => 4,
        Kind::Struct(def) => struct_min_size(def, version),
        // Compact lengths and varints take at least one byte; so does the
        // presence marker of an optional struct.
        _ => 1,
    }
}

/// The fewest bytes one `def` struct can take at `version` (tagged fields are optional).
fn struct_min_size(def: &StructDef, version: i16) -> usize {
    let flexible = version >= def.flexible_from;
    let fields: usize = def
        .fields
        .iter()
        .filter(|f| f.tag.is_none() && f.min <= version && version <= f.max)
        .map(|f| min_size(&f.kind, version, flexible))
        .sum();
    fields + usize::from(flexible)
}
