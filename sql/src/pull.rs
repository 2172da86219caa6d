//! Pull queries: `SELECT … FROM table [WHERE …] [LIMIT n]` answered from the live state store
//! of the persistent query that materializes the table, read through the engine's read-only
//! store views (committed state only; see `KafkaStreams::store`).
//!
//! The query is planned by DataFusion against the table as its store holds it (its columns,
//! and WINDOWSTART / WINDOWEND when windowed). The WHERE clause's conjuncts on the key column
//! (`k = v`, `k IN (…)`) become point lookups (a key prefix per window segment in a windowed
//! store), a key range on a string key becomes a range scan, and anything else a full scan;
//! the whole WHERE clause then runs over the rows found, so a lookup only narrows what is
//! read, never what is answered. Rows are made and filtered a batch at a time.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use datafusion_common::arrow::array::{new_empty_array, ArrayRef, Int64Array, RecordBatch};
use datafusion_common::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::DFSchema;
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::utils::split_conjunction;
use datafusion_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use datafusion_physical_expr::{create_physical_expr, PhysicalExpr};
use moldau_engine::state::StoreReader;

use crate::aggregate::AggregatePlan;
use crate::catalog::{Format, SourceDef};
use crate::error::{Result, SqlError};
use crate::eval::{filter_rows, project, Stateless};
use crate::push::Row;
use crate::statement::{Column, WindowKind};
use crate::types::SqlType;

/// The store a CTAS aggregation keeps its groups in.
pub const STORE: &str = "Aggregate-Materialize";

/// How many stored groups are made into rows at once.
const CHUNK: usize = 1024;

/// What a pull query answers: its columns and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct PullResult {
    /// Columns.
    pub columns: Vec<Column>,
    /// Rows, one JSON value per column.
    pub rows: Vec<Row>,
    /// The partitions other servers host, still to ask them for (see [`Self::gather`]).
    pub(crate) remote: Vec<RemotePart>,
    /// The query's text (asked of the other servers) and its LIMIT.
    pub(crate) sql: String,
    pub(crate) limit: Option<usize>,
}

/// Partitions of a table another server of the fleet hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemotePart {
    /// Its URL (its `application.server`).
    pub(crate) server: String,
    /// The partitions to ask it for.
    pub(crate) partitions: Vec<i32>,
}

/// The request property that restricts a forwarded pull query to the partitions it names
/// (comma-separated), which the server asked must host.
pub const PARTITIONS_PROPERTY: &str = "request.moldau.pull.partitions";

/// How long a server waits for another's part of a pull query.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

impl PullResult {
    /// Asks the other servers for the partitions they host (`PARTITIONS_PROPERTY`), adds their
    /// rows to this server's, and applies the LIMIT to the whole. Call it without holding the
    /// executor: another server's answer may need to reach it.
    pub fn gather(mut self) -> Result<PullResult> {
        for part in std::mem::take(&mut self.remote) {
            if self.limit.is_some_and(|n| self.rows.len() >= n) {
                break;
            }
            let rows = ask(&part, &self.sql)?;
            self.rows.extend(rows);
        }
        if let Some(n) = self.limit {
            self.rows.truncate(n);
        }
        Ok(self)
    }
}

/// The rows `part.server` answers for `part.partitions`.
fn ask(part: &RemotePart, sql: &str) -> Result<Vec<Row>> {
    use crate::client::{Client, Line};
    let fail = |e: String| {
        SqlError::Execution(format!("asking {} for partitions {:?} of the table: {e}", part.server, part.partitions))
    };
    let partitions = part.partitions.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let properties = serde_json::json!({ PARTITIONS_PROPERTY: partitions });
    let mut answer = Client::new(&part.server)?.query(sql, &properties).map_err(|e| fail(e.to_string()))?;
    let status = answer.status();
    // Waited in slices, so that the wait is bounded without reading a clock.
    const SLICE: Duration = Duration::from_millis(100);
    let mut slices = FORWARD_TIMEOUT.as_millis() / SLICE.as_millis();
    let mut lines = Vec::new();
    loop {
        match answer.next(SLICE).map_err(|e| fail(e.to_string()))? {
            Line::Value(v) => lines.push(v),
            Line::Pending if slices == 0 => {
                answer.cancel();
                return Err(fail(format!("no whole answer within {FORWARD_TIMEOUT:?}")));
            }
            Line::Pending => slices -= 1,
            Line::End => break,
        }
    }
    if status != 200 {
        let message = lines.first().and_then(|v| v.get("message")).and_then(|m| m.as_str()).unwrap_or("no message");
        return Err(fail(format!("status {status}: {message}")));
    }
    // The first line names the columns; each other one is a row.
    lines
        .into_iter()
        .skip(1)
        .map(|v| match v {
            serde_json::Value::Array(row) => Ok(row),
            other => Err(fail(format!("a row that is not an array: {other}"))),
        })
        .collect()
}

