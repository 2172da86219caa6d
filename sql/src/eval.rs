//! Stateless queries over record batches: a planned `SELECT … FROM s [WHERE …]` becomes
//! DataFusion physical expressions, evaluated over Arrow record batches decoded from the
//! records of a batch (filter, then projection), and encoded back into JSON record values.

use std::sync::Arc;

use datafusion_common::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion_common::arrow::compute::filter_record_batch;
use datafusion_common::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::{DFSchema, ScalarValue};
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::{Expr, LogicalPlan};
use datafusion_physical_expr::{create_physical_expr, PhysicalExpr};

use crate::catalog::{Format, SourceDef};
use crate::error::{Result, SqlError};
use crate::types::SqlType;
use crate::{codec, values};

/// One input record: key, value, timestamp (ms), partition, offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub value: Option<Vec<u8>>,
    /// Record timestamp, ms.
    pub timestamp: i64,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// A record that could not be decoded: its index in the batch and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Index in the input.
    pub index: usize,
    /// What is wrong.
    pub reason: String,
}

/// Decodes records of a source into a batch of its schema (columns, then pseudo columns).
pub(crate) struct Decoder<'a> {
    /// The source.
    pub(crate) source: &'a SourceDef,
    /// Its schema ([`SourceDef::schema`]).
    pub(crate) input_schema: &'a SchemaRef,
}

impl Decoder<'_> {
    /// Decodes `records` into one batch; records that do not match the declared schema are
    /// left out and reported.
    pub(crate) fn decode(&self, records: &[InputRecord]) -> Result<(RecordBatch, Vec<BadRecord>)> {
        let value_fields: Vec<Field> =
            self.source.columns.iter().filter(|c| !c.key).map(|c| Field::new(&c.name, c.ty.arrow(), true)).collect();

        let value_schema = Arc::new(Schema::new(value_fields));
        let format = self.source.value_format;
        let mut good = Vec::with_capacity(records.len());
        let mut bad = Vec::new();
        let key_columns = self.source.key_columns();
        // The common key, one STRING in the KAFKA format, is read straight into its array:
        // no value per record.
        let string_key =
            matches!(key_columns.as_slice(), [k] if k.ty == SqlType::String) && self.source.key_format == Format::Kafka;
        let mut strings: Vec<(usize, Option<&str>)> = Vec::with_capacity(if string_key { records.len() } else { 0 });
        let mut keys = Vec::with_capacity(if key_columns.is_empty() || string_key { 0 } else { records.len() });
        for (i, r) in records.iter().enumerate() {
            if r.value.is_none() {
                bad.push(BadRecord { index: i, reason: "no value (a tombstone)".into() });
                continue;
            }
            if string_key {
                match r.key.as_deref().map(std::str::from_utf8).transpose() {
                    Ok(k) => strings.push((i, k)),
                    Err(e) => {
                        bad.push(BadRecord { index: i, reason: format!("key is not UTF-8: {e}") });
                        continue;
                    }
                }
            } else if !key_columns.is_empty() {
                match codec::decode_keys(&key_columns, self.source.key_format, r.key.as_deref()) {
                    Ok(v) => keys.push((i, v)),
                    Err(reason) => {
                        bad.push(BadRecord { index: i, reason });
                        continue;
                    }
                }
            }
            good.push(i);
        }
        let value_of = |i: &usize| records[*i].value.as_deref().unwrap_or_default();
        // The whole batch at once; only when that fails is each record decoded alone, to
        // tell the bad ones apart (type errors show when the decoder flushes its rows).
        let all: Vec<&[u8]> = good.iter().map(value_of).collect();
        let values = match values::decode(format, &value_schema, &all) {
            Ok(b) => b,
            Err(_) => {
                good.retain(|i| match values::decode(format, &value_schema, &[value_of(i)]) {
                    Ok(_) => true,
                    Err(reason) => {
                        bad.push(BadRecord { index: *i, reason });
                        false
                    }
                });
                bad.sort_by_key(|b| b.index);
                keys.retain(|(i, _)| good.binary_search(i).is_ok());
                strings.retain(|(i, _)| good.binary_search(i).is_ok());
                let all: Vec<&[u8]> = good.iter().map(value_of).collect();
                values::decode(format, &value_schema, &all).map_err(SqlError::Semantic)?
            }
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.input_schema.fields().len());
        let mut value_index = 0;
        let mut key_index = 0;
        for c in &self.source.columns {
            if c.key {
                let at = key_index;
                key_index += 1;
                let values = keys.iter_mut().map(|(_, v)| std::mem::replace(&mut v[at], ScalarValue::Null));
                let array = if string_key {
                    Arc::new(StringArray::from_iter(strings.iter().map(|(_, k)| *k))) as ArrayRef
                } else if good.is_empty() {
                    datafusion_common::arrow::array::new_empty_array(&c.ty.arrow())
                } else {
                    ScalarValue::iter_to_array(values).map_err(|e| SqlError::Semantic(e.to_string()))?
                };
                columns.push(array);
            } else {
                columns.push(Arc::clone(values.column(value_index)));
                value_index += 1;
            }
        }
        let rowtime: Vec<i64> = match &self.source.timestamp {
            // The declared timestamp column is the record time (the record's own when null).
            Some(t) => {
                let at = self.source.columns.iter().position(|c| &c.name == t).expect("checked when created");
                let times = datafusion_common::arrow::compute::cast(&columns[at], &DataType::Int64)
                    .map_err(|e| SqlError::Semantic(e.to_string()))?;
                let times = times.as_any().downcast_ref::<Int64Array>().expect("cast to Int64");
                good.iter()
                    .enumerate()
                    .map(|(row, &i)| if times.is_valid(row) { times.value(row) } else { records[i].timestamp })
                    .collect()
            }
            None => good.iter().map(|&i| records[i].timestamp).collect(),
        };
        columns.push(Arc::new(TimestampMillisecondArray::from(rowtime)));
        columns.push(Arc::new(Int32Array::from_iter_values(good.iter().map(|&i| records[i].partition))));
        columns.push(Arc::new(Int64Array::from_iter_values(good.iter().map(|&i| records[i].offset))));
        let batch = RecordBatch::try_new(Arc::clone(self.input_schema), columns)
            .map_err(|e| SqlError::Semantic(e.to_string()))?;
        Ok((batch, bad))
    }
}

