//! Record values in their formats, a batch at a time: JSON (an object per record),
//! DELIMITED (comma-separated fields in column order, RFC 4180 quoting, an empty field is
//! null) and KAFKA (one column in Kafka's serializer encodings).

use std::sync::Arc;

use datafusion_common::arrow::array::{
    new_empty_array, Array, ArrayRef, RecordBatch, RecordBatchOptions, StringArray, StructArray,
};
use datafusion_common::arrow::compute::{cast_with_options, CastOptions};
use datafusion_common::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion_common::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion_common::ScalarValue;

use crate::catalog::Format;
use crate::codec;
use crate::error::{Result, SqlError};
use crate::types::SqlType;

/// Decodes `values` (one per record) in `format` into one batch of `schema`'s columns. Any
/// record that does not match fails the whole call, naming what is wrong; callers decode
/// records one at a time to tell the bad ones apart.
pub(crate) fn decode(format: Format, schema: &SchemaRef, values: &[&[u8]]) -> std::result::Result<RecordBatch, String> {
    match format {
        Format::Json => decode_json(schema, values),
        Format::Delimited => decode_delimited(schema, values),
        Format::Kafka => decode_kafka(schema, values),
    }
}

fn decode_json(schema: &SchemaRef, values: &[&[u8]]) -> std::result::Result<RecordBatch, String> {
    let mut decoder = datafusion_common::arrow::json::ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(values.len().max(1))
        .with_strict_mode(false)
        .build_decoder()
        .map_err(|e| e.to_string())?;
    for (i, v) in values.iter().enumerate() {
        let mut rest = *v;
        while !rest.is_empty() {
            let n = decoder.decode(rest).map_err(|e| e.to_string())?;
            if n == 0 {
                // The decoder is full: there are more JSON values than records.
                return Err("more than one JSON value in a record".into());
            }
            rest = &rest[n..];
        }
        // Each record holds exactly one whole value (the decoder reads values back to back).
        if decoder.has_partial_record() {
            return Err("the value is not one whole JSON object".into());
        }
        match decoder.len().cmp(&(i + 1)) {
            std::cmp::Ordering::Equal => {}
            std::cmp::Ordering::Less => return Err("a record with no JSON value".into()),
            std::cmp::Ordering::Greater => return Err("more than one JSON value in a record".into()),
        }
    }
    let batch =
        decoder.flush().map_err(|e| e.to_string())?.unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(schema)));
    if batch.num_rows() != values.len() {
        return Err(format!("{} JSON values in {} records", batch.num_rows(), values.len()));
    }
    Ok(batch)
}

/// The fields of one delimited value: `,`-separated, a field in double quotes may hold
/// commas, line breaks and doubled quotes; an empty unquoted field is null.
pub(crate) fn split_delimited(text: &str) -> std::result::Result<Vec<Option<String>>, String> {
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut field = String::new();
        let mut quoted = false;
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
            if !matches!(chars.peek(), None | Some(',')) {
                return Err(format!("text after the closing quote of field {}", fields.len() + 1));
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                if c == '"' {
                    return Err(format!("a quote inside the unquoted field {}", fields.len() + 1));
                }
                field.push(c);
            }
        }
        fields.push(if field.is_empty() && !quoted { None } else { Some(field) });
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

fn decode_delimited(schema: &SchemaRef, values: &[&[u8]]) -> std::result::Result<RecordBatch, String> {
    let n = schema.fields().len();
    let mut columns: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(values.len()); n];
    for v in values {
        let text = std::str::from_utf8(v).map_err(|e| format!("a DELIMITED value is not UTF-8: {e}"))?;
        let fields = split_delimited(text.strip_suffix('\n').unwrap_or(text))?;
        if fields.len() != n {
            return Err(format!("{} fields where the schema has {n} value columns", fields.len()));
        }
        for (col, f) in columns.iter_mut().zip(fields) {
            col.push(f);
        }
    }
    let strict = CastOptions { safe: false, ..CastOptions::default() };
    let arrays = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(texts, f)| {
            let texts: ArrayRef = Arc::new(StringArray::from(texts));
            let array = match f.data_type() {
                DataType::Binary => texts_to_binary(&texts),
                t => cast_with_options(&texts, t, &strict).map_err(|e| e.to_string()),
            };
            array.map_err(|e| format!("column {}: {e}", f.name()))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(values.len())),
    )
    .map_err(|e| e.to_string())
}