/// Which stored groups a pull query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lookup {
    /// These keys (encoded as stored).
    Keys(Vec<Vec<u8>>),
    /// Keys within bounds (encoded as stored; the encoding sorts like the keys).
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>),
    /// Every group.
    Scan,
}

/// The schema a pull query sees a materialized table with: its columns, then WINDOWSTART and
/// WINDOWEND when windowed and not among them.
pub fn table_schema(def: &SourceDef, windowed: bool) -> SchemaRef {
    let mut fields: Vec<Field> = def.columns.iter().map(|c| Field::new(&c.name, c.ty.arrow(), true)).collect();
    if windowed {
        for w in crate::planner::WINDOW_COLUMNS {
            if !def.columns.iter().any(|c| c.name == w) {
                fields.push(Field::new(w, DataType::Int64, true));
            }
        }
    }
    Arc::new(Schema::new(fields))
}

/// A time as a window store writes it (sign bit flipped, big-endian: byte order is time
/// order).
fn stored_time(b: &[u8]) -> i64 {
    let b: [u8; 8] = b.try_into().unwrap_or([0x80, 0, 0, 0, 0, 0, 0, 0]);
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// Runs the planned pull query `plan` over the table `def`, materialized by `agg`, whose
/// store views are `stores`.
pub fn run(
    plan: &LogicalPlan,
    def: &SourceDef,
    agg: &AggregatePlan,
    stores: &[(i32, StoreReader)],
) -> Result<PullResult> {
    let (input, limit) = crate::planner::take_limit(plan, "in a pull query")?;
    let LogicalPlan::Projection(p) = input else {
        return Err(SqlError::Unsupported(format!(
            "a pull query of this shape (filters, projections and LIMIT are supported): {}",
            input.display()
        )));
    };
    let mut scan = p.input.as_ref();
    let mut filter = None;
    if let LogicalPlan::Filter(f) = scan {
        filter = Some(f.predicate.clone());
        scan = f.input.as_ref();
    }
    match scan {
        LogicalPlan::TableScan(_) => {}
        LogicalPlan::SubqueryAlias(a) if matches!(a.input.as_ref(), LogicalPlan::TableScan(_)) => {}
        other => {
            return Err(SqlError::Unsupported(format!("{} in a pull query", other.display())));
        }
    }
    let scan_df: &DFSchema = scan.schema();
    let keys = def.key_columns();
    let lookup = match (&filter, keys.as_slice()) {
        (_, []) => return Err(SqlError::Semantic(format!("{} has no key column to look rows up by", def.name))),
        (Some(f), [key]) => lookup(f, key, def.key_format)?,
        (Some(f), keys) => lookup_composite(f, keys, def.key_format)?,
        (None, _) => Lookup::Scan,
    };
    let props = ExecutionProps::new();
    let ctx = PhysicalPlanningContext::default();
    let physical =
        |e: &Expr| create_physical_expr(e, scan_df, &props, &ctx).map_err(|e| SqlError::Semantic(e.to_string()));
    let filter = filter.as_ref().map(physical).transpose()?;
    let projection = p.expr.iter().map(physical).collect::<Result<Vec<_>>>()?;
    let out_schema = Arc::new(Schema::new(
        p.schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>(),
    ));
    let columns = crate::planner::answer_columns(&out_schema)?;
    let mut answer = Answer {
        def,
        agg,
        scan_schema: Arc::new(scan_df.as_arrow().clone()),
        filter,
        projection,
        out_schema,
        limit,
        rows: Vec::new(),
    };
    read(stores, &lookup, agg, &mut answer)?;
    Ok(PullResult { columns, rows: answer.rows, remote: Vec::new(), sql: String::new(), limit })
}

/// The lookups the WHERE clause allows: the key column compared with literals.
fn lookup(filter: &Expr, key: &Column, format: Format) -> Result<Lookup> {
    let is_key = |e: &Expr| matches!(strip(e), Expr::Column(c) if c.name == key.name);
    let encode = |e: &Expr| -> Result<Option<Vec<u8>>> {
        let Expr::Literal(v, _) = strip(e) else { return Ok(None) };
        let v = v
            .cast_to(&key.ty.arrow())
            .map_err(|err| SqlError::Semantic(format!("{} is {}; {v} is not one ({err})", key.name, key.ty)))?;
        let array = v.to_array().map_err(|e| SqlError::Semantic(e.to_string()))?;
        crate::codec::encode_key(format, &array, 0).map_err(SqlError::Semantic)
    };
    let ordered = key.ty == SqlType::String && format == Format::Kafka;
    let mut keys: Option<Vec<Vec<u8>>> = None;
    let (mut low, mut high) = (Bound::Unbounded, Bound::Unbounded);
    for c in split_conjunction(filter) {
        match c {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, lit) = if is_key(left) {
                    (*op, right.as_ref())
                } else if is_key(right) {
                    match op.swap() {
                        Some(op) => (op, left.as_ref()),
                        None => continue,
                    }
                } else {
                    continue;
                };
                let Some(v) = encode(lit)? else { continue };
                match op {
                    Operator::Eq => {
                        let mut one = vec![v];
                        if let Some(k) = &keys {
                            one.retain(|v| k.contains(v));
                        }
                        keys = Some(one);
                    }
                    Operator::Gt if ordered => low = Bound::Excluded(v),
                    Operator::GtEq if ordered => low = Bound::Included(v),
                    Operator::Lt if ordered => high = Bound::Excluded(v),
                    Operator::LtEq if ordered => high = Bound::Included(v),
                    _ => {}
                }
            }
            Expr::InList(l) if !l.negated && is_key(&l.expr) => {
                let mut list = Vec::with_capacity(l.list.len());
                for e in &l.list {
                    match encode(e)? {
                        Some(v) => list.push(v),
                        None => {
                            list.clear();
                            break;
                        }
                    }
                }
                if list.len() == l.list.len() {
                    if let Some(k) = &keys {
                        list.retain(|v| k.contains(v));
                    }
                    list.sort();
                    list.dedup();
                    keys = Some(list);
                }
            }
            Expr::Between(b) if !b.negated && is_key(&b.expr) && ordered => {
                if let (Some(lo), Some(hi)) = (encode(&b.low)?, encode(&b.high)?) {
                    low = Bound::Included(lo);
                    high = Bound::Included(hi);
                }
            }
            _ => {}
        }
    }
    Ok(match keys {
        Some(k) => Lookup::Keys(k),
        None if low != Bound::Unbounded || high != Bound::Unbounded => Lookup::Range(low, high),
        None => Lookup::Scan,
    })
}

