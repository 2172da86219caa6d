//! The columns of stored aggregates, built a batch at a time from the store's bytes: the
//! common cases (one STRING or BIGINT key in the KAFKA format, natively folded COUNT/SUM)
//! go straight into their arrays; anything else goes through a value per row.

use std::sync::Arc;

use datafusion_common::arrow::array::{ArrayRef, Int64Array, StringBuilder};
use datafusion_common::ScalarValue;

use super::native::{self, Native};
use super::stages::Accumulators;
use crate::catalog::Format;
use crate::codec;
use crate::statement::Column;
use crate::types::SqlType;

/// The group-key columns being built.
pub(super) enum KeyColumns<'a> {
    /// One STRING key in the KAFKA format: the bytes are the UTF-8 string.
    KafkaString(StringBuilder),
    /// One BIGINT key in the KAFKA format: 8 big-endian bytes.
    KafkaBigInt(Vec<i64>),
    /// Any other key: a value per column and row.
    General { columns: &'a [Column], format: Format, values: Vec<Vec<ScalarValue>> },
}

impl<'a> KeyColumns<'a> {
    /// Columns for `rows` keys of `columns` in `format`.
    pub(super) fn new(columns: &'a [Column], format: Format, rows: usize) -> Self {
        match (columns, format) {
            ([one], Format::Kafka) if one.ty == SqlType::String => {
                KeyColumns::KafkaString(StringBuilder::with_capacity(rows, rows * 16))
            }
            ([one], Format::Kafka) if one.ty == SqlType::BigInt => KeyColumns::KafkaBigInt(Vec::with_capacity(rows)),
            _ => KeyColumns::General { columns, format, values: vec![Vec::with_capacity(rows); columns.len()] },
        }
    }

    /// Reads one key and appends it; the error says what is wrong with its bytes (and
    /// nothing is appended).
    pub(super) fn append(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            KeyColumns::KafkaString(b) => {
                b.append_value(std::str::from_utf8(bytes).map_err(|e| format!("key is not UTF-8: {e}"))?);
            }
            KeyColumns::KafkaBigInt(v) => match <[u8; 8]>::try_from(bytes) {
                Ok(b) => v.push(i64::from_be_bytes(b)),
                Err(_) => {
                    return Err(format!("a BIGINT key in the KAFKA format has 8 bytes, this one {}", bytes.len()))
                }
            },
            KeyColumns::General { columns, format, values } => {
                for (col, x) in values.iter_mut().zip(codec::decode_keys(columns, *format, Some(bytes))?) {
                    col.push(x);
                }
            }
        }
        Ok(())
    }

    /// The arrays, one per key column.
    pub(super) fn finish(self) -> datafusion_common::Result<Vec<ArrayRef>> {
        Ok(match self {
            KeyColumns::KafkaString(mut b) => vec![Arc::new(b.finish()) as ArrayRef],
            KeyColumns::KafkaBigInt(v) => vec![Arc::new(Int64Array::from(v)) as ArrayRef],
            KeyColumns::General { values, .. } => {
                values.into_iter().map(ScalarValue::iter_to_array).collect::<datafusion_common::Result<_>>()?
            }
        })
    }
}

