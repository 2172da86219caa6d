//! The stages of an aggregation: the accumulators kept per group, the processor before the
//! store (WHERE, group key and aggregate arguments, a batch at a time) and the one after it
//! (aggregate values, HAVING and the projection, a batch at a time).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion_common::arrow::array::{
    new_null_array, Array, ArrayRef, Int64Array, RecordBatch, RecordBatchOptions, TimestampMillisecondArray,
};
use datafusion_common::arrow::compute::cast;
use datafusion_common::arrow::datatypes::{DataType, SchemaRef};
use datafusion_common::ScalarValue;
use datafusion_physical_expr::aggregate::AggregateFunctionExpr;
use datafusion_physical_expr::PhysicalExpr;
use moldau_dsl::state::Windowed;
use moldau_engine::{Processor, ProcessorContext, Record};

use super::columns::{KeyColumns, ValueColumns};
use super::native::{self, Native};
use super::AggregatePlan;
use crate::catalog::Format;
use crate::error::{Result, SqlError};
use crate::eval::{filter_rows, held_record, project, reject_bad, Decoder, InputRecord};
use crate::query::BATCH;
use crate::{codec, rowcodec};

/// The aggregate functions of a query, with the types of their arguments and states.
#[derive(Debug)]
pub(crate) struct Accumulators {
    aggs: Vec<AggregateFunctionExpr>,
    /// Every aggregate's argument expressions, in order.
    args: Vec<Arc<dyn PhysicalExpr>>,
    arg_types: Vec<DataType>,
    arg_counts: Vec<usize>,
    state_types: Vec<DataType>,
    state_counts: Vec<usize>,
    /// When every aggregate is a COUNT or a SUM of one BIGINT argument: their folds, done on
    /// the encoded states directly instead of through a DataFusion accumulator per record
    /// (the states are the same bytes DataFusion's accumulators give).
    native: Option<Vec<Native>>,
    /// When the aggregates fold natively and every argument is a BIGINT literal (`COUNT(*)`
    /// is `COUNT(1)`): those values. A record that stays in its task then carries no
    /// arguments at all (empty bytes), and [`Accumulators::step`] folds these instead.
    /// Kept as the bytes a record would carry, written once here, not per record.
    constant_args: Option<Vec<u8>>,
}