/// The lookup of a key of several columns: one point lookup when the WHERE clause gives each
/// key column with `=`, else a scan.
fn lookup_composite(filter: &Expr, keys: &[Column], format: Format) -> Result<Lookup> {
    let mut values: Vec<Option<ArrayRef>> = vec![None; keys.len()];
    for c in split_conjunction(filter) {
        let Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) = c else { continue };
        let (column, literal) = match (strip(left), strip(right)) {
            (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => (c, v),
            _ => continue,
        };
        let Some(at) = keys.iter().position(|k| k.name == column.name) else { continue };
        let key = &keys[at];
        let v = literal
            .cast_to(&key.ty.arrow())
            .map_err(|err| SqlError::Semantic(format!("{} is {}; {literal} is not one ({err})", key.name, key.ty)))?;
        let array = v.to_array().map_err(|e| SqlError::Semantic(e.to_string()))?;
        if let Some(seen) = &values[at] {
            if seen.as_ref() != array.as_ref() {
                return Ok(Lookup::Keys(Vec::new())); // no key is both
            }
        }
        values[at] = Some(array);
    }
    let Some(arrays) = values.into_iter().collect::<Option<Vec<_>>>() else { return Ok(Lookup::Scan) };
    let names: Vec<String> = keys.iter().map(|k| k.name.clone()).collect();
    Ok(match crate::codec::encode_keys(format, &arrays, &names, 0).map_err(SqlError::Semantic)? {
        Some(k) => Lookup::Keys(vec![k]),
        None => Lookup::Keys(Vec::new()), // a null key column: no group has it
    })
}

fn as_slices(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// `e` without casts around it.
fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => strip(&c.expr),
        Expr::TryCast(c) => strip(&c.expr),
        other => other,
    }
}