/// Hands the records of `held` (read from `topic`) that `bad` names to the engine's
/// deserialization handler: logged and skipped, sent to the dead-letter topic, or failing the
/// query, as its `default.deserialization.exception.handler` says. Counts them in `skipped`.
pub(crate) fn reject_bad<K, V>(
    ctx: &mut moldau_engine::ProcessorContext<'_, K, V>,
    topic: &str,
    held: &[InputRecord],
    bad: &[BadRecord],
    skipped: &std::sync::atomic::AtomicU64,
) -> moldau_engine::Result<()> {
    for b in bad {
        let r = &held[b.index];
        let input = moldau_engine::BadInput {
            topic,
            partition: r.partition,
            offset: r.offset,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            timestamp: r.timestamp,
        };
        ctx.reject(input, &format!("the record does not match the schema: {}", b.reason))?;
        skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

/// The indices of `0..n` not in `bad` (sorted by index).
pub(crate) fn good_rows(n: usize, bad: &[BadRecord]) -> Vec<usize> {
    let mut bad = bad.iter().map(|b| b.index).peekable();
    (0..n)
        .filter(|i| {
            if bad.peek() == Some(i) {
                bad.next();
                false
            } else {
                true
            }
        })
        .collect()
}

/// The ROWTIME column of a batch decoded from a source (see [`Decoder`]).
pub(crate) fn rowtime(batch: &RecordBatch) -> &TimestampMillisecondArray {
    batch
        .column_by_name("rowtime")
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        .expect("a decoded batch has ROWTIME")
}

/// Keeps the rows of `batch` for which `condition` (the `clause`'s, for errors) is true;
/// returns them and their indices in `batch`.
pub(crate) fn filter_rows(
    condition: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
    clause: &str,
) -> Result<(RecordBatch, Vec<usize>)> {
    let mask = condition
        .evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(|e| SqlError::Semantic(e.to_string()))?;
    let mask = mask
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| SqlError::Semantic(format!("the {clause} condition is not a boolean")))?;
    let rows = (0..mask.len()).filter(|&i| mask.is_valid(i) && mask.value(i)).collect();
    Ok((filter_record_batch(batch, mask).map_err(|e| SqlError::Semantic(e.to_string()))?, rows))
}

/// Evaluates `exprs` over `batch` into a batch of `schema` (as many rows as `batch`).
pub(crate) fn project(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = exprs
        .iter()
        .map(|p| p.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())))
        .collect::<datafusion_common::Result<Vec<_>>>()
        .map_err(|e| SqlError::Semantic(e.to_string()))?;
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &datafusion_common::arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(|e| SqlError::Semantic(e.to_string()))
}