fn df(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Accumulators {
    pub(crate) fn new(aggs: Vec<AggregateFunctionExpr>, scan: &SchemaRef) -> Result<Self> {
        let mut args = Vec::new();
        let mut arg_types = Vec::new();
        let mut arg_counts = Vec::new();
        let mut state_types = Vec::new();
        let mut state_counts = Vec::new();
        for a in &aggs {
            let exprs = a.expressions();
            arg_counts.push(exprs.len());
            for e in exprs {
                arg_types.push(e.data_type(scan).map_err(|e| SqlError::Semantic(e.to_string()))?);
                args.push(e);
            }
            let fields = a.state_fields().map_err(|e| SqlError::Semantic(e.to_string()))?;
            state_counts.push(fields.len());
            state_types.extend(fields.iter().map(|f| f.data_type().clone()));
        }
        let native = native::kinds(&aggs, &arg_types, &arg_counts, &state_types, &state_counts);
        let constant_args = native.as_ref().and_then(|_| native::constants(&args)).map(|v| native::encode_all(&v));
        Ok(Accumulators { aggs, args, arg_types, arg_counts, state_types, state_counts, native, constant_args })
    }

    /// Folds one record's arguments into a group's state (empty: no state yet). A failure is
    /// logged and leaves the state as it was: one bad record never stops the query.
    pub(crate) fn step(&self, args: &[u8], state: Vec<u8>) -> Vec<u8> {
        let args = match &self.constant_args {
            Some(constants) if args.is_empty() => constants.as_slice(),
            _ => args,
        };
        let state = match self.native.as_deref() {
            Some(kinds) => match native::step_in_place(kinds, args, state) {
                Ok(next) => return next,
                Err(state) => match native::step(kinds, args, &state) {
                    Some(next) => return next,
                    None => state,
                },
            },
            None => state,
        };
        match self.try_step(args, &state) {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a record the aggregation could not fold in");
                state
            }
        }
    }

    /// Whether every aggregate folds natively (their arguments are BIGINTs).
    pub(super) fn is_native(&self) -> bool {
        self.native.is_some()
    }

    /// Whether every argument is a constant the fold knows: records need not carry them.
    pub(super) fn has_constant_args(&self) -> bool {
        self.constant_args.is_some()
    }

    /// The native folds, when every aggregate has one.
    pub(super) fn native_kinds(&self) -> Option<&[Native]> {
        self.native.as_deref()
    }

    /// How many aggregates there are.
    pub(super) fn len(&self) -> usize {
        self.aggs.len()
    }

    /// The fold through DataFusion's accumulators, whatever the aggregates are.
    #[cfg(test)]
    pub(super) fn general_step(&self, args: &[u8], state: &[u8]) -> std::result::Result<Vec<u8>, String> {
        self.try_step(args, state)
    }

    /// The values through DataFusion's accumulators, whatever the aggregates are.
    #[cfg(test)]
    pub(super) fn general_evaluate(&self, state: &[u8]) -> std::result::Result<Vec<ScalarValue>, String> {
        self.accumulated(state)
    }

    fn try_step(&self, args: &[u8], state: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let args = rowcodec::decode(args, &self.arg_types)?;
        let states = self.states(state)?;
        let mut out = Vec::with_capacity(state.len() + 16);
        let (mut a, mut s) = (0, 0);
        for (i, agg) in self.aggs.iter().enumerate() {
            let mut acc = agg.create_accumulator().map_err(df)?;
            if let Some(states) = &states {
                acc.merge_batch(&arrays(&states[s..s + self.state_counts[i]])?).map_err(df)?;
            }
            acc.update_batch(&arrays(&args[a..a + self.arg_counts[i]])?).map_err(df)?;
            rowcodec::encode(&acc.state().map_err(df)?, &mut out)?;
            a += self.arg_counts[i];
            s += self.state_counts[i];
        }
        Ok(out)
    }

    /// Merges two sessions' states.
    pub(crate) fn merge(&self, left: &[u8], right: &[u8]) -> Vec<u8> {
        let merged = (|| {
            let (Some(l), Some(r)) = (self.states(left)?, self.states(right)?) else {
                return Ok::<_, String>(if left.is_empty() { right.to_vec() } else { left.to_vec() });
            };
            let mut out = Vec::with_capacity(left.len() + right.len());
            let mut s = 0;
            for (i, agg) in self.aggs.iter().enumerate() {
                let mut acc = agg.create_accumulator().map_err(df)?;
                let n = self.state_counts[i];
                acc.merge_batch(&arrays(&l[s..s + n])?).map_err(df)?;
                acc.merge_batch(&arrays(&r[s..s + n])?).map_err(df)?;
                rowcodec::encode(&acc.state().map_err(df)?, &mut out)?;
                s += n;
            }
            Ok(out)
        })();
        merged.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not merge two sessions; keeping the newer");
            right.to_vec()
        })
    }

    fn states(&self, state: &[u8]) -> std::result::Result<Option<Vec<ScalarValue>>, String> {
        if state.is_empty() {
            return Ok(None);
        }
        rowcodec::decode(state, &self.state_types).map(Some)
    }

    /// The aggregate values of a state.
    pub(crate) fn evaluate(&self, state: &[u8]) -> std::result::Result<Vec<ScalarValue>, String> {
        if let Some(values) = self.native.as_deref().and_then(|kinds| native::values(kinds, state)) {
            return Ok(values);
        }
        self.accumulated(state)
    }

    fn accumulated(&self, state: &[u8]) -> std::result::Result<Vec<ScalarValue>, String> {
        let states = self.states(state)?;
        let mut out = Vec::with_capacity(self.aggs.len());
        let mut s = 0;
        for (i, agg) in self.aggs.iter().enumerate() {
            let mut acc = agg.create_accumulator().map_err(df)?;
            if let Some(states) = &states {
                acc.merge_batch(&arrays(&states[s..s + self.state_counts[i]])?).map_err(df)?;
            }
            out.push(acc.evaluate().map_err(df)?);
            s += self.state_counts[i];
        }
        Ok(out)
    }
}

/// One-row arrays of `values`.
fn arrays(values: &[ScalarValue]) -> std::result::Result<Vec<ArrayRef>, String> {
    values.iter().map(|v| v.to_array().map_err(df)).collect()
}

fn processing(e: impl std::fmt::Display) -> moldau_engine::Error {
    moldau_engine::Error::processing("SQL-AGGREGATE", e.to_string())
}