/// The rows made so far and how to make more.
struct Answer<'a> {
    def: &'a SourceDef,
    agg: &'a AggregatePlan,
    scan_schema: SchemaRef,
    filter: Option<Arc<dyn PhysicalExpr>>,
    projection: Vec<Arc<dyn PhysicalExpr>>,
    out_schema: SchemaRef,
    limit: Option<usize>,
    rows: Vec<Row>,
}

/// A stored group: key bytes, window, state.
type Entry = (Vec<u8>, Option<(i64, i64)>, Vec<u8>);

impl Answer<'_> {
    fn full(&self) -> bool {
        self.limit.is_some_and(|n| self.rows.len() >= n)
    }

    /// Makes rows of `entries`, keeps those the WHERE clause keeps, up to the limit.
    fn add(&mut self, entries: &[Entry]) -> Result<()> {
        if entries.is_empty() || self.full() {
            return Ok(());
        }
        let stored: Vec<_> = entries.iter().map(|(k, w, s)| (k.as_slice(), *w, s.as_slice())).collect();
        let (out, kept) = self.agg.output_rows(&stored, self.def.key_format)?;
        // The table as the query sees it: its columns from the output, the window bounds
        // from the store.
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.scan_schema.fields().len());
        for f in self.scan_schema.fields() {
            let column = match out.schema().index_of(f.name()) {
                Ok(i) => Arc::clone(out.column(i)),
                Err(_) => {
                    let pick = |start: bool| -> ArrayRef {
                        Arc::new(Int64Array::from_iter(
                            kept.iter().map(|&i| entries[i].1.map(|(s, e)| if start { s } else { e })),
                        ))
                    };
                    match f.name().as_str() {
                        "windowstart" => pick(true),
                        "windowend" => pick(false),
                        _ => new_empty_array(f.data_type()),
                    }
                }
            };
            columns.push(column);
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.scan_schema), columns)
            .map_err(|e| SqlError::Execution(format!("pull query over {}: {e}", self.def.name)))?;
        let batch = match &self.filter {
            Some(f) => filter_rows(f, &batch, "WHERE")?.0,
            None => batch,
        };
        let out = project(&self.projection, &batch, &self.out_schema)?;
        let room = self.limit.map_or(out.num_rows(), |n| n.saturating_sub(self.rows.len()));
        let out = out.slice(0, out.num_rows().min(room));
        for row in Stateless::encode_json(&out)? {
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&row)
                .map_err(|e| SqlError::Execution(format!("a row of the pull query: {e}")))?;
            self.rows.push(
                self.out_schema
                    .fields()
                    .iter()
                    .map(|f| v.get(f.name()).cloned().unwrap_or(serde_json::Value::Null))
                    .collect(),
            );
        }
        Ok(())
    }
}

