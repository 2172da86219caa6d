//! ksqlDB column types and the Arrow types they become.

use std::fmt;

use datafusion_common::arrow::datatypes::{DataType, TimeUnit};

/// A column type as ksqlDB spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlType {
    /// BOOLEAN.
    Boolean,
    /// INT / INTEGER (32-bit).
    Int,
    /// BIGINT (64-bit).
    BigInt,
    /// DOUBLE.
    Double,
    /// DECIMAL(precision, scale).
    Decimal(u8, i8),
    /// STRING / VARCHAR.
    String,
    /// BYTES.
    Bytes,
    /// TIMESTAMP (milliseconds since the epoch, UTC).
    Timestamp,
    /// DATE (days since the epoch).
    Date,
    /// TIME (milliseconds of the day).
    Time,
}

impl SqlType {
    /// Parses a type name (case-insensitive); `args` are the numbers in parentheses, if any.
    /// The error names the type.
    pub(crate) fn parse(name: &str, args: &[u64]) -> Result<Self, String> {
        let t = match name.to_ascii_uppercase().as_str() {
            "BOOLEAN" | "BOOL" => SqlType::Boolean,
            "INT" | "INTEGER" => SqlType::Int,
            "BIGINT" => SqlType::BigInt,
            "DOUBLE" => SqlType::Double,
            "STRING" | "VARCHAR" => SqlType::String,
            "BYTES" => SqlType::Bytes,
            "TIMESTAMP" => SqlType::Timestamp,
            "DATE" => SqlType::Date,
            "TIME" => SqlType::Time,
            "DECIMAL" => match args {
                [p, s] if (1..=38).contains(p) && s <= p => SqlType::Decimal(*p as u8, *s as i8),
                _ => {
                    return Err(format!(
                        "DECIMAL takes (precision, scale) with 1 <= scale <= precision <= 38, got {args:?}"
                    ))
                }
            },
            "ARRAY" | "MAP" | "STRUCT" => return Err(format!("{name} columns")),
            other => return Err(format!("unknown type {other}")),
        };
        if !args.is_empty() && !matches!(t, SqlType::Decimal(..) | SqlType::String) {
            return Err(format!("{name} takes no arguments"));
        }
        Ok(t)
    }

    /// The column type of an Arrow type a query computes; the error names the type.
    pub fn from_arrow(t: &DataType) -> Result<Self, String> {
        Ok(match t {
            DataType::Boolean => SqlType::Boolean,
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => SqlType::Int,
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => SqlType::BigInt,
            DataType::Float16 | DataType::Float32 | DataType::Float64 => SqlType::Double,
            DataType::Decimal128(p, s) => SqlType::Decimal(*p, *s),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => SqlType::String,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => SqlType::Bytes,
            DataType::Timestamp(..) => SqlType::Timestamp,
            DataType::Date32 | DataType::Date64 => SqlType::Date,
            DataType::Time32(_) | DataType::Time64(_) => SqlType::Time,
            other => return Err(format!("a column of type {other} (not a ksqlDB type)")),
        })
    }

    /// The Arrow type of the column.
    pub fn arrow(&self) -> DataType {
        match self {
            SqlType::Boolean => DataType::Boolean,
            SqlType::Int => DataType::Int32,
            SqlType::BigInt => DataType::Int64,
            SqlType::Double => DataType::Float64,
            SqlType::Decimal(p, s) => DataType::Decimal128(*p, *s),
            SqlType::String => DataType::Utf8,
            SqlType::Bytes => DataType::Binary,
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            SqlType::Date => DataType::Date32,
            SqlType::Time => DataType::Time32(TimeUnit::Millisecond),
        }
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlType::Boolean => write!(f, "BOOLEAN"),
            SqlType::Int => write!(f, "INTEGER"),
            SqlType::BigInt => write!(f, "BIGINT"),
            SqlType::Double => write!(f, "DOUBLE"),
            SqlType::Decimal(p, s) => write!(f, "DECIMAL({p}, {s})"),
            SqlType::String => write!(f, "STRING"),
            SqlType::Bytes => write!(f, "BYTES"),
            SqlType::Timestamp => write!(f, "TIMESTAMP"),
            SqlType::Date => write!(f, "DATE"),
            SqlType::Time => write!(f, "TIME"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_map_ksqldb_types_to_arrow() {
        assert_eq!(SqlType::parse("varchar", &[]).unwrap().arrow(), DataType::Utf8);
        assert_eq!(SqlType::parse("BIGINT", &[]).unwrap().arrow(), DataType::Int64);
        assert_eq!(SqlType::parse("DECIMAL", &[10, 2]).unwrap().arrow(), DataType::Decimal128(10, 2));
        assert!(SqlType::parse("DECIMAL", &[2, 10]).is_err());
        assert!(SqlType::parse("MAP", &[]).unwrap_err().contains("MAP"));
        assert!(SqlType::parse("BLOB", &[]).unwrap_err().contains("BLOB"));
    }
}