/// Before the store: keys each record by its group and carries the aggregate arguments.
pub(crate) struct PreAggregate {
    plan: Arc<AggregatePlan>,
    held: Vec<InputRecord>,
    skipped: Arc<AtomicU64>,
    /// The format the group keys are written in.
    key_format: Format,
}

impl PreAggregate {
    pub(crate) fn new(plan: Arc<AggregatePlan>, key_format: Format, skipped: Arc<AtomicU64>) -> Self {
        PreAggregate { plan, held: Vec::with_capacity(BATCH), skipped, key_format }
    }

    fn run(&mut self, ctx: &mut ProcessorContext<'_, Vec<u8>, Vec<u8>>) -> moldau_engine::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let plan = &self.plan;
        let mut held = std::mem::take(&mut self.held);
        let source_schema = plan.source.schema();
        let (batch, bad) =
            Decoder { source: &plan.source, input_schema: &source_schema }.decode(&held).map_err(processing)?;
        reject_bad(ctx, &plan.source.topic, &held, &bad, &self.skipped)?;
        // Grouped by the record key, written as it was read (one KAFKA-format column, whose
        // bytes read and written again are the same bytes): each record's own key is its
        // group key, handed on without writing it again. `good`: the record of each row.
        let own_keys = plan.keyed_by_group && self.key_format == Format::Kafka;
        let good: Vec<usize> = if own_keys {
            let mut bad = bad.iter().map(|b| b.index).peekable();
            (0..held.len()).filter(|i| bad.next_if_eq(i).is_none()).collect()
        } else {
            Vec::new()
        };
        let mut skipped = 0;
        // Window columns, when windowed, are filled per window after the store.
        let mut columns = batch.columns().to_vec();
        for f in plan.scan_schema.fields().iter().skip(columns.len()) {
            columns.push(new_null_array(f.data_type(), batch.num_rows()));
        }
        let batch = RecordBatch::try_new(Arc::clone(&plan.scan_schema), columns).map_err(processing)?;
        let (batch, kept) = match &plan.filter {
            Some(f) => {
                let (batch, kept) = filter_rows(f, &batch, "WHERE").map_err(processing)?;
                (batch, Some(kept))
            }
            None => (batch, None),
        };
        let rows = batch.num_rows();
        let group = plan
            .group
            .iter()
            .map(|g| g.evaluate(&batch).and_then(|v| v.into_array(rows)))
            .collect::<datafusion_common::Result<Vec<_>>>()
            .map_err(processing)?;
        let args = plan
            .accumulators
            .args
            .iter()
            .map(|a| a.evaluate(&batch).and_then(|v| v.into_array(rows)))
            .collect::<datafusion_common::Result<Vec<_>>>()
            .map_err(processing)?;
        let rowtime = batch
            .column_by_name("rowtime")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
            .ok_or_else(|| processing("the scan has no ROWTIME"))?;
        // BIGINT arguments of natively folded aggregates are written without a value per row.
        let native_args: Option<Vec<&Int64Array>> = plan
            .accumulators
            .is_native()
            .then(|| args.iter().map(|a| a.as_any().downcast_ref::<Int64Array>()).collect())
            .flatten();
        let mut row_args = Vec::with_capacity(args.len());
        // Only a record that is never written to a topic (a repartition) goes without its
        // arguments: what crosses a topic is whole for any version that reads it.
        let constant_args = own_keys && plan.accumulators.has_constant_args();
        for row in 0..rows {
            let key = if own_keys {
                let record = good.get(kept.as_ref().map_or(row, |k| k[row])).and_then(|&i| held.get_mut(i));
                Ok(record.and_then(|r| r.key.take()))
            } else {
                codec::encode_keys(self.key_format, &group, &plan.key_names, row)
            };
            let key = match key {
                Ok(Some(k)) => k,
                Ok(None) => {
                    skipped += 1;
                    tracing::debug!("skipping a record whose GROUP BY value is null");
                    continue;
                }
                Err(e) => {
                    skipped += 1;
                    tracing::warn!(error = %e, "skipping a record whose group key cannot be written");
                    continue;
                }
            };
            let mut value = Vec::with_capacity(if constant_args { 0 } else { 16 * args.len() });
            if constant_args {
                // Constant arguments, and the record stays in its task: nothing to carry.
            } else if let Some(ints) = &native_args {
                for a in ints {
                    native::write_i64(&mut value, a.is_valid(row).then(|| a.value(row)));
                }
            } else {
                row_args.clear();
                for a in &args {
                    row_args.push(ScalarValue::try_from_array(a, row).map_err(processing)?);
                }
                rowcodec::encode(&row_args, &mut value).map_err(processing)?;
            }
            ctx.forward(Record::new(key, value, rowtime.value(row)))?;
        }
        self.skipped.fetch_add(skipped, Ordering::Relaxed);
        held.clear();
        self.held = held;
        Ok(())
    }
}

