//! Which stored groups a pull query reads: the filter's conjuncts on the key column (`k = v`,
//! `k IN (…)`) become point lookups, a key range on a string key a range scan, and anything
//! else a full scan. A lookup only narrows what is read; the scan still evaluates the whole
//! filter over the rows it finds.

use std::ops::Bound;

use datafusion_common::arrow::array::ArrayRef;
use datafusion_expr::utils::split_conjunction;
use datafusion_expr::{BinaryExpr, Expr, Operator};

use crate::catalog::Format;
use crate::error::{Result, SqlError};
use crate::statement::Column;
use crate::types::SqlType;

/// Which stored groups a pull query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// These keys (encoded as stored).
    Keys(Vec<Vec<u8>>),
    /// Keys within bounds (encoded as stored; the encoding sorts like the keys).
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>),
    /// Every group.
    Scan,
}

/// The lookups the WHERE clause allows: the key column compared with literals.
pub(crate) fn lookup(filter: &Expr, key: &Column, format: Format) -> Result<Lookup> {
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
pub(crate) fn lookup_composite(filter: &Expr, keys: &[Column], format: Format) -> Result<Lookup> {
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

pub(crate) fn as_slices(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
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
