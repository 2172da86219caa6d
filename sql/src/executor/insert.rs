//! `INSERT INTO … VALUES`: one record written to a stream's or table's topic.

use std::sync::Arc;

use super::{Executor, Outcome};
use crate::catalog::Format;
use crate::error::{Result, SqlError};
use crate::eval::Stateless;
use crate::statement::SourceKind;

impl Executor {
    /// `INSERT INTO target [(cols)] VALUES (…)`: one record, its key from the key column, its
    /// value the other columns as JSON, its time `ROWTIME` when given.
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
        if def.value_format != Format::Json {
            return Err(SqlError::Unsupported(format!(
                "INSERT … VALUES into {target}: value_format {:?}",
                def.value_format
            )));
        }
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
        let mut key = None;
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
                key = crate::codec::encode_key(def.key_format, &array, 0).map_err(SqlError::Semantic)?;
            } else {
                fields.push(Field::new(name, col.ty.arrow(), true));
                arrays.push(array);
            }
        }
        if def.kind == SourceKind::Table && key.is_none() {
            return Err(SqlError::Semantic(format!("INSERT INTO {target}: a table row needs its PRIMARY KEY")));
        }
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            arrays,
            &datafusion_common::arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
        )
        .map_err(|e| SqlError::Semantic(e.to_string()))?;
        let value = Stateless::encode_json(&batch)?.pop().unwrap_or_else(|| b"{}".to_vec());
        let (partition, offset) =
            self.admin.produce(&self.config.bootstrap_servers, &def.topic, key.as_deref(), &value, timestamp)?;
        Ok(Outcome::Message(format!(
            "1 record written to {target} (topic {}, partition {partition}, offset {offset})",
            def.topic
        )))
    }
}
