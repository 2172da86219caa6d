//! Keys in their formats: the KAFKA format's serializer encodings (UTF-8 strings, big-endian
//! 32- and 64-bit integers and doubles) and JSON scalars, read into and written from Arrow
//! values.

use datafusion_common::arrow::array::{Array, ArrayRef, Int64Array, StringArray};
use datafusion_common::ScalarValue;

use crate::catalog::Format;
use crate::statement::Column;
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
    if format == Format::Kafka {
        // The common keys, read straight from their arrays.
        if let Some(strings) = column.as_any().downcast_ref::<StringArray>() {
            return Ok(strings.is_valid(row).then(|| strings.value(row).as_bytes().to_vec()));
        }
        if let Some(ints) = column.as_any().downcast_ref::<Int64Array>() {
            return Ok(ints.is_valid(row).then(|| ints.value(row).to_be_bytes().to_vec()));
        }
    }
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

/// Reads a key of the columns `columns` (their names and types, in order) in `format`: one
/// column as [`decode_key`] reads it; several as a JSON object with a field per column, or
/// DELIMITED fields in column order.
pub(crate) fn decode_keys(
    columns: &[Column],
    format: Format,
    bytes: Option<&[u8]>,
) -> Result<Vec<ScalarValue>, String> {
    if let [one] = columns {
        return Ok(vec![decode_key(&one.ty, format, bytes)?]);
    }
    let Some(bytes) = bytes else {
        return columns.iter().map(|c| ScalarValue::try_from(c.ty.arrow()).map_err(|e| e.to_string())).collect();
    };
    match format {
        Format::Kafka => Err(format!("a key of {} columns in the KAFKA format (one column)", columns.len())),
        Format::Json => {
            let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("key is not JSON: {e}"))?;
            let serde_json::Value::Object(fields) = v else {
                return Err(format!("a key of {} columns is a JSON object, not {v}", columns.len()));
            };
            columns
                .iter()
                .map(|c| {
                    let field = fields
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case(&c.name))
                        .map_or(serde_json::Value::Null, |(_, v)| v.clone());
                    let bytes = serde_json::to_vec(&field).map_err(|e| e.to_string())?;
                    decode_json_scalar(&c.ty, &bytes).map_err(|e| format!("key column {}: {e}", c.name))
                })
                .collect()
        }
        Format::Delimited => {
            let text = std::str::from_utf8(bytes).map_err(|e| format!("key: {e}"))?;
            let fields = crate::values::split_delimited(text)?;
            if fields.len() != columns.len() {
                return Err(format!("{} key fields where the key has {} columns", fields.len(), columns.len()));
            }
            columns
                .iter()
                .zip(fields)
                .map(|(c, f)| match f {
                    None => ScalarValue::try_from(c.ty.arrow()).map_err(|e| e.to_string()),
                    Some(text) => decode_text(&c.ty, &text).map_err(|e| format!("key column {}: {e}", c.name)),
                })
                .collect()
        }
    }
}

/// Writes the key of row `row` of `columns` (named `names`) in `format`: one column as
/// [`encode_key`] writes it; several as a JSON object or DELIMITED fields. `None` (no key)
/// when any column is null.
pub(crate) fn encode_keys(
    format: Format,
    columns: &[ArrayRef],
    names: &[String],
    row: usize,
) -> Result<Option<Vec<u8>>, String> {
    if let [one] = columns {
        return encode_key(format, one, row);
    }
    let mut values = Vec::with_capacity(columns.len());
    for c in columns {
        let v = ScalarValue::try_from_array(c, row).map_err(|e| e.to_string())?;
        if v.is_null() {
            return Ok(None);
        }
        values.push(v);
    }
    match format {
        Format::Kafka => Err(format!("a key of {} columns in the KAFKA format (one column)", columns.len())),
        Format::Json => {
            // Fields in column order (the same key always makes the same bytes).
            let mut out = b"{".to_vec();
            for (i, (name, v)) in names.iter().zip(values).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut out, name).map_err(|e| e.to_string())?;
                out.push(b':');
                serde_json::to_writer(&mut out, &json_scalar(v)?).map_err(|e| e.to_string())?;
            }
            out.push(b'}');
            Ok(Some(out))
        }
        Format::Delimited => {
            let fields: Vec<String> = values.iter().map(ToString::to_string).collect();
            Ok(Some(crate::values::join_delimited(fields.iter().map(|f| Some(f.as_str()))).into_bytes()))
        }
    }
}

/// A scalar as a JSON value (numbers and booleans as themselves, the rest as text).
fn json_scalar(v: ScalarValue) -> Result<serde_json::Value, String> {
    Ok(match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            serde_json::Value::String(s)
        }
        ScalarValue::Boolean(Some(b)) => serde_json::Value::Bool(b),
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_)
        | ScalarValue::Float32(_)
        | ScalarValue::Float64(_) => serde_json::from_str(&v.to_string()).map_err(|e| e.to_string())?,
        other => serde_json::Value::String(other.to_string()),
    })
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
        let col: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None]));
        assert_eq!(encode_key(Format::Kafka, &col, 0).unwrap(), Some(b"a".to_vec()));
        assert_eq!(encode_key(Format::Json, &col, 0).unwrap(), Some(b"\"a\"".to_vec()));
        assert_eq!(encode_key(Format::Kafka, &col, 1).unwrap(), None);
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![Some(7), None]));
        assert_eq!(encode_key(Format::Kafka, &ints, 0).unwrap(), Some(7i64.to_be_bytes().to_vec()));
        assert_eq!(encode_key(Format::Kafka, &ints, 1).unwrap(), None);
        assert_eq!(encode_key(Format::Json, &ints, 0).unwrap(), Some(b"7".to_vec()));
    }

    #[test]
    fn should_read_and_write_keys_of_several_columns() {
        use datafusion_common::arrow::array::{Int64Array, StringArray};
        let cols = [
            Column { name: "region".into(), ty: SqlType::String, key: true },
            Column { name: "n".into(), ty: SqlType::BigInt, key: true },
        ];
        let names: Vec<String> = cols.iter().map(|c| c.name.clone()).collect();
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("e,u"), Some("x")])),
            Arc::new(Int64Array::from(vec![Some(7), None])),
        ];
        let json = encode_keys(Format::Json, &arrays, &names, 0).unwrap().unwrap();
        assert_eq!(json, br#"{"region":"e,u","n":7}"#);
        assert_eq!(
            decode_keys(&cols, Format::Json, Some(&json)).unwrap(),
            [ScalarValue::Utf8(Some("e,u".into())), ScalarValue::Int64(Some(7))]
        );
        let text = encode_keys(Format::Delimited, &arrays, &names, 0).unwrap().unwrap();
        assert_eq!(text, br#""e,u",7"#);
        assert_eq!(decode_keys(&cols, Format::Delimited, Some(&text)).unwrap()[1], ScalarValue::Int64(Some(7)));
        assert_eq!(encode_keys(Format::Json, &arrays, &names, 1).unwrap(), None, "a null key column: no key");
        assert!(encode_keys(Format::Kafka, &arrays, &names, 0).unwrap_err().contains("KAFKA"));
        assert!(decode_keys(&cols, Format::Json, Some(b"[1]")).unwrap_err().contains("JSON object"));
        assert!(decode_keys(&cols, Format::Delimited, Some(b"a")).unwrap_err().contains("1 key fields"));
    }
}
