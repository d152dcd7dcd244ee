//! The full-batch objective J and ∇J over a source or a held set, as L-BFGS and `--check-every` call it.

use crate::data::RowSource;
use crate::error::Result;
use crate::params::Params;

use super::{full_batch, Backend, Gradient, Held, Local, Reducer};

/// The full-batch objective J and its gradient at `params` over the rows of a held set, each weighted by
/// `weights` (sample weights, one per row of the set) when given: what `--check-every` recomputes on the CPU to check
/// an L-BFGS run's evaluations. Leaves the backend's weights at `params`.
pub fn objective_held(
    backend: &mut dyn Backend,
    set: Held,
    params: &Params,
    (l2, weights): (f32, Option<&[f32]>),
) -> Result<(f64, Gradient)> {
    params.check(backend.shape())?;
    let mut rows = full_batch::Rows::Held(set);
    let (value, gradient, _) =
        full_batch::objective_at(backend, &mut rows, params, (l2, weights), &mut Local)?;
    Ok((value, gradient))
}

/// The full-batch objective and its gradient at `params` over every row of `source`, what L-BFGS and its line
/// search need: J = mean cross-entropy + λ/2·‖W‖² and ∇J (the bias unpenalised). The source is read a chunk at a
/// time and each chunk held by the backend only while its sums are accumulated (so sparse GPU backends, which take
/// no host batches, serve it too); the gradient sums of all chunks are accumulated in a fixed order and combined by
/// `reducer`. Leaves the backend's weights at `params`.
pub fn objective(
    backend: &mut dyn Backend,
    source: &mut dyn RowSource,
    params: &Params,
    l2: f32,
    reducer: &mut dyn Reducer,
) -> Result<(f64, Gradient)> {
    let shape = backend.shape();
    shape.check_source(source)?;
    params.check(shape)?;
    let chunk_rows = backend.max_batch().clamp(1, 1 << 16);
    let weights = source.sample_weights();
    let mut rows = full_batch::Rows::Streamed { source, chunk_rows };
    let (value, gradient, _) = full_batch::objective_at(
        backend,
        &mut rows,
        params,
        (l2, weights.as_deref()),
        reducer,
    )?;
    Ok((value, gradient))
}