impl Processor<Option<Vec<u8>>, Vec<u8>, Vec<u8>, Vec<u8>> for PreAggregate {
    fn process(
        &mut self,
        r: Record<Option<Vec<u8>>, Vec<u8>>,
        ctx: &mut ProcessorContext<'_, Vec<u8>, Vec<u8>>,
    ) -> moldau_engine::Result<()> {
        self.held.push(held_record(r, ctx.record_metadata()));
        if self.held.len() >= BATCH {
            self.run(ctx)?;
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, Vec<u8>, Vec<u8>>) -> moldau_engine::Result<()> {
        self.run(ctx)
    }
}

/// A stream grouped by its own key: the record keys are never null.
impl Processor<Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>> for PreAggregate {
    fn process(
        &mut self,
        r: Record<Vec<u8>, Vec<u8>>,
        ctx: &mut ProcessorContext<'_, Vec<u8>, Vec<u8>>,
    ) -> moldau_engine::Result<()> {
        let meta = ctx.record_metadata().map(|m| (m.partition, m.offset));
        let (partition, offset) = meta.unwrap_or((-1, -1));
        self.held.push(InputRecord {
            key: Some(r.key),
            value: Some(r.value),
            timestamp: r.timestamp,
            partition,
            offset,
        });
        if self.held.len() >= BATCH {
            self.run(ctx)?;
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, Vec<u8>, Vec<u8>>) -> moldau_engine::Result<()> {
        self.run(ctx)
    }
}

/// A key after the store: the group key, and the window when windowed.
pub(crate) trait GroupKey: Clone + 'static {
    /// The group key's bytes.
    fn group(&self) -> &[u8];
    /// The window (start, end), if any.
    fn window(&self) -> Option<(i64, i64)>;
    /// The output record's key: the group key, then for a window its start and end
    /// (big-endian ms, as the DSL's windowed serde writes them).
    fn into_output_key(self) -> Vec<u8>;
}

impl GroupKey for Vec<u8> {
    fn group(&self) -> &[u8] {
        self
    }
    fn window(&self) -> Option<(i64, i64)> {
        None
    }
    fn into_output_key(self) -> Vec<u8> {
        self
    }
}

impl GroupKey for Windowed<Vec<u8>> {
    fn group(&self) -> &[u8] {
        &self.key
    }
    fn window(&self) -> Option<(i64, i64)> {
        Some((self.window.start, self.window.end))
    }
    fn into_output_key(self) -> Vec<u8> {
        let mut k = self.key;
        k.reserve_exact(16);
        k.extend_from_slice(&self.window.start.to_be_bytes());
        k.extend_from_slice(&self.window.end.to_be_bytes());
        k
    }
}

/// After the store: aggregate values, HAVING and the projection, into JSON values.
pub(crate) struct PostAggregate<K> {
    plan: Arc<AggregatePlan>,
    held: Vec<(K, Option<Vec<u8>>, i64)>,
    /// The format of the group keys.
    key_format: Format,
    /// The format of the values it writes.
    value_format: Format,
}

impl<K> PostAggregate<K> {
    pub(crate) fn new(plan: Arc<AggregatePlan>, key_format: Format, value_format: Format) -> Self {
        PostAggregate { plan, held: Vec::new(), key_format, value_format }
    }
}

type Out = Option<Vec<u8>>;

/// One stored aggregate: the group key's bytes, the window (start, end) when windowed, and
/// the accumulators' states.
pub(crate) type StoredGroup<'a> = (&'a [u8], Option<(i64, i64)>, &'a [u8]);

impl AggregatePlan {
    /// The output rows of stored aggregates (group keys in `key_format`): each group's
    /// aggregate values, HAVING, and the projection (every output column). Returns them with,
    /// for each row, the index of the entry it came from; entries HAVING leaves out or whose
    /// state cannot be read have no row.
    pub(crate) fn output_rows(
        &self,
        entries: &[StoredGroup<'_>],
        key_format: Format,
    ) -> Result<(RecordBatch, Vec<usize>)> {
        let fail = |e: String| SqlError::Execution(e);
        let mut rows: Vec<usize> = Vec::with_capacity(entries.len());
        let mut keys = KeyColumns::new(&self.key_columns, key_format, entries.len());
        let mut values = ValueColumns::new(&self.accumulators, entries.len());
        let mut starts = Vec::new();
        let mut ends = Vec::new();
        for (i, (group, window, state)) in entries.iter().enumerate() {
            // The values are read first and appended once the key is: a row is whole or left out.
            match values.read(state).and_then(|()| keys.append(group)) {
                Ok(()) => {
                    values.push();
                    if let Some((s, e)) = window {
                        starts.push(*s);
                        ends.push(*e);
                    }
                    rows.push(i);
                }
                Err(e) => tracing::warn!(error = %e, "an aggregate that cannot be read; leaving it out"),
            }
        }
        if rows.is_empty() {
            return Ok((RecordBatch::new_empty(Arc::clone(&self.output_schema)), rows));
        }
        let mut columns: Vec<ArrayRef> = keys.finish().map_err(|e| fail(e.to_string()))?;
        if self.windowed() {
            columns.push(Arc::new(Int64Array::from(starts)));
            columns.push(Arc::new(Int64Array::from(ends)));
        }
        columns.extend(values.finish().map_err(|e| fail(e.to_string()))?);
        let columns = columns
            .into_iter()
            .zip(self.agg_schema.fields())
            .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c) } else { cast(&c, f.data_type()) })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| fail(e.to_string()))?;
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(&self.agg_schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows.len())),
        )
        .map_err(|e| fail(e.to_string()))?;
        let (batch, kept) = match &self.having {
            Some(h) => {
                let (batch, kept) = filter_rows(h, &batch, "HAVING")?;
                (batch, kept.into_iter().map(|i| rows[i]).collect())
            }
            None => (batch, rows),
        };
        Ok((project(&self.projection, &batch, &self.output_schema)?, kept))
    }
}

