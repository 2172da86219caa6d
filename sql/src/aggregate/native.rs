//! COUNT and SUM of BIGINT folded on their encoded states: the states are the bytes
//! DataFusion's accumulators would give (one nullable BIGINT each, as `rowcodec` writes it),
//! without creating an accumulator and one-row arrays per record. Anything else takes the
//! general path through DataFusion's accumulators.

use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::ScalarValue;
use std::sync::Arc;

use datafusion_physical_expr::aggregate::AggregateFunctionExpr;
use datafusion_physical_expr::expressions::Literal;
use datafusion_physical_expr::PhysicalExpr;

/// An aggregate whose state is one nullable BIGINT, folded without an accumulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Native {
    /// COUNT: the number of non-null arguments (never null).
    Count,
    /// SUM: the wrapping sum of the non-null arguments (null before the first).
    Sum,
}

/// Reads one nullable BIGINT as rowcodec writes it (a presence byte, then 8 bytes).
fn read_i64(bytes: &[u8], at: &mut usize) -> Option<Option<i64>> {
    match bytes.get(*at)? {
        0 => {
            *at += 1;
            Some(None)
        }
        1 => {
            let v = i64::from_le_bytes(bytes.get(*at + 1..*at + 9)?.try_into().ok()?);
            *at += 9;
            Some(Some(v))
        }
        _ => None,
    }
}

