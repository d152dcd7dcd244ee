//! Loss and accuracy of the current weights over held-out rows, held or streamed.

use crate::data::RowSource;
use crate::error::Result;

use super::{for_each_held_chunk, Backend, Batch, Held, Sums};

/// Rows per evaluation batch: large enough to amortise a dispatch, at least the training batch, within the device.
fn eval_rows(backend: &dyn Backend, batch: usize) -> usize {
    batch.max(4096).min(backend.max_batch()).max(1)
}

/// Loss and accuracy of the current weights on every row of a held set.
pub fn evaluate(backend: &mut dyn Backend, set: Held, batch: usize) -> Result<Sums> {
    let rows = eval_rows(backend, batch);
    let order = set.order(0, 0, false);
    for slice in order.chunks(rows) {
        backend.forward(&Batch::held(set, slice)?)?;
    }
    backend.take_sums()
}

/// Loss and accuracy of the current weights on every row of `source`, read a chunk of `chunk_rows` at a time and
/// held only while it is evaluated.
pub fn evaluate_streamed(
    backend: &mut dyn Backend,
    source: &mut dyn RowSource,
    chunk_rows: usize,
    batch: usize,
) -> Result<Sums> {
    let rows = eval_rows(backend, batch);
    for_each_held_chunk(backend, source, chunk_rows, |backend, set, _| {
        let order = set.order(0, 0, false);
        for slice in order.chunks(rows) {
            backend.forward(&Batch::held(set, slice)?)?;
        }
        Ok(())
    })?;
    backend.take_sums()
}