/// BYTES in text formats: base64, as ksqlDB writes them.
fn texts_to_binary(texts: &ArrayRef) -> std::result::Result<ArrayRef, String> {
    use base64::Engine as _;
    let texts = texts.as_any().downcast_ref::<StringArray>().expect("a string array");
    let decoded = texts
        .iter()
        .map(|t| t.map(|t| base64::engine::general_purpose::STANDARD.decode(t)).transpose())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("BYTES are base64: {e}"))?;
    Ok(Arc::new(datafusion_common::arrow::array::BinaryArray::from_iter(decoded)))
}

fn decode_kafka(schema: &SchemaRef, values: &[&[u8]]) -> std::result::Result<RecordBatch, String> {
    let [field] = schema.fields().as_ref() else {
        return Err(format!("the KAFKA format holds one value column, the schema has {}", schema.fields().len()));
    };
    let ty = SqlType::from_arrow(field.data_type())?;
    let array = if values.is_empty() {
        new_empty_array(field.data_type())
    } else {
        let scalars = values.iter().map(|v| codec::decode_kafka(&ty, v)).collect::<std::result::Result<Vec<_>, _>>()?;
        ScalarValue::iter_to_array(scalars).map_err(|e| e.to_string())?
    };
    RecordBatch::try_new(Arc::clone(schema), vec![array]).map_err(|e| e.to_string())
}

/// Encodes each row of `batch` as one record value in `format` (`None`: a null value, which
/// only the KAFKA format of a null column writes).
pub(crate) fn encode(format: Format, batch: &RecordBatch) -> Result<Vec<Option<Vec<u8>>>> {
    match format {
        Format::Json => Ok(encode_json(batch)?.into_iter().map(Some).collect()),
        Format::Delimited => encode_delimited(batch),
        Format::Kafka => {
            let [column] = batch.columns() else {
                return Err(SqlError::Semantic(format!(
                    "value_format='KAFKA' holds one column; the query writes {} to the value",
                    batch.num_columns()
                )));
            };
            (0..batch.num_rows())
                .map(|row| codec::encode_key(Format::Kafka, column, row).map_err(SqlError::Semantic))
                .collect()
        }
    }
}

/// Encodes each row as a JSON object (its null columns left out), straight into its own
/// value: arrow-json's encoder a row at a time, no shared buffer to split and copy.
pub(crate) fn encode_json(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    use datafusion_common::arrow::json::writer::{make_encoder, EncoderOptions};
    let array = StructArray::from(batch.clone());
    let field = Arc::new(Field::new_struct("", batch.schema().fields().clone(), false));
    let options = EncoderOptions::default();
    let mut encoder = make_encoder(&field, &array, &options).map_err(|e| SqlError::Semantic(e.to_string()))?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut size = 64;
    for row in 0..batch.num_rows() {
        let mut out = Vec::with_capacity(size);
        encoder.encode(row, &mut out);
        size = size.max(out.len());
        rows.push(out);
    }
    Ok(rows)
}

/// Joins fields into one delimited value: `None` is null (an empty field); a field holding a
/// delimiter, a quote or a line break, or an empty string, is quoted.
pub(crate) fn join_delimited<'a>(fields: impl Iterator<Item = Option<&'a str>>) -> String {
    let mut out = String::new();
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if let Some(f) = f {
            push_field(&mut out, f);
        }
    }
    out
}

