//! Keys in their formats: the KAFKA format's serializer encodings (UTF-8 strings, big-endian
//! 32- and 64-bit integers and doubles) and JSON scalars, read into and written from Arrow
//! values.

use datafusion_common::arrow::array::ArrayRef;
use datafusion_common::ScalarValue;

use crate::catalog::Format;
use crate::types::SqlType;

/// Reads one key of type `ty` in `format`; the error says what is wrong with the bytes.
pub(crate) fn decode_key(ty: &SqlType, format: Format, bytes: Option<&[u8]>) -> Result<ScalarValue, String> {
    let Some(bytes) = bytes else {
        return ScalarValue::try_from(ty.arrow()).map_err(|e| e.to_string());
    };
    match format {
        Format::Kafka => decode_kafka(ty, bytes),
        Format::Json => decode_json_scalar(ty, bytes),
        Format::Delimited => decode_text(ty, std::str::from_utf8(bytes).map_err(|e| format!("key: {e}"))?),
    }
}

fn fixed<const N: usize>(ty: &SqlType, bytes: &[u8]) -> Result<[u8; N], String> {
    bytes.try_into().map_err(|_| format!("a {ty} key in the KAFKA format has {N} bytes, this one {}", bytes.len()))
}

/// Reads one value of type `ty` in Kafka's serializer encodings.
pub(crate) fn decode_kafka(ty: &SqlType, bytes: &[u8]) -> Result<ScalarValue, String> {
    Ok(match ty {
        SqlType::String => {
            ScalarValue::Utf8(Some(String::from_utf8(bytes.to_vec()).map_err(|e| format!("key is not UTF-8: {e}"))?))
        }
        SqlType::Int => ScalarValue::Int32(Some(i32::from_be_bytes(fixed(ty, bytes)?))),
        SqlType::BigInt => ScalarValue::Int64(Some(i64::from_be_bytes(fixed(ty, bytes)?))),
        SqlType::Double => ScalarValue::Float64(Some(f64::from_be_bytes(fixed(ty, bytes)?))),
        SqlType::Bytes => ScalarValue::Binary(Some(bytes.to_vec())),
        other => return Err(format!("{other} keys in the KAFKA format (STRING, INT, BIGINT, DOUBLE or BYTES)")),
    })
}

fn decode_text(ty: &SqlType, text: &str) -> Result<ScalarValue, String> {
    ScalarValue::try_from_string(text.to_string(), &ty.arrow()).map_err(|e| format!("key '{text}' is not {ty}: {e}"))
}

fn decode_json_scalar(ty: &SqlType, bytes: &[u8]) -> Result<ScalarValue, String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("key is not JSON: {e}"))?;
    match v {
        serde_json::Value::String(s) => decode_text(ty, &s),
        serde_json::Value::Number(n) => decode_text(ty, &n.to_string()),
        serde_json::Value::Bool(b) => decode_text(ty, &b.to_string()),
        serde_json::Value::Null => ScalarValue::try_from(ty.arrow()).map_err(|e| e.to_string()),
        other => Err(format!("a JSON key is a scalar, not {other}")),
    }
}

/// Writes the key in row `row` of `column` in `format` (`None`: a null key).
pub(crate) fn encode_key(format: Format, column: &ArrayRef, row: usize) -> Result<Option<Vec<u8>>, String> {
    let v = ScalarValue::try_from_array(column, row).map_err(|e| e.to_string())?;
    if v.is_null() {
        return Ok(None);
    }
    Ok(Some(match format {
        Format::Kafka => match v {
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
                s.into_bytes()
            }
            ScalarValue::Int32(Some(n)) => n.to_be_bytes().to_vec(),
            ScalarValue::Int64(Some(n)) => n.to_be_bytes().to_vec(),
            ScalarValue::Float64(Some(n)) => n.to_be_bytes().to_vec(),
            ScalarValue::Binary(Some(b)) => b,
            other => return Err(format!("a {} key in the KAFKA format", other.data_type())),
        },
        Format::Json => match v {
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
                serde_json::to_vec(&s).map_err(|e| e.to_string())?
            }
            other => other.to_string().into_bytes(),
        },
        Format::Delimited => v.to_string().into_bytes(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn should_read_and_write_keys_in_their_formats() {
        let k = decode_key(&SqlType::BigInt, Format::Kafka, Some(&7i64.to_be_bytes())).unwrap();
        assert_eq!(k, ScalarValue::Int64(Some(7)));
        assert!(decode_key(&SqlType::BigInt, Format::Kafka, Some(b"abc")).unwrap_err().contains("8 bytes"));
        assert_eq!(
            decode_key(&SqlType::Int, Format::Json, Some(b"42")).unwrap(),
            ScalarValue::Int32(Some(42)),
            "a JSON number"
        );
        assert!(decode_key(&SqlType::String, Format::Kafka, Some(&[0xff, 0xfe])).unwrap_err().contains("UTF-8"));
        assert!(decode_key(&SqlType::String, Format::Kafka, None).unwrap().is_null());
        let col: ArrayRef = Arc::new(datafusion_common::arrow::array::StringArray::from(vec![Some("a"), None]));
        assert_eq!(encode_key(Format::Kafka, &col, 0).unwrap(), Some(b"a".to_vec()));
        assert_eq!(encode_key(Format::Json, &col, 0).unwrap(), Some(b"\"a\"".to_vec()));
        assert_eq!(encode_key(Format::Kafka, &col, 1).unwrap(), None);
    }
}
