//! `INSERT INTO … VALUES`: one record written to a stream's or table's topic.

use std::sync::Arc;

use super::{Executor, Outcome};
use crate::error::{Result, SqlError};
use crate::statement::SourceKind;

impl Executor {
    /// `INSERT INTO target [(cols)] VALUES (…)`: one record, its key from the key column, its
    /// value the other columns in the value format, its time `ROWTIME` when given.
    pub(super) fn insert_values(
        &mut self,
        target: &str,
        columns: Option<Vec<String>>,
        values: Vec<crate::statement::Literal>,
    ) -> Result<Outcome> {
        use datafusion_common::arrow::array::{ArrayRef, RecordBatch};
        use datafusion_common::arrow::datatypes::{Field, Schema};
        use datafusion_common::ScalarValue;

        use crate::statement::Literal;
        let def = self
            .catalog
            .get(target)
            .ok_or_else(|| SqlError::Semantic(format!("INSERT INTO: no stream or table named {target}")))?
            .clone();
        let names = columns.unwrap_or_else(|| def.columns.iter().map(|c| c.name.clone()).collect());
        if names.len() != values.len() {
            return Err(SqlError::Semantic(format!(
                "INSERT INTO {target}: {} columns but {} values",
                names.len(),
                values.len()
            )));
        }
        let scalar = |name: &str, ty: &datafusion_common::arrow::datatypes::DataType, v: &Literal| {
            let raw = match v {
                Literal::Null => ScalarValue::try_from(ty).map_err(|e| SqlError::Semantic(e.to_string()))?,
                Literal::Bool(b) => ScalarValue::Boolean(Some(*b)),
                Literal::Text(s) => ScalarValue::Utf8(Some(s.clone())),
                Literal::Number(n) => match n.parse::<i64>() {
                    Ok(i) => ScalarValue::Int64(Some(i)),
                    Err(_) => ScalarValue::Float64(Some(
                        n.parse().map_err(|_| SqlError::Semantic(format!("{name}: {n} is not a number")))?,
                    )),
                },
            };
            raw.cast_to(ty).map_err(|_| SqlError::Semantic(format!("{name}: {v:?} is not a value of type {ty}")))
        };
        let mut key_values: Vec<(String, ArrayRef)> = Vec::new();
        let mut timestamp = None;
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (name, v) in names.iter().zip(&values) {
            if name == "rowtime" {
                match scalar(name, &datafusion_common::arrow::datatypes::DataType::Int64, v)? {
                    ScalarValue::Int64(t) => timestamp = t,
                    _ => unreachable!("cast to Int64"),
                }
                continue;
            }
            let col = def
                .columns
                .iter()
                .find(|c| &c.name == name)
                .ok_or_else(|| SqlError::Semantic(format!("INSERT INTO {target}: no column named {name}")))?;
            let array = scalar(name, &col.ty.arrow(), v)?.to_array().map_err(|e| SqlError::Semantic(e.to_string()))?;
            if col.key {
                key_values.push((name.clone(), array));
            } else {
                fields.push(Field::new(name, col.ty.arrow(), true));
                arrays.push(array);
            }
        }
        // The key: its columns in the declared order (one not given is null, and then there is
        // no key).
        let key_columns = def.key_columns();
        let key = if key_columns.is_empty() {
            None
        } else {
            let names: Vec<String> = key_columns.iter().map(|c| c.name.clone()).collect();
            let arrays: Vec<ArrayRef> = key_columns
                .iter()
                .map(|c| match key_values.iter().find(|(n, _)| *n == c.name) {
                    Some((_, a)) => Arc::clone(a),
                    None => datafusion_common::arrow::array::new_null_array(&c.ty.arrow(), 1),
                })
                .collect();
            crate::codec::encode_keys(def.key_format, &arrays, &names, 0).map_err(SqlError::Semantic)?
        };
        if def.kind == SourceKind::Table && key.is_none() {
            return Err(SqlError::Semantic(format!("INSERT INTO {target}: a table row needs its PRIMARY KEY")));
        }
        // Every value column, in the declared order (a DELIMITED value is positional): the
        // ones not given are null.
        let mut ordered_fields = Vec::new();
        let mut ordered = Vec::new();
        for c in def.columns.iter().filter(|c| !c.key) {
            ordered_fields.push(Field::new(&c.name, c.ty.arrow(), true));
            ordered.push(match fields.iter().position(|f| f.name() == &c.name) {
                Some(at) => Arc::clone(&arrays[at]),
                None => datafusion_common::arrow::array::new_null_array(&c.ty.arrow(), 1),
            });
        }
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(ordered_fields)),
            ordered,
            &datafusion_common::arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
        )
        .map_err(|e| SqlError::Semantic(e.to_string()))?;
        let value = match crate::values::encode(def.value_format, &batch)?.pop() {
            Some(Some(v)) => v,
            _ => {
                return Err(SqlError::Semantic(format!(
                    "INSERT INTO {target}: a null value in the KAFKA format is a tombstone, not a row"
                )))
            }
        };
        let (partition, offset) =
            self.admin.produce(&self.config.bootstrap_servers, &def.topic, key.as_deref(), &value, timestamp)?;
        Ok(Outcome::Message(format!(
            "1 record written to {target} (topic {}, partition {partition}, offset {offset})",
            def.topic
        )))
    }
}
