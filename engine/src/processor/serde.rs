//! How sources and sinks turn keys and values into Kafka bytes, where `None` is a null key or
//! value (a tombstone). Store serdes from `moldau-state-store` plug in through [`Required`] and
//! [`Nullable`].

use std::sync::Arc;

use moldau_state_store::{Serde, SerdeError};

/// Converts `T` to and from a Kafka key or value (`None`: null).
pub trait RecordSerde<T>: Send + Sync {
    /// The bytes of `value`, or `None` for null.
    fn serialize(&self, value: &T) -> Result<Option<Vec<u8>>, SerdeError>;
    /// The value of these bytes (`None`: null).
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<T, SerdeError>;
    /// The bytes of `value`, taking it (a sink owns its records): bytes and strings are
    /// handed over without a copy.
    fn serialize_owned(&self, value: T) -> Result<Option<Vec<u8>>, SerdeError> {
        self.serialize(&value)
    }
}

/// A serde for values that are never null: null fails to deserialize.
#[derive(Debug, Clone, Copy, Default)]
pub struct Required<S>(pub S);

impl<T, S: Serde<T>> RecordSerde<T> for Required<S> {
    fn serialize(&self, value: &T) -> Result<Option<Vec<u8>>, SerdeError> {
        let mut out = Vec::new();
        self.0.serialize(value, &mut out)?;
        Ok(Some(out))
    }
    fn serialize_owned(&self, value: T) -> Result<Option<Vec<u8>>, SerdeError> {
        self.0.serialize_owned(value).map(Some)
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<T, SerdeError> {
        match bytes {
            Some(b) => self.0.deserialize(b),
            None => Err(SerdeError::new("null where a value is required")),
        }
    }
}

/// A serde for `Option<T>`: `None` is null (a tombstone).
#[derive(Debug, Clone, Copy, Default)]
pub struct Nullable<S>(pub S);

impl<T, S: Serde<T>> RecordSerde<Option<T>> for Nullable<S> {
    fn serialize(&self, value: &Option<T>) -> Result<Option<Vec<u8>>, SerdeError> {
        match value {
            Some(v) => {
                let mut out = Vec::new();
                self.0.serialize(v, &mut out)?;
                Ok(Some(out))
            }
            None => Ok(None),
        }
    }
    fn serialize_owned(&self, value: Option<T>) -> Result<Option<Vec<u8>>, SerdeError> {
        value.map(|v| self.0.serialize_owned(v)).transpose()
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Option<T>, SerdeError> {
        bytes.map(|b| self.0.deserialize(b)).transpose()
    }
}

/// Ignores keys: serializes `()` as null and reads any key as `()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitSerde;

impl RecordSerde<()> for UnitSerde {
    fn serialize(&self, _: &()) -> Result<Option<Vec<u8>>, SerdeError> {
        Ok(None)
    }
    fn deserialize(&self, _: Option<&[u8]>) -> Result<(), SerdeError> {
        Ok(())
    }
}

/// A shared record serde.
pub type SharedSerde<T> = Arc<dyn RecordSerde<T>>;

/// Shares a store serde for values that are never null.
pub fn required<T, S: Serde<T> + 'static>(serde: S) -> SharedSerde<T> {
    Arc::new(Required(serde))
}

/// Shares a store serde for nullable values.
pub fn nullable<T, S: Serde<T> + 'static>(serde: S) -> SharedSerde<Option<T>> {
    Arc::new(Nullable(serde))
}

#[cfg(test)]
mod tests {
    use moldau_state_store::{BytesSerde, StringSerde, U64Serde};

    use super::*;

    #[test]
    fn should_hand_over_owned_bytes_and_strings_without_copying_them() {
        let bytes = b"payload".to_vec();
        let at = bytes.as_ptr();
        let out = Required(BytesSerde).serialize_owned(bytes).expect("bytes").expect("not null");
        assert_eq!((out.as_ptr(), out.as_slice()), (at, &b"payload"[..]), "the same buffer, not a copy");
        let text = String::from("key-1");
        let at = text.as_ptr();
        let out = Nullable(StringSerde).serialize_owned(Some(text)).expect("string").expect("not null");
        assert_eq!((out.as_ptr(), out.as_slice()), (at, &b"key-1"[..]));
        assert_eq!(Nullable(StringSerde).serialize_owned(None).expect("null"), None);
    }

    #[test]
    fn should_serialize_owned_values_as_borrowed_ones() {
        for v in [0u64, 7, u64::MAX] {
            assert_eq!(Required(U64Serde).serialize_owned(v).ok(), Required(U64Serde).serialize(&v).ok());
            assert_eq!(Nullable(U64Serde).serialize_owned(Some(v)).ok(), Nullable(U64Serde).serialize(&Some(v)).ok());
        }
        let s = Some(String::from("ü"));
        assert_eq!(Nullable(StringSerde).serialize_owned(s.clone()).ok(), Nullable(StringSerde).serialize(&s).ok());
    }
}
