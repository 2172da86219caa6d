//! A compact binary encoding of rows of scalar values whose types both sides know: the
//! arguments an aggregation's records carry through the repartition topic, and the
//! accumulator states kept in its store. Each value is a presence byte and then its payload:
//! fixed-width little-endian numbers, length-prefixed bytes and strings, lists as a count and
//! their elements. Decoding checks every length: bytes from a topic or a store never panic.

use std::sync::Arc;

use datafusion_common::arrow::array::new_empty_array;
use datafusion_common::arrow::datatypes::{DataType, Field};
use datafusion_common::utils::SingleRowListArrayBuilder;
use datafusion_common::ScalarValue;

/// Appends `values` to `out`.
pub(crate) fn encode(values: &[ScalarValue], out: &mut Vec<u8>) -> Result<(), String> {
    for v in values {
        encode_one(v, out)?;
    }
    Ok(())
}

fn encode_one(v: &ScalarValue, out: &mut Vec<u8>) -> Result<(), String> {
    if v.is_null() {
        out.push(0);
        return Ok(());
    }
    out.push(1);
    let bytes = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    };
    match v {
        ScalarValue::Boolean(Some(b)) => out.push(u8::from(*b)),
        ScalarValue::Int8(Some(n)) => out.extend_from_slice(&n.to_le_bytes()),
        ScalarValue::Int16(Some(n)) => out.extend_from_slice(&n.to_le_bytes()),
        ScalarValue::Int32(Some(n)) | ScalarValue::Date32(Some(n)) => out.extend_from_slice(&n.to_le_bytes()),
        ScalarValue::Time32Second(Some(n)) | ScalarValue::Time32Millisecond(Some(n)) => {
            out.extend_from_slice(&n.to_le_bytes())
        }
        ScalarValue::Int64(Some(n))
        | ScalarValue::Date64(Some(n))
        | ScalarValue::Time64Microsecond(Some(n))
        | ScalarValue::Time64Nanosecond(Some(n))
        | ScalarValue::TimestampSecond(Some(n), _)
        | ScalarValue::TimestampMillisecond(Some(n), _)
        | ScalarValue::TimestampMicrosecond(Some(n), _)
        | ScalarValue::TimestampNanosecond(Some(n), _) => out.extend_from_slice(&n.to_le_bytes()),
        ScalarValue::UInt8(Some(n)) => out.push(*n),
        ScalarValue::UInt16(Some(n)) => out.extend_from_slice(&n.to_le_bytes()),
        ScalarValue::UInt32(Some(n)) => out.extend_from_slice(&n.to_le_bytes()),
        ScalarValue::UInt64(Some(n)) => out.extend_from_slice(&n.to_le_bytes()),
        ScalarValue::Float32(Some(n)) => out.extend_from_slice(&n.to_le_bytes()),
        ScalarValue::Float64(Some(n)) => out.extend_from_slice(&n.to_le_bytes()),
        ScalarValue::Decimal128(Some(n), _, _) => out.extend_from_slice(&n.to_le_bytes()),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            bytes(out, s.as_bytes())
        }
        ScalarValue::Binary(Some(b)) | ScalarValue::LargeBinary(Some(b)) | ScalarValue::BinaryView(Some(b)) => {
            bytes(out, b)
        }
        ScalarValue::List(list) => {
            let values = list.value(0);
            out.extend_from_slice(&(values.len() as u32).to_le_bytes());
            for i in 0..values.len() {
                encode_one(&ScalarValue::try_from_array(&values, i).map_err(|e| e.to_string())?, out)?;
            }
        }
        other => return Err(format!("values of type {} in an aggregation's state", other.data_type())),
    }
    Ok(())
}