/// The aggregate-value columns being built.
pub(super) enum ValueColumns<'a> {
    /// Natively folded aggregates: one BIGINT column each, and the row being read.
    Native { kinds: &'a [Native], columns: Vec<Vec<Option<i64>>>, row: Vec<Option<i64>> },
    /// Any other: a value per aggregate and row.
    General { accumulators: &'a Accumulators, columns: Vec<Vec<ScalarValue>>, row: Vec<ScalarValue> },
}

impl<'a> ValueColumns<'a> {
    /// Columns for `rows` states of `accumulators`.
    pub(super) fn new(accumulators: &'a Accumulators, rows: usize) -> Self {
        match accumulators.native_kinds() {
            Some(kinds) => ValueColumns::Native {
                kinds,
                columns: vec![Vec::with_capacity(rows); kinds.len()],
                row: Vec::with_capacity(kinds.len()),
            },
            None => ValueColumns::General {
                accumulators,
                columns: vec![Vec::with_capacity(rows); accumulators.len()],
                row: Vec::new(),
            },
        }
    }

    /// Reads one state's values, to be appended by [`ValueColumns::push`]; the error says
    /// what is wrong with the state.
    pub(super) fn read(&mut self, state: &[u8]) -> Result<(), String> {
        match self {
            ValueColumns::Native { kinds, row, .. } => {
                if native::read_values(kinds, state, row) {
                    Ok(())
                } else {
                    Err(format!("an aggregate state of {} bytes that is not {} BIGINT(s)", state.len(), kinds.len()))
                }
            }
            ValueColumns::General { accumulators, row, .. } => {
                *row = accumulators.evaluate(state)?;
                Ok(())
            }
        }
    }

    /// Appends the values read last.
    pub(super) fn push(&mut self) {
        match self {
            ValueColumns::Native { columns, row, .. } => {
                for (col, x) in columns.iter_mut().zip(row.drain(..)) {
                    col.push(x);
                }
            }
            ValueColumns::General { columns, row, .. } => {
                for (col, x) in columns.iter_mut().zip(row.drain(..)) {
                    col.push(x);
                }
            }
        }
    }

    /// The arrays, one per aggregate.
    pub(super) fn finish(self) -> datafusion_common::Result<Vec<ArrayRef>> {
        Ok(match self {
            ValueColumns::Native { columns, .. } => {
                columns.into_iter().map(|c| Arc::new(Int64Array::from(c)) as ArrayRef).collect()
            }
            ValueColumns::General { columns, .. } => {
                columns.into_iter().map(ScalarValue::iter_to_array).collect::<datafusion_common::Result<_>>()?
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(ty: SqlType) -> Vec<Column> {
        vec![Column { name: "k".into(), ty, key: true }]
    }

    /// Builds the columns of `keys`, through the given columns, leaving out unreadable ones.
    fn build(mut c: KeyColumns<'_>, keys: &[&[u8]]) -> (Vec<ArrayRef>, Vec<String>) {
        let mut errors = Vec::new();
        for k in keys {
            if let Err(e) = c.append(k) {
                errors.push(e);
            }
        }
        (c.finish().expect("arrays"), errors)
    }

    #[test]
    fn should_read_kafka_keys_straight_into_the_arrays_the_general_path_builds() {
        for (ty, keys) in [
            (SqlType::String, vec![&b"a"[..], b"", "ü".as_bytes(), &[0xff, 0xfe][..], b"key-000001"]),
            (SqlType::BigInt, vec![&7i64.to_be_bytes()[..], &(-1i64).to_be_bytes()[..], &[1, 2, 3][..]]),
        ] {
            let columns = column(ty.clone());
            let fast = KeyColumns::new(&columns, Format::Kafka, keys.len());
            assert!(!matches!(fast, KeyColumns::General { .. }), "{ty} keys in the KAFKA format take the fast path");
            let general = KeyColumns::General { columns: &columns, format: Format::Kafka, values: vec![Vec::new()] };
            let (fast, fast_errors) = build(fast, &keys);
            let (general, general_errors) = build(general, &keys);
            assert_eq!(fast.len(), 1);
            assert_eq!(fast[0].as_ref(), general[0].as_ref(), "{ty} keys");
            assert_eq!(fast_errors.len(), 1, "the one bad {ty} key: {fast_errors:?}");
            assert_eq!(general_errors.len(), 1, "{general_errors:?}");
        }
    }

    #[test]
    fn should_take_the_general_path_for_other_keys() {
        let columns = column(SqlType::String);
        assert!(matches!(KeyColumns::new(&columns, Format::Json, 1), KeyColumns::General { .. }));
        let columns = column(SqlType::Int);
        assert!(matches!(KeyColumns::new(&columns, Format::Kafka, 1), KeyColumns::General { .. }));
    }
}