/// Reads the groups `lookup` names from every store view, a chunk at a time.
fn read(stores: &[(i32, StoreReader)], lookup: &Lookup, agg: &AggregatePlan, answer: &mut Answer<'_>) -> Result<()> {
    let closed = |e: moldau_engine::state::Error| match e {
        moldau_engine::state::Error::Closed { .. } => SqlError::Execution(
            "the table's state moved while it was read (a rebalance or a restart); ask again".into(),
        ),
        other => SqlError::Execution(format!("reading the table's state: {other}")),
    };
    let window = agg.window_kind();
    // Splits a window store's key into the group and its window.
    let split = |k: &[u8]| -> Option<(Vec<u8>, (i64, i64))> {
        match window? {
            WindowKind::Session { .. } => {
                let n = k.len().checked_sub(16)?;
                let (end, start) = (stored_time(&k[n..n + 8]), stored_time(&k[n + 8..]));
                Some((k[..n].to_vec(), (start, end)))
            }
            WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } => {
                let n = k.len().checked_sub(8)?;
                let start = stored_time(&k[n..]);
                let size = i64::try_from(size.as_millis()).unwrap_or(i64::MAX);
                Some((k[..n].to_vec(), (start, start.saturating_add(size))))
            }
        }
    };
    let mut chunk: Vec<Entry> = Vec::with_capacity(CHUNK);
    for (_, store) in stores {
        if answer.full() {
            break;
        }
        let mut failed = None;
        let mut visit = |k: &[u8], v: &[u8], want: Option<&[u8]>| -> bool {
            let entry = if window.is_some() {
                match split(k) {
                    Some((group, w)) if want.is_none_or(|g| g == group.as_slice()) => (group, Some(w), v.to_vec()),
                    _ => return true,
                }
            } else {
                (k.to_vec(), None, v.to_vec())
            };
            chunk.push(entry);
            if chunk.len() >= CHUNK {
                if let Err(e) = answer.add(&chunk) {
                    failed = Some(e);
                    return false;
                }
                chunk.clear();
            }
            !answer.full()
        };
        match (lookup, window.is_some()) {
            (Lookup::Keys(keys), false) => {
                for k in keys {
                    if let Some(v) = store.get(k).map_err(closed)? {
                        if !visit(k, &v, None) {
                            break;
                        }
                    }
                }
            }
            (Lookup::Keys(keys), true) => {
                for k in keys {
                    store.scan_segments(k, &mut |sk, v| visit(sk, v, Some(k))).map_err(closed)?;
                }
            }
            (Lookup::Range(lo, hi), false) => {
                store.scan(as_slices(lo), as_slices(hi), &mut |k, v| visit(k, v, None)).map_err(closed)?;
            }
            (Lookup::Range(..) | Lookup::Scan, true) => {
                store.scan_segments(&[], &mut |k, v| visit(k, v, None)).map_err(closed)?;
            }
            (Lookup::Scan, false) => {
                store.scan(Bound::Unbounded, Bound::Unbounded, &mut |k, v| visit(k, v, None)).map_err(closed)?;
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
    answer.add(&chunk)
}

#[cfg(test)]
mod tests {
    use datafusion_common::ScalarValue;

    use super::*;

    fn key() -> Column {
        Column { name: "k".into(), ty: SqlType::String, key: true }
    }

    fn col(name: &str) -> Expr {
        Expr::Column(datafusion_common::Column::from_name(name))
    }

    fn lit(s: &str) -> Expr {
        Expr::Literal(ScalarValue::Utf8(Some(s.into())), None)
    }

    fn num(n: i64) -> Expr {
        Expr::Literal(ScalarValue::Int64(Some(n)), None)
    }

    #[test]
    fn should_look_a_key_of_several_columns_up_when_each_is_given() {
        let keys = [
            Column { name: "a".into(), ty: SqlType::String, key: true },
            Column { name: "b".into(), ty: SqlType::BigInt, key: true },
        ];
        let f = col("a").eq(lit("x")).and(num(3).eq(col("b")));
        assert_eq!(
            lookup_composite(&f, &keys, Format::Json).unwrap(),
            Lookup::Keys(vec![br#"{"a":"x","b":3}"#.to_vec()])
        );
        assert_eq!(lookup_composite(&col("a").eq(lit("x")), &keys, Format::Json).unwrap(), Lookup::Scan);
        let both = col("a").eq(lit("x")).and(col("b").eq(num(3))).and(col("a").eq(lit("y")));
        assert_eq!(lookup_composite(&both, &keys, Format::Delimited).unwrap(), Lookup::Keys(vec![]));
    }

    #[test]
    fn should_turn_key_conditions_into_point_lookups_and_ranges() {
        let f = col("k").eq(lit("a")).and(col("n").gt(lit("3")));
        assert_eq!(lookup(&f, &key(), Format::Kafka).unwrap(), Lookup::Keys(vec![b"a".to_vec()]));
        let f = col("k").in_list(vec![lit("b"), lit("a"), lit("b")], false);
        assert_eq!(lookup(&f, &key(), Format::Kafka).unwrap(), Lookup::Keys(vec![b"a".to_vec(), b"b".to_vec()]));
        let f = col("k").gt_eq(lit("c")).and(lit("f").gt(col("k")));
        assert_eq!(
            lookup(&f, &key(), Format::Kafka).unwrap(),
            Lookup::Range(Bound::Included(b"c".to_vec()), Bound::Excluded(b"f".to_vec()))
        );
        let f = col("k").gt_eq(lit("c"));
        assert_eq!(lookup(&f, &key(), Format::Json).unwrap(), Lookup::Scan, "JSON keys do not sort like strings");
        let f = col("n").eq(lit("a")).or(col("k").eq(lit("b")));
        assert_eq!(lookup(&f, &key(), Format::Kafka).unwrap(), Lookup::Scan, "an OR reads everything");
        let f = col("k").eq(lit("a")).and(col("k").eq(lit("b")));
        assert_eq!(lookup(&f, &key(), Format::Kafka).unwrap(), Lookup::Keys(vec![]), "no key is both");
    }
}
