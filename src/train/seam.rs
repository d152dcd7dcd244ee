//! The seam itself: the [`Backend`] interface every trainer implements, and the sums a step leaves on it
//! ([`Gradient`], [`Sums`]).

use ndarray::{Array1, Array2};

use crate::data::RowSource;
use crate::error::{Error, Result};
use crate::optim::{OptimizerState, Update};
use crate::params::{Params, Shape, Sums};

use super::{Batch, BatchRows, Held, Reducer};

impl Shape {
    /// Checks that a batch's host rows have this many features (held rows were checked when they were held).
    pub fn check_batch(&self, batch: &Batch<'_>) -> Result<()> {
        match batch.rows() {
            BatchRows::Host(chunk) if chunk.x().ncols() != self.d => {
                Err(Error::shape("batch features", self.d, chunk.x().ncols()))
            }
            _ => Ok(()),
        }
    }

    /// Checks that a source has this shape.
    pub fn check_source(&self, source: &dyn RowSource) -> Result<()> {
        let found = Shape {
            d: source.features(),
            k: source.classes(),
        };
        if found != *self {
            return Err(Error::shape(
                format!("{}: features × classes", source.name()),
                format!("{} × {}", self.d, self.k),
                format!("{} × {}", found.d, found.k),
            ));
        }
        Ok(())
    }
}

/// Gradient sums of some rows: Σ xᵀ(s − y) [d, k], Σ (s − y) [k], and how many rows were summed. Not divided by the
/// row count: sums from several processes add up, and the update divides by the combined count.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradient {
    /// Σ xᵀ(s − y), [d, k].
    pub w: Array2<f64>,
    /// Σ (s − y), [k].
    pub b: Array1<f64>,
    /// Rows summed.
    pub rows: u64,
}

impl Gradient {
    /// No rows summed yet.
    pub fn zeros(shape: Shape) -> Self {
        Gradient {
            w: Array2::zeros((shape.d, shape.k)),
            b: Array1::zeros(shape.k),
            rows: 0,
        }
    }

    /// Checks that these are gradient sums of a model of `shape`.
    pub fn check(&self, shape: Shape) -> Result<()> {
        if self.w.dim() != (shape.d, shape.k) || self.b.len() != shape.k {
            return Err(Error::shape(
                "gradient sums G [d, k] and g_b [k]",
                format!("G {:?}, g_b [{}]", (shape.d, shape.k), shape.k),
                format!("G {:?}, g_b [{}]", self.w.dim(), self.b.len()),
            ));
        }
        Ok(())
    }

    /// Every value in one vector, the row count last (what a [`Reducer`] adds up).
    pub fn to_flat(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.w.iter().chain(self.b.iter()).copied().collect();
        v.push(self.rows as f64);
        v
    }

    /// The inverse of [`Gradient::to_flat`].
    pub fn from_flat(shape: Shape, flat: &[f64]) -> Result<Self> {
        let n = shape.d * shape.k;
        if flat.len() != n + shape.k + 1 {
            return Err(Error::shape("flat gradient", n + shape.k + 1, flat.len()));
        }
        let rows = flat[n + shape.k];
        if !(rows >= 0.0 && rows.fract() == 0.0 && rows < 2f64.powi(53)) {
            return Err(Error::Internal(format!(
                "combined row count {rows} is not a count"
            )));
        }
        Ok(Gradient {
            w: Array2::from_shape_vec((shape.d, shape.k), flat[..n].to_vec())
                .map_err(|e| Error::Internal(e.to_string()))?,
            b: Array1::from(flat[n..n + shape.k].to_vec()),
            rows: rows as u64,
        })
    }
}

/// A device that runs the training step: the interface shared by every trainer. See the module documentation.
///
/// Calls may be queued rather than executed (the GPU records many steps into one submission); any call that returns
/// values read from the device waits for what was queued before it. Errors are typed: a batch or data set that does
/// not fit the device is [`Error::Limits`], a shape mismatch [`Error::Shape`].
pub trait Backend {
    /// A one-line description of the device (adapter name and backend, or the CPU and its precision).
    fn device(&self) -> String;

    /// The model's shape.
    fn shape(&self) -> Shape;

    /// The most rows one batch may have on this device.
    fn max_batch(&self) -> usize;

    /// Copies every row of `source` (from its first) into the backend's memory; batches then name rows of it.
    fn hold(&mut self, source: &mut dyn RowSource) -> Result<Held>;

    /// Gives back the memory of a held set (streaming holds each chunk only while it trains on it). Batches of it
    /// already queued still run; the handle must not be used again.
    fn release(&mut self, set: Held) -> Result<()>;

    /// Where [`Backend::hold`] keeps rows: host memory (the CPU backends, and software adapters whose device memory
    /// is the host's), or memory of the device's own.
    fn holds_in_host_memory(&self) -> bool {
        true
    }

    /// Forward pass over `batch`: its loss and hit sums are added to the running [`Sums`], its gradient sums to the
    /// gradient accumulator.
    fn accumulate(&mut self, batch: &Batch<'_>) -> Result<()>;

    /// Forward pass only (evaluation): loss and hit sums are added to the running [`Sums`].
    fn forward(&mut self, batch: &Batch<'_>) -> Result<()>;

    /// Applies `update` to the accumulated gradient sums, divided by the rows they sum, and empties the accumulator.
    fn update(&mut self, update: &Update) -> Result<()>;

    /// Reads and empties the gradient accumulator.
    fn take_gradient(&mut self) -> Result<Gradient>;

    /// Replaces the gradient accumulator (after a combine).
    fn set_gradient(&mut self, g: &Gradient) -> Result<()>;

    /// Reads and resets the running loss and hit sums.
    fn take_sums(&mut self) -> Result<Sums>;

    /// Replaces the loss and hit sums (what the resumed epoch of a checkpoint starts from), so that the epoch's
    /// further batches add to them in the order the uninterrupted run added them.
    fn set_sums(&mut self, sums: Sums) -> Result<()>;

    /// The current parameters.
    fn params(&mut self) -> Result<Params>;

    /// Replaces the parameters (warm start, resume, full-batch methods).
    fn set_params(&mut self, p: &Params) -> Result<()>;

    /// Weights each row's loss by the weight of its class (`--class-weight`): J = (1/N)·Σ w_{y_i}·CE_i (+ penalty),
    /// so the residual of a row, and with it the gradient sums, is scaled by w_{y_i}; the divisor stays the row count.
    /// One positive, finite weight per class; None removes them. Applies to every later accumulate and forward pass.
    fn set_class_weights(&mut self, weights: Option<&[f32]>) -> Result<()>;

    /// The optimizer's state (what a checkpoint saves beside the weights).
    fn optimizer_state(&mut self) -> Result<OptimizerState>;

    /// Restores the optimizer's state.
    fn set_optimizer_state(&mut self, s: &OptimizerState) -> Result<()>;

    /// The combine point between the gradient sums and the update. With one process ([`Reducer::is_identity`]) the
    /// sums stay where they are; otherwise they are read, added across processes and written back.
    fn combine(&mut self, reducer: &mut dyn Reducer) -> Result<()> {
        if reducer.is_identity() {
            return Ok(());
        }
        let shape = self.shape();
        let mut flat = self.take_gradient()?.to_flat();
        reducer.allreduce(&mut flat)?;
        self.set_gradient(&Gradient::from_flat(shape, &flat)?)
    }
}