/// A held input record from a source's record and its metadata.
pub(crate) fn held_record(
    r: moldau_engine::Record<Option<Vec<u8>>, Vec<u8>>,
    metadata: Option<&moldau_engine::RecordMetadata>,
) -> InputRecord {
    let (partition, offset) = metadata.map_or((-1, -1), |m| (m.partition, m.offset));
    InputRecord { key: r.key, value: Some(r.value), timestamp: r.timestamp, partition, offset }
}

/// A compiled stateless query.
#[derive(Debug)]
pub struct Stateless {
    source: SourceDef,
    input_schema: SchemaRef,
    /// The scan's schema as the planner knows it (qualified names), for expressions
    /// compiled later (PARTITION BY).
    input_df: Arc<DFSchema>,
    filter: Option<Arc<dyn PhysicalExpr>>,
    projection: Vec<Arc<dyn PhysicalExpr>>,
    output_schema: SchemaRef,
}

/// A stateless plan's parts: projection, filter, the scan's schema and the output schema.
struct Parts {
    exprs: Vec<Expr>,
    filter: Option<Expr>,
    input: Arc<DFSchema>,
    output: Arc<DFSchema>,
}

/// Unwraps the plan shapes a stateless query has: Projection over an optional Filter over a
/// (possibly aliased) TableScan.
fn parts(plan: &LogicalPlan) -> Result<Parts> {
    let LogicalPlan::Projection(p) = plan else {
        return Err(SqlError::Unsupported(format!("a stateless query of this shape: {}", plan.display())));
    };
    let mut input = p.input.as_ref();
    let mut filter = None;
    if let LogicalPlan::Filter(f) = input {
        filter = Some(f.predicate.clone());
        input = f.input.as_ref();
    }
    let scan_schema = Arc::clone(input.schema());
    match input {
        LogicalPlan::TableScan(_) => {}
        LogicalPlan::SubqueryAlias(a) if matches!(a.input.as_ref(), LogicalPlan::TableScan(_)) => {}
        other => {
            return Err(SqlError::Unsupported(format!("{} in a stateless query", other.display())));
        }
    }
    Ok(Parts { exprs: p.expr.clone(), filter, input: scan_schema, output: Arc::clone(&p.schema) })
}

impl Stateless {
    /// Compiles a planned query over `source` into physical expressions.
    pub fn compile(plan: &LogicalPlan, source: &SourceDef) -> Result<Self> {
        let Parts { exprs, filter, input, output } = parts(plan)?;
        let props = ExecutionProps::new();
        let ctx = PhysicalPlanningContext::default();
        let physical =
            |e: &Expr| create_physical_expr(e, &input, &props, &ctx).map_err(|e| SqlError::Semantic(e.to_string()));
        let filter = filter.as_ref().map(physical).transpose()?;
        let projection = exprs.iter().map(physical).collect::<Result<Vec<_>>>()?;
        let output_schema = Arc::new(Schema::new(
            output.fields().iter().map(|f| Field::new(f.name(), f.data_type().clone(), true)).collect::<Vec<_>>(),
        ));
        Ok(Stateless {
            source: source.clone(),
            input_schema: Arc::new(input.as_arrow().clone()),
            input_df: input,
            filter,
            projection,
            output_schema,
        })
    }

    /// The scan's schema, as the planner knows it.
    pub fn scan_schema(&self) -> &Arc<DFSchema> {
        &self.input_df
    }

    /// Compiles an expression over the scan (PARTITION BY).
    pub fn compile_expr(&self, e: &Expr) -> Result<Arc<dyn PhysicalExpr>> {
        create_physical_expr(e, &self.input_df, &ExecutionProps::new(), &PhysicalPlanningContext::default())
            .map_err(|e| SqlError::Semantic(e.to_string()))
    }

    /// The output columns.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// Decodes `records` into one batch of the source's columns; records that do not match
    /// the declared schema are left out and reported.
    pub fn decode(&self, records: &[InputRecord]) -> Result<(RecordBatch, Vec<BadRecord>)> {
        Decoder { source: &self.source, input_schema: &self.input_schema }.decode(records)
    }

    /// Runs the filter and the projection over a decoded batch.
    pub fn eval(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        Ok(self.eval_rows(batch)?.0)
    }

    /// Runs the filter and the projection over a decoded batch; also returns, for each output
    /// row, the index of the input row it came from.
    pub fn eval_rows(&self, batch: &RecordBatch) -> Result<(RecordBatch, Vec<usize>)> {
        let (batch, rows) = match &self.filter {
            Some(f) => filter_rows(f, batch, "WHERE")?,
            None => (batch.clone(), (0..batch.num_rows()).collect()),
        };
        Ok((project(&self.projection, &batch, &self.output_schema)?, rows))
    }