/// Writes one nullable BIGINT as rowcodec does.
pub(super) fn write_i64(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// The new value of one fold.
fn fold(kind: Native, arg: Option<i64>, old: Option<i64>) -> Option<i64> {
    match (kind, arg) {
        (Native::Count, arg) => Some(old.unwrap_or(0) + i64::from(arg.is_some())),
        (Native::Sum, Some(x)) => Some(old.unwrap_or(0).wrapping_add(x)),
        (Native::Sum, None) => old,
    }
}

/// The native fold of one record's `args` into `state` (empty: none yet); `None` when the
/// bytes are not what the folds expect (the general path then says what is wrong).
pub(super) fn step(kinds: &[Native], args: &[u8], state: &[u8]) -> Option<Vec<u8>> {
    let (mut a, mut s) = (0, 0);
    let mut out = Vec::with_capacity(9 * kinds.len());
    for &k in kinds {
        let arg = read_i64(args, &mut a)?;
        let old = if state.is_empty() { None } else { read_i64(state, &mut s)? };
        write_i64(&mut out, fold(k, arg, old));
    }
    (a == args.len() && s == state.len()).then_some(out)
}

/// The values of `args` when every one is a BIGINT literal (null or not).
pub(super) fn constants(args: &[Arc<dyn PhysicalExpr>]) -> Option<Vec<Option<i64>>> {
    args.iter()
        .map(|a| match a.downcast_ref::<Literal>()?.value() {
            ScalarValue::Int64(v) => Some(*v),
            _ => None,
        })
        .collect()
}

/// The argument bytes of `values`, as a record would carry them.
pub(super) fn encode_all(values: &[Option<i64>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 * values.len());
    for v in values {
        write_i64(&mut out, *v);
    }
    out
}

/// How many folds [`step_in_place`] takes.
const IN_PLACE: usize = 4;

/// [`step`] writing the new state over the old one's buffer (no allocation per record); the
/// state comes back untouched as the error when the bytes are not what the folds expect, or
/// when there are more than a few folds.
pub(super) fn step_in_place(kinds: &[Native], args: &[u8], mut state: Vec<u8>) -> Result<Vec<u8>, Vec<u8>> {
    let mut new = [None; IN_PLACE];
    if kinds.len() > IN_PLACE {
        return Err(state);
    }
    let (mut a, mut s) = (0, 0);
    for (&k, slot) in kinds.iter().zip(new.iter_mut()) {
        let (Some(arg), Some(old)) =
            (read_i64(args, &mut a), if state.is_empty() { Some(None) } else { read_i64(&state, &mut s) })
        else {
            return Err(state);
        };
        *slot = fold(k, arg, old);
    }
    if a != args.len() || s != state.len() {
        return Err(state);
    }
    state.clear();
    for v in &new[..kinds.len()] {
        write_i64(&mut state, *v);
    }
    Ok(state)
}

/// Reads the values of natively folded aggregates from `state` into `out` (cleared first);
/// false when the bytes are not their states.
pub(super) fn read_values(kinds: &[Native], state: &[u8], out: &mut Vec<Option<i64>>) -> bool {
    out.clear();
    let mut s = 0;
    for k in kinds {
        let v = if state.is_empty() {
            None
        } else {
            match read_i64(state, &mut s) {
                Some(v) => v,
                None => return false,
            }
        };
        out.push(match k {
            Native::Count => Some(v.unwrap_or(0)),
            Native::Sum => v,
        });
    }
    s == state.len()
}

/// The values of natively folded aggregates.
pub(super) fn values(kinds: &[Native], state: &[u8]) -> Option<Vec<ScalarValue>> {
    let mut out = Vec::with_capacity(kinds.len());
    read_values(kinds, state, &mut out).then(|| out.into_iter().map(ScalarValue::Int64).collect())
}

/// The native folds of `aggs`, when every one of them has one: a COUNT or a non-DISTINCT SUM
/// of one BIGINT argument whose state is one BIGINT.
pub(super) fn kinds(
    aggs: &[AggregateFunctionExpr],
    arg_types: &[DataType],
    arg_counts: &[usize],
    state_types: &[DataType],
    state_counts: &[usize],
) -> Option<Vec<Native>> {
    if state_counts.iter().any(|&n| n != 1) || arg_counts.iter().any(|&n| n != 1) {
        return None;
    }
    aggs.iter()
        .enumerate()
        .map(|(i, a)| {
            let bigint = arg_types.get(i) == Some(&DataType::Int64)
                && state_types.get(i) == Some(&DataType::Int64)
                && !a.is_distinct();
            match a.fun().name() {
                "count" if bigint => Some(Native::Count),
                "sum" if bigint => Some(Native::Sum),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion_common::arrow::datatypes::{Field, Schema, SchemaRef};
    use datafusion_physical_expr::aggregate::AggregateExprBuilder;
    use datafusion_physical_expr::expressions::col;

    use super::super::stages::Accumulators;
    use super::*;
    use crate::rowcodec;

    fn accumulators(funs: &[&str], distinct: bool) -> Accumulators {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let udafs = datafusion_functions_aggregate::all_default_aggregate_functions();
        let aggs = funs
            .iter()
            .map(|f| {
                let udaf = udafs.iter().find(|u| u.name() == *f).expect("a default aggregate");
                AggregateExprBuilder::new(Arc::clone(udaf), vec![col("x", &schema).expect("column x")])
                    .schema(Arc::clone(&schema))
                    .alias(*f)
                    .with_distinct(distinct)
                    .build()
                    .expect("an aggregate")
            })
            .collect();
        Accumulators::new(aggs, &schema).expect("accumulators")
    }

    fn args(funs: usize, v: Option<i64>) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..funs {
            rowcodec::encode(&[ScalarValue::Int64(v)], &mut out).expect("encoded");
        }
        out
    }

    #[test]
    fn should_fold_count_and_sum_to_the_bytes_datafusions_accumulators_give() {
        let acc = accumulators(&["count", "sum", "count"], false);
        assert!(acc.is_native(), "COUNT and SUM of a BIGINT fold natively");
        let inputs = [None, Some(5), Some(-3), None, Some(i64::MAX), Some(7)];
        let mut state = Vec::new();
        for v in inputs {
            let a = args(3, v);
            let general = acc.general_step(&a, &state).expect("the general path folds it");
            let native = acc.step(&a, state.clone());
            assert_eq!(native, general, "the state after folding {v:?}");
            assert_eq!(
                acc.evaluate(&native).expect("native values"),
                acc.general_evaluate(&native).expect("general values"),
                "the values after folding {v:?}"
            );
            state = native;
        }
        let values = acc.evaluate(&state).expect("values");
        // SUM wraps on overflow, as DataFusion's does.
        let sum = 5i64 - 3 + 7;
        assert_eq!(
            values,
            vec![
                ScalarValue::Int64(Some(4)),
                ScalarValue::Int64(Some(sum.wrapping_add(i64::MAX))),
                ScalarValue::Int64(Some(4))
            ]
        );
    }

    #[test]
    fn should_give_the_values_of_an_empty_state_as_datafusion_does() {
        let acc = accumulators(&["count", "sum"], false);
        assert_eq!(acc.evaluate(&[]).expect("native"), acc.general_evaluate(&[]).expect("general"));
        let nulls = acc.step(&args(2, None), Vec::new());
        assert_eq!(acc.evaluate(&nulls).expect("native"), vec![ScalarValue::Int64(Some(0)), ScalarValue::Int64(None)]);
    }

    #[test]
    fn should_leave_distinct_and_other_aggregates_to_datafusion() {
        assert!(!accumulators(&["count"], true).is_native(), "COUNT(DISTINCT) keeps a set");
        assert!(!accumulators(&["count", "avg"], false).is_native(), "AVG keeps a count and a sum");
        assert!(!accumulators(&["max"], false).is_native());
    }

    #[test]
    fn should_write_arguments_as_rowcodec_does() {
        for v in [None, Some(0), Some(-1), Some(i64::MIN), Some(42)] {
            let mut native = Vec::new();
            write_i64(&mut native, v);
            assert_eq!(native, args(1, v), "{v:?}");
        }
    }

    #[test]
    fn should_fold_in_place_to_the_bytes_it_folds_to_in_a_new_buffer() {
        let kinds = [Native::Count, Native::Sum, Native::Sum];
        let mut state = Vec::new();
        for v in [None, Some(5), Some(-3), None, Some(i64::MAX)] {
            let a = args(3, v);
            let expected = step(&kinds, &a, &state).expect("a fold");
            let at = state.as_ptr();
            let reused = state.capacity() >= expected.len();
            state = step_in_place(&kinds, &a, state).expect("a fold in place");
            assert_eq!(state, expected, "after {v:?}");
            if reused {
                assert_eq!(state.as_ptr(), at, "the same buffer");
            }
        }
        assert_eq!(step_in_place(&kinds, &[7], state.clone()), Err(state.clone()), "bad arguments");
        assert_eq!(step_in_place(&kinds, &args(3, None), vec![1, 2]), Err(vec![1, 2]), "a bad state");
        let many = [Native::Count; IN_PLACE + 1];
        assert_eq!(step_in_place(&many, &args(IN_PLACE + 1, None), Vec::new()), Err(Vec::new()));
    }

    #[test]
    fn should_fold_constant_arguments_a_record_does_not_carry() {
        use datafusion_physical_expr::expressions::lit;
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let udafs = datafusion_functions_aggregate::all_default_aggregate_functions();
        let build = |f: &str, v: ScalarValue| {
            let udaf = udafs.iter().find(|u| u.name() == f).expect("a default aggregate");
            AggregateExprBuilder::new(Arc::clone(udaf), vec![lit(v)])
                .schema(Arc::clone(&schema))
                .alias(f)
                .build()
                .expect("an aggregate")
        };
        // COUNT(*) is COUNT(1); SUM(2) adds 2 per record; COUNT(NULL) counts nothing.
        let acc = Accumulators::new(
            vec![
                build("count", ScalarValue::Int64(Some(1))),
                build("sum", ScalarValue::Int64(Some(2))),
                build("count", ScalarValue::Int64(None)),
            ],
            &schema,
        )
        .expect("accumulators");
        assert!(acc.has_constant_args());
        let carried = encode_all(&[Some(1), Some(2), None]);
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            without = acc.step(&[], without);
            with = acc.step(&carried, with);
            assert_eq!(without, with, "no arguments fold as the constants");
        }
        assert_eq!(
            acc.evaluate(&without).expect("values"),
            vec![ScalarValue::Int64(Some(3)), ScalarValue::Int64(Some(6)), ScalarValue::Int64(Some(0))]
        );
        assert!(!accumulators(&["count"], false).has_constant_args(), "a column is not a constant");
    }

    #[test]
    fn should_refuse_bytes_that_are_not_the_expected_states() {
        let kinds = [Native::Count];
        assert_eq!(step(&kinds, &[7], &[]), None, "a bad presence byte");
        assert_eq!(step(&kinds, &[1, 0, 0], &[]), None, "a short value");
        assert_eq!(step(&kinds, &args(2, Some(1)), &[]), None, "bytes left over");
        assert_eq!(values(&kinds, &[1, 2]), None);
    }
}
