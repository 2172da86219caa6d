//! Serdes: how typed keys and values become bytes in a store and its changelog.
//!
//! Stores hold raw bytes; a [`Serde`] converts at the edge. bincode 2 (compact, for Rust-only
//! state) and JSON (readable by other tools) are provided; any type implementing [`Serde`]
//! plugs in. bincode stays behind this trait so another format can replace it (bincode 3 on
//! crates.io is a tombstone and the crate is unmaintained).

use std::marker::PhantomData;

/// Converts `T` to and from bytes.
pub trait Serde<T>: Send + Sync {
    /// Appends the encoding of `value` to `out`.
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), String>;
    /// Decodes a value.
    fn deserialize(&self, bytes: &[u8]) -> Result<T, String>;
    /// The encoding of `value`, taking it: a serde whose encoding is the value's own bytes
    /// gives them back without copying them.
    fn serialize_owned(&self, value: T) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        self.serialize(&value, &mut out)?;
        Ok(out)
    }
}

impl<T, S: Serde<T> + ?Sized> Serde<T> for std::sync::Arc<S> {
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        (**self).serialize(value, out)
    }
    fn serialize_owned(&self, value: T) -> Result<Vec<u8>, String> {
        (**self).serialize_owned(value)
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, String> {
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
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, String> {
        let (v, used) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map_err(|e| e.to_string())?;
        if used != bytes.len() {
            return Err(format!("{} trailing bytes after the value", bytes.len() - used));
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
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        serde_json::to_writer(out, value).map_err(|e| e.to_string())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// Raw bytes, unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct BytesSerde;

impl Serde<Vec<u8>> for BytesSerde {
    fn serialize(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(value);
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        Ok(bytes.to_vec())
    }
    fn serialize_owned(&self, value: Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(value)
    }
}

/// UTF-8 strings, unchanged (byte order is string order, so ranges work as expected).
#[derive(Debug, Default, Clone, Copy)]
pub struct StringSerde;

impl Serde<String> for StringSerde {
    fn serialize(&self, value: &String, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<String, String> {
        String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
    }
    fn serialize_owned(&self, value: String) -> Result<Vec<u8>, String> {
        Ok(value.into_bytes())
    }
}

/// `u64` as 8 big-endian bytes: byte order is numeric order, so ranges work.
#[derive(Debug, Default, Clone, Copy)]
pub struct U64Serde;

impl Serde<u64> for U64Serde {
    fn serialize(&self, value: &u64, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(&value.to_be_bytes());
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<u64, String> {
        let b: [u8; 8] = bytes.try_into().map_err(|_| format!("a u64 needs 8 bytes, got {}", bytes.len()))?;
        Ok(u64::from_be_bytes(b))
    }
}

/// `i64` as 8 big-endian bytes with the sign bit flipped: byte order is numeric order.
#[derive(Debug, Default, Clone, Copy)]
pub struct I64Serde;

impl Serde<i64> for I64Serde {
    fn serialize(&self, value: &i64, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(&((*value as u64) ^ (1 << 63)).to_be_bytes());
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<i64, String> {
        let b: [u8; 8] = bytes.try_into().map_err(|_| format!("an i64 needs 8 bytes, got {}", bytes.len()))?;
        Ok((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
    }
}
