//! The Processor API: what user code implements and what it can reach while processing.

pub(crate) mod context;
mod record;
mod serde;

pub use context::{BadInput, InitContext, ProcessorContext, PunctuationType, PunctuatorId, StoreHandle, TaskId};
pub use record::{Header, Headers, Record, RecordMetadata};
pub use serde::{nullable, required, Nullable, RecordSerde, Required, SharedSerde, UnitSerde};

use crate::error::Result;

/// A node of a topology that takes records of `(KIn, VIn)` and forwards `(KOut, VOut)`
/// (Kafka Streams' `Processor`). One instance exists per task; it is only ever called from
/// that task's thread.
pub trait Processor<KIn, VIn, KOut, VOut>: 'static {
    /// Called once when the task starts: get stores and schedule punctuations here.
    fn init(&mut self, ctx: &mut InitContext<'_>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one record; forward results with [`ProcessorContext::forward`].
    fn process(&mut self, record: Record<KIn, VIn>, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()>;

    /// A punctuation scheduled in [`init`](Self::init) is due at `time` (stream time or wall
    /// clock, as scheduled).
    fn punctuate(&mut self, id: PunctuatorId, time: i64, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> {
        let _ = (id, time, ctx);
        Ok(())
    }

    /// Forwards whatever the processor holds back (a batch it evaluates at once, say). The
    /// runtime calls it, parents before children, whenever the task's queued input runs dry
    /// and before every commit, so that nothing held is left out of the transaction of the
    /// input it came from. A processor that forwards as it goes has nothing to do here.
    fn flush(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called when the task closes.
    fn close(&mut self) {}
}

/// A processor from a closure over each record (no state, no punctuation).
pub fn from_fn<KIn, VIn, KOut, VOut, F>(f: F) -> FnProcessor<F>
where
    F: FnMut(Record<KIn, VIn>, &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> + 'static,
{
    FnProcessor(f)
}

/// The processor made by [`from_fn`].
pub struct FnProcessor<F>(F);

impl<F> std::fmt::Debug for FnProcessor<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnProcessor")
    }
}

impl<KIn, VIn, KOut, VOut, F> Processor<KIn, VIn, KOut, VOut> for FnProcessor<F>
where
    F: FnMut(Record<KIn, VIn>, &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> + 'static,
{
    fn process(&mut self, record: Record<KIn, VIn>, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> {
        (self.0)(record, ctx)
    }
}