/// Appends a non-null field, quoted when it must be.
fn push_field(out: &mut String, field: &str) {
    if field.is_empty() || field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

fn encode_delimited(batch: &RecordBatch) -> Result<Vec<Option<Vec<u8>>>> {
    use base64::Engine as _;
    let options = FormatOptions::default().with_null("");
    let fail = |e: datafusion_common::arrow::error::ArrowError| SqlError::Semantic(e.to_string());
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(fail)?;
    let mut out = Vec::with_capacity(batch.num_rows());
    let mut field = String::new();
    for row in 0..batch.num_rows() {
        let mut value = String::with_capacity(16 * formatters.len());
        for (i, (f, column)) in formatters.iter().zip(batch.columns()).enumerate() {
            if i > 0 {
                value.push(',');
            }
            if column.is_null(row) {
                continue; // null: an empty field
            }
            field.clear();
            match column.as_any().downcast_ref::<datafusion_common::arrow::array::BinaryArray>() {
                Some(b) => field.push_str(&base64::engine::general_purpose::STANDARD.encode(b.value(row))),
                None => {
                    use std::fmt::Write as _;
                    write!(field, "{}", f.value(row)).map_err(|e| SqlError::Semantic(e.to_string()))?;
                }
            }
            push_field(&mut value, &field);
        }
        out.push(Some(value.into_bytes()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_common::arrow::datatypes::{Field, Schema};

    fn schema(fields: &[(&str, DataType)]) -> SchemaRef {
        Arc::new(Schema::new(fields.iter().map(|(n, t)| Field::new(*n, t.clone(), true)).collect::<Vec<_>>()))
    }

    #[test]
    fn should_read_exactly_one_json_object_from_each_record() {
        let s = schema(&[("v", DataType::Utf8), ("n", DataType::Int64)]);
        let good: Vec<&[u8]> = vec![br#"{"v":"a","n":1}"#, br#" {"n":2} "#, b"{}"];
        let batch = decode(Format::Json, &s, &good).expect("three objects");
        assert_eq!(batch.num_rows(), 3);
        // Two objects in one record and none in the next add up to as many rows as records:
        // still refused, the rows would be wrongly paired with the records.
        let two_then_none: Vec<&[u8]> = vec![br#"{"v":"a"}{"v":"b"}"#, b""];
        assert!(decode(Format::Json, &s, &two_then_none).is_err(), "two objects, then none");
        let split: Vec<&[u8]> = vec![br#"{"v":"#, br#""a"}"#];
        assert!(decode(Format::Json, &s, &split).is_err(), "an object split over two records");
        for bad in [&b"5"[..], b"{\"v\":\"a\"", b"", b"  "] {
            assert!(decode(Format::Json, &s, &[bad]).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn should_split_delimited_fields_with_quotes_and_nulls() {
        assert_eq!(
            split_delimited(r#"a,,"b,c","say ""hi""","""#).unwrap(),
            [Some("a".into()), None, Some("b,c".into()), Some(r#"say "hi""#.into()), Some(String::new())]
        );
        assert_eq!(split_delimited("").unwrap(), [None]);
        assert!(split_delimited(r#""open"#).unwrap_err().contains("not closed"));
        assert!(split_delimited(r#""a"b"#).unwrap_err().contains("after the closing quote"));
        assert!(split_delimited(r#"a"b"#).unwrap_err().contains("quote inside"));
    }

    #[test]
    fn should_read_and_write_delimited_values_the_same() {
        let s = schema(&[
            ("name", DataType::Utf8),
            ("n", DataType::Int64),
            ("x", DataType::Float64),
            ("b", DataType::Binary),
        ]);
        let values: Vec<&[u8]> = vec![b"alice,3,1.5,aGk=", br#""b,ob",,-2,"#, br#""",7,0.25,"#];
        let batch = decode(Format::Delimited, &s, &values).unwrap();
        assert_eq!(batch.num_rows(), 3);
        let out: Vec<String> = encode(Format::Delimited, &batch)
            .unwrap()
            .into_iter()
            .map(|v| String::from_utf8(v.unwrap()).unwrap())
            .collect();
        assert_eq!(out, ["alice,3,1.5,aGk=", r#""b,ob",,-2.0,"#, r#""",7,0.25,"#]);
        let e = decode(Format::Delimited, &s, &[b"a,notanumber,1,".as_slice()]).unwrap_err();
        assert!(e.contains("column n") && e.contains("notanumber"), "{e}");
        let e = decode(Format::Delimited, &s, &[b"a,1".as_slice()]).unwrap_err();
        assert!(e.contains("2 fields") && e.contains("4 value columns"), "{e}");
    }

    #[test]
    fn should_read_and_write_one_kafka_value_column() {
        let s = schema(&[("v", DataType::Int64)]);
        let seven = 7i64.to_be_bytes();
        let batch = decode(Format::Kafka, &s, &[seven.as_slice()]).unwrap();
        assert_eq!(encode(Format::Kafka, &batch).unwrap(), [Some(seven.to_vec())]);
        assert!(decode(Format::Kafka, &s, &[b"abc".as_slice()]).unwrap_err().contains("8 bytes"));
        let two = schema(&[("a", DataType::Int64), ("b", DataType::Int64)]);
        assert!(decode(Format::Kafka, &two, &[]).unwrap_err().contains("one value column"));
    }

    #[test]
    fn should_count_json_values_per_record() {
        let s = schema(&[("v", DataType::Int64)]);
        let e = decode(Format::Json, &s, &[br#"{"v":1}{"v":2}"#.as_slice()]).unwrap_err();
        assert!(e.contains("more than one JSON value"), "{e}");
        assert_eq!(decode(Format::Json, &s, &[br#"{"v":1}"#.as_slice()]).unwrap().num_rows(), 1);
    }
}