impl<K: GroupKey> PostAggregate<K> {
    fn run(&mut self, ctx: &mut ProcessorContext<'_, Out, Out>) -> moldau_engine::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let plan = Arc::clone(&self.plan);
        // Deletes, undecodable states and groups HAVING leaves out are forwarded as
        // tombstones.
        let entries: Vec<StoredGroup<'_>> = held
            .iter()
            .filter_map(|(key, state, _)| state.as_deref().map(|s| (key.group(), key.window(), s)))
            .collect();
        let entry_of: Vec<usize> =
            held.iter().enumerate().filter(|(_, (_, state, _))| state.is_some()).map(|(i, _)| i).collect();
        let mut values_out: Vec<Option<Vec<u8>>> = vec![None; held.len()];
        let (out, kept) = plan.output_rows(&entries, self.key_format).map_err(processing)?;
        if !kept.is_empty() {
            let value_batch = out.project(&plan.value_columns).map_err(processing)?;
            let encoded = crate::values::encode(self.value_format, &value_batch).map_err(processing)?;
            if encoded.len() != kept.len() {
                return Err(processing("fewer encoded rows than rows"));
            }
            for (i, value) in kept.into_iter().zip(encoded) {
                values_out[entry_of[i]] = value;
            }
        }
        drop(entries);
        // In input order; deleted groups, and groups HAVING no longer keeps, are deleted
        // downstream.
        for ((key, _, ts), value) in held.into_iter().zip(values_out) {
            ctx.forward(Record::new(Some(key.into_output_key()), value, ts))?;
        }
        Ok(())
    }
}

impl<K: GroupKey> Processor<K, Option<Vec<u8>>, Out, Out> for PostAggregate<K> {
    fn process(
        &mut self,
        r: Record<K, Option<Vec<u8>>>,
        ctx: &mut ProcessorContext<'_, Out, Out>,
    ) -> moldau_engine::Result<()> {
        self.held.push((r.key, r.value, r.timestamp));
        if self.held.len() >= BATCH {
            self.run(ctx)?;
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, Out, Out>) -> moldau_engine::Result<()> {
        self.run(ctx)
    }
}