    /// The source the query reads.
    pub fn source(&self) -> &SourceDef {
        &self.source
    }

    /// Encodes each output row as a JSON object (one value per row).
    pub fn encode_json(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        values::encode_json(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::planner::Planner;
    use crate::statement::{parse, Statement};

    /// A catalog holding the one source `create` declares, and its definition.
    fn catalog_of(create: &str) -> (Catalog, SourceDef) {
        let Statement::CreateSource(s) = parse(create).unwrap().remove(0).statement else { panic!("{create}") };
        let def = SourceDef::from_create(&s).unwrap();
        let mut c = Catalog::new();
        c.add(def.clone(), false, false).unwrap();
        (c, def)
    }

    fn setup(query: &str) -> Stateless {
        let (c, def) = catalog_of(
            "CREATE STREAM pageviews (userid STRING KEY, page STRING, price DOUBLE, n BIGINT) WITH (kafka_topic='pv', value_format='JSON')",
        );
        let Statement::Query(q) = parse(query).unwrap().remove(0).statement else { panic!() };
        let plan = Planner::new().plan(&c, &q.sql).unwrap();
        Stateless::compile(&plan, &def).unwrap()
    }

    fn rec(i: i64, key: &str, value: &str) -> InputRecord {
        InputRecord { key: Some(key.into()), value: Some(value.into()), timestamp: 1000 + i, partition: 0, offset: i }
    }

    #[test]
    fn should_filter_and_project_a_batch_with_datafusion_functions() {
        let q = setup("SELECT userid, upper(page) AS page, price * 2 AS double_price, rowoffset FROM pageviews WHERE price > 1.5 AND page LIKE '/a%'");
        let records = vec![
            rec(0, "u1", r#"{"page":"/a/1","price":2.0,"n":1}"#),
            rec(1, "u2", r#"{"page":"/b","price":9.0}"#),
            rec(2, "u3", r#"{"page":"/a/2","price":1.0}"#),
            rec(3, "u4", r#"{"page":"/a/3","price":"not a number"}"#),
            rec(4, "u5", r#"{"page":"/a/4","price":4.5}"#),
        ];
        let (batch, bad) = q.decode(&records).unwrap();
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].index, 3);
        assert_eq!(batch.num_rows(), 4);
        let out = q.eval(&batch).unwrap();
        let rows: Vec<String> =
            Stateless::encode_json(&out).unwrap().into_iter().map(|r| String::from_utf8(r).unwrap()).collect();
        assert_eq!(
            rows,
            [
                r#"{"userid":"u1","page":"/A/1","double_price":4.0,"rowoffset":0}"#,
                r#"{"userid":"u5","page":"/A/4","double_price":9.0,"rowoffset":4}"#
            ]
        );
    }

    #[test]
    fn should_read_string_keys_and_report_the_ones_that_are_not_utf8() {
        let q = setup("SELECT userid, page FROM pageviews");
        let mut records = vec![
            rec(0, "u1", r#"{"page":"/a"}"#),
            rec(1, "u2", r#"{"page":"/b"}"#),
            rec(2, "u3", r#"{"page":"/c"}"#),
            rec(3, "u4", r#"{"page":7}"#),
            rec(4, "u5", r#"{"page":"/e"}"#),
        ];
        records[1].key = Some(vec![0xff, 0xfe]);
        records[2].key = None;
        let (batch, bad) = q.decode(&records).unwrap();
        let bad: Vec<usize> = bad.iter().map(|b| b.index).collect();
        assert_eq!(bad, [1, 3], "the key that is not UTF-8 and the value that is not the schema's");
        let out = q.eval(&batch).unwrap();
        let rows: Vec<String> =
            Stateless::encode_json(&out).unwrap().into_iter().map(|r| String::from_utf8(r).unwrap()).collect();
        assert_eq!(rows, [r#"{"userid":"u1","page":"/a"}"#, r#"{"page":"/c"}"#, r#"{"userid":"u5","page":"/e"}"#]);
    }

    #[test]
    fn should_refuse_plans_that_are_not_stateless() {
        let (c, def) =
            catalog_of("CREATE STREAM s (k STRING KEY, v BIGINT) WITH (kafka_topic='s', value_format='JSON')");
        let plan = Planner::new().plan(&c, "SELECT k, COUNT(*) FROM s GROUP BY k").unwrap();
        assert!(matches!(Stateless::compile(&plan, &def), Err(SqlError::Unsupported(_))));
    }
}