/// Reads back values of `types` from `bytes` (all of them: trailing bytes are an error).
pub(crate) fn decode(bytes: &[u8], types: &[DataType]) -> Result<Vec<ScalarValue>, String> {
    let mut r = Reader { bytes, at: 0 };
    let values = types.iter().map(|t| r.value(t)).collect::<Result<Vec<_>, _>>()?;
    if r.at != bytes.len() {
        return Err(format!("{} bytes left over after {} values", bytes.len() - r.at, types.len()));
    }
    Ok(values)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self.at.checked_add(N).filter(|e| *e <= self.bytes.len()).ok_or("truncated value")?;
        let out = self.bytes[self.at..end].try_into().map_err(|_| "truncated value")?;
        self.at = end;
        Ok(out)
    }

    fn slice(&mut self) -> Result<&[u8], String> {
        let n = u32::from_le_bytes(self.take()?) as usize;
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or("truncated value")?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn value(&mut self, t: &DataType) -> Result<ScalarValue, String> {
        let [present] = self.take::<1>()?;
        if present == 0 {
            return ScalarValue::try_new_null(t).map_err(|e| e.to_string());
        }
        Ok(match t {
            DataType::Boolean => ScalarValue::Boolean(Some(self.take::<1>()?[0] != 0)),
            DataType::Int8 => ScalarValue::Int8(Some(i8::from_le_bytes(self.take()?))),
            DataType::Int16 => ScalarValue::Int16(Some(i16::from_le_bytes(self.take()?))),
            DataType::Int32 => ScalarValue::Int32(Some(i32::from_le_bytes(self.take()?))),
            DataType::Date32 => ScalarValue::Date32(Some(i32::from_le_bytes(self.take()?))),
            DataType::Int64 => ScalarValue::Int64(Some(i64::from_le_bytes(self.take()?))),
            DataType::Date64 => ScalarValue::Date64(Some(i64::from_le_bytes(self.take()?))),
            DataType::UInt8 => ScalarValue::UInt8(Some(self.take::<1>()?[0])),
            DataType::UInt16 => ScalarValue::UInt16(Some(u16::from_le_bytes(self.take()?))),
            DataType::UInt32 => ScalarValue::UInt32(Some(u32::from_le_bytes(self.take()?))),
            DataType::UInt64 => ScalarValue::UInt64(Some(u64::from_le_bytes(self.take()?))),
            DataType::Float32 => ScalarValue::Float32(Some(f32::from_le_bytes(self.take()?))),
            DataType::Float64 => ScalarValue::Float64(Some(f64::from_le_bytes(self.take()?))),
            DataType::Decimal128(p, s) => ScalarValue::Decimal128(Some(i128::from_le_bytes(self.take()?)), *p, *s),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let s = String::from_utf8(self.slice()?.to_vec()).map_err(|e| e.to_string())?;
                match t {
                    DataType::Utf8 => ScalarValue::Utf8(Some(s)),
                    DataType::LargeUtf8 => ScalarValue::LargeUtf8(Some(s)),
                    _ => ScalarValue::Utf8View(Some(s)),
                }
            }
            DataType::Binary => ScalarValue::Binary(Some(self.slice()?.to_vec())),
            DataType::LargeBinary => ScalarValue::LargeBinary(Some(self.slice()?.to_vec())),
            DataType::BinaryView => ScalarValue::BinaryView(Some(self.slice()?.to_vec())),
            DataType::List(field) => {
                let n = u32::from_le_bytes(self.take()?) as usize;
                let mut items = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    items.push(self.value(field.data_type())?);
                }
                list(items, field)?
            }
            other => {
                let v = ScalarValue::try_new_null(other).map_err(|e| e.to_string())?;
                // Time and timestamp types: an i64 or i32 payload under their own variants.
                match v {
                    ScalarValue::TimestampSecond(_, tz) => ScalarValue::TimestampSecond(Some(self.i64()?), tz),
                    ScalarValue::TimestampMillisecond(_, tz) => {
                        ScalarValue::TimestampMillisecond(Some(self.i64()?), tz)
                    }
                    ScalarValue::TimestampMicrosecond(_, tz) => {
                        ScalarValue::TimestampMicrosecond(Some(self.i64()?), tz)
                    }
                    ScalarValue::TimestampNanosecond(_, tz) => ScalarValue::TimestampNanosecond(Some(self.i64()?), tz),
                    ScalarValue::Time32Second(_) => ScalarValue::Time32Second(Some(i32::from_le_bytes(self.take()?))),
                    ScalarValue::Time32Millisecond(_) => {
                        ScalarValue::Time32Millisecond(Some(i32::from_le_bytes(self.take()?)))
                    }
                    ScalarValue::Time64Microsecond(_) => ScalarValue::Time64Microsecond(Some(self.i64()?)),
                    ScalarValue::Time64Nanosecond(_) => ScalarValue::Time64Nanosecond(Some(self.i64()?)),
                    _ => return Err(format!("values of type {other} in an aggregation's state")),
                }
            }
        })
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.take()?))
    }
}

/// A one-row list scalar of `items`, typed by `field`.
fn list(items: Vec<ScalarValue>, field: &Arc<Field>) -> Result<ScalarValue, String> {
    let values = if items.is_empty() {
        new_empty_array(field.data_type())
    } else {
        ScalarValue::iter_to_array(items).map_err(|e| e.to_string())?
    };
    Ok(SingleRowListArrayBuilder::new(values).with_field(field).build_list_scalar())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_read_back_what_it_wrote_and_refuse_truncated_bytes() {
        let item = Arc::new(Field::new_list_field(DataType::Int64, true));
        let values = vec![
            ScalarValue::Int64(Some(-3)),
            ScalarValue::Utf8(None),
            ScalarValue::Utf8(Some("héllo".into())),
            ScalarValue::Float64(Some(2.5)),
            ScalarValue::Decimal128(Some(12345), 10, 2),
            ScalarValue::TimestampMillisecond(Some(1_700_000_000_000), None),
            list(vec![ScalarValue::Int64(Some(1)), ScalarValue::Int64(None)], &item).unwrap(),
            ScalarValue::Boolean(Some(true)),
        ];
        let types: Vec<DataType> = values.iter().map(ScalarValue::data_type).collect();
        let mut out = Vec::new();
        encode(&values, &mut out).unwrap();
        assert_eq!(decode(&out, &types).unwrap(), values);
        for cut in 0..out.len() {
            assert!(decode(&out[..cut], &types).is_err(), "{cut} bytes of {}", out.len());
        }
        out.push(7);
        assert!(decode(&out, &types).unwrap_err().contains("left over"));
    }
}
