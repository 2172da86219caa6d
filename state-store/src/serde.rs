//! Serdes: how typed keys and values become bytes in a store and its changelog.
//!
//! Stores hold raw bytes; a [`Serde`] converts at the edge. bincode 2 (compact, for Rust-only
//! state) and JSON (readable by other tools) are provided; any type implementing [`Serde`]
//! plugs in. bincode stays behind this trait so another format can replace it (bincode 3 on
//! crates.io is a tombstone and the crate is unmaintained).

use std::marker::PhantomData;

/// Why a value did not serialize or deserialize: what was wrong, and the underlying error of
/// the format library when there is one ([`std::error::Error::source`]).
///
/// ```
/// use moldau_state_store::{Serde, SerdeError, U64Serde};
///
/// let err: SerdeError = U64Serde.deserialize(b"abc").unwrap_err();
/// assert_eq!(err.to_string(), "a u64 needs 8 bytes, got 3");
/// ```
#[derive(Debug)]
pub struct SerdeError(Box<SerdeErrorInner>);

/// Boxed, so that errors holding a [`SerdeError`] stay small.
#[derive(Debug)]
struct SerdeErrorInner {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SerdeError {
    /// An error that says `message`.
    pub fn new(message: impl Into<String>) -> Self {
        SerdeError(Box::new(SerdeErrorInner { message: message.into(), source: None }))
    }

    /// An error caused by `source` (a format library's error), shown after `message`.
    pub fn with_source(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        SerdeError(Box::new(SerdeErrorInner { message: message.into(), source: Some(source.into()) }))
    }

    /// What was wrong, without the source.
    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl std::fmt::Display for SerdeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0.source {
            Some(source) if self.0.message.is_empty() => write!(f, "{source}"),
            Some(source) => write!(f, "{}: {source}", self.0.message),
            None => f.write_str(&self.0.message),
        }
    }
}

impl std::error::Error for SerdeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<String> for SerdeError {
    fn from(message: String) -> Self {
        SerdeError::new(message)
    }
}

impl From<&str> for SerdeError {
    fn from(message: &str) -> Self {
        SerdeError::new(message)
    }
}

/// Converts `T` to and from bytes.
pub trait Serde<T>: Send + Sync {
    /// Appends the encoding of `value` to `out`.
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError>;
    /// Decodes a value.
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError>;
    /// The encoding of `value`, taking it: a serde whose encoding is the value's own bytes
    /// gives them back without copying them.
    fn serialize_owned(&self, value: T) -> Result<Vec<u8>, SerdeError> {
        let mut out = Vec::new();
        self.serialize(&value, &mut out)?;
        Ok(out)
    }
}

impl<T, S: Serde<T> + ?Sized> Serde<T> for std::sync::Arc<S> {
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        (**self).serialize(value, out)
    }
    fn serialize_owned(&self, value: T) -> Result<Vec<u8>, SerdeError> {
        (**self).serialize_owned(value)
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        (**self).deserialize(bytes)
    }
}

/// bincode 2 (standard configuration) through serde.
#[derive(Debug)]
pub struct BincodeSerde<T>(PhantomData<fn() -> T>);

impl<T> Default for BincodeSerde<T> {
    fn default() -> Self {
        BincodeSerde(PhantomData)
    }
}

impl<T: serde::Serialize + serde::de::DeserializeOwned> Serde<T> for BincodeSerde<T> {
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
            .map(|_| ())
            .map_err(|e| SerdeError::with_source("bincode", e))
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        let (v, used) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map_err(|e| SerdeError::with_source("bincode", e))?;
        if used != bytes.len() {
            return Err(format!("{} trailing bytes after the value", bytes.len() - used).into());
        }
        Ok(v)
    }
}

/// JSON through serde_json.
#[derive(Debug)]
pub struct JsonSerde<T>(PhantomData<fn() -> T>);

impl<T> Default for JsonSerde<T> {
    fn default() -> Self {
        JsonSerde(PhantomData)
    }
}

impl<T: serde::Serialize + serde::de::DeserializeOwned> Serde<T> for JsonSerde<T> {
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        serde_json::to_writer(out, value).map_err(|e| SerdeError::with_source("JSON", e))
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        serde_json::from_slice(bytes).map_err(|e| SerdeError::with_source("JSON", e))
    }
}

/// Raw bytes, unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct BytesSerde;

impl Serde<Vec<u8>> for BytesSerde {
    fn serialize(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value);
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, SerdeError> {
        Ok(bytes.to_vec())
    }
    fn serialize_owned(&self, value: Vec<u8>) -> Result<Vec<u8>, SerdeError> {
        Ok(value)
    }
}

/// UTF-8 strings, unchanged (byte order is string order, so ranges work as expected).
#[derive(Debug, Default, Clone, Copy)]
pub struct StringSerde;

impl Serde<String> for StringSerde {
    fn serialize(&self, value: &String, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<String, SerdeError> {
        String::from_utf8(bytes.to_vec()).map_err(|e| SerdeError::with_source("not UTF-8", e))
    }
    fn serialize_owned(&self, value: String) -> Result<Vec<u8>, SerdeError> {
        Ok(value.into_bytes())
    }
}

/// `u64` as 8 big-endian bytes: byte order is numeric order, so ranges work.
#[derive(Debug, Default, Clone, Copy)]
pub struct U64Serde;

impl Serde<u64> for U64Serde {
    fn serialize(&self, value: &u64, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(&value.to_be_bytes());
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<u64, SerdeError> {
        let b: [u8; 8] =
            bytes.try_into().map_err(|_| SerdeError::new(format!("a u64 needs 8 bytes, got {}", bytes.len())))?;
        Ok(u64::from_be_bytes(b))
    }
}

/// `i64` as 8 big-endian bytes with the sign bit flipped: byte order is numeric order.
#[derive(Debug, Default, Clone, Copy)]
pub struct I64Serde;

impl Serde<i64> for I64Serde {
    fn serialize(&self, value: &i64, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(&((*value as u64) ^ (1 << 63)).to_be_bytes());
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<i64, SerdeError> {
        let b: [u8; 8] =
            bytes.try_into().map_err(|_| SerdeError::new(format!("an i64 needs 8 bytes, got {}", bytes.len())))?;
        Ok((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
    }
}
