//! ksqlDB's aggregate functions DataFusion has no counterpart for, as DataFusion
//! `AggregateUDF`s (so they run as any user UDAF does): `EARLIEST_BY_OFFSET(col)` and
//! `LATEST_BY_OFFSET(col)`, the first and the last non-null value of a group in the order its
//! records arrive (offset order, per partition of the group's repartition topic).

use std::sync::Arc;

use datafusion_common::arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion_common::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion_common::{DataFusionError, Result, ScalarValue};
use datafusion_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};

/// `EARLIEST_BY_OFFSET` (`latest == false`) or `LATEST_BY_OFFSET`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ByOffset {
    latest: bool,
    signature: Signature,
}

/// The two functions, to register with the planner.
pub(crate) fn by_offset() -> [Arc<AggregateUDF>; 2] {
    [false, true].map(|latest| {
        Arc::new(AggregateUDF::from(ByOffset { latest, signature: Signature::any(1, Volatility::Immutable) }))
    })
}

impl AggregateUDFImpl for ByOffset {
    fn name(&self) -> &str {
        if self.latest {
            "latest_by_offset"
        } else {
            "earliest_by_offset"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        arg_types.first().cloned().ok_or_else(|| DataFusionError::Plan(format!("{} takes one argument", self.name())))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let value = ScalarValue::try_new_null(args.return_field.data_type())?;
        Ok(Box::new(ByOffsetAccumulator { latest: self.latest, value, set: false }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(format!("{}[value]", args.name), args.return_type().clone(), true)),
            Arc::new(Field::new(format!("{}[set]", args.name), DataType::Boolean, true)),
        ])
    }
}

#[derive(Debug)]
struct ByOffsetAccumulator {
    latest: bool,
    value: ScalarValue,
    set: bool,
}

impl ByOffsetAccumulator {
    /// Takes row `i` of `values` if it is the one to keep.
    fn offer(&mut self, values: &ArrayRef, i: usize) -> Result<()> {
        if values.is_valid(i) && (self.latest || !self.set) {
            self.value = ScalarValue::try_from_array(values, i)?;
            self.set = true;
        }
        Ok(())
    }
}

impl Accumulator for ByOffsetAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(v) = values.first() else { return Ok(()) };
        for i in 0..v.len() {
            self.offer(v, i)?;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [values, set] = states else {
            return Err(DataFusionError::Internal("a by-offset state has two fields".into()));
        };
        let set = set
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| DataFusionError::Internal("a by-offset state's flag is boolean".into()))?;
        for i in 0..values.len() {
            if set.is_valid(i) && set.value(i) {
                self.offer(values, i)?;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.value.clone(), ScalarValue::Boolean(Some(self.set))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.value.size() - size_of_val(&self.value)
    }
}
