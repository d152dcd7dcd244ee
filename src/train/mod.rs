//! The training seam: one [`Backend`] interface that every trainer implements, and the loop ([`fit`]) and the
//! full-batch objective ([`objective`]) written once over it. docs/ARCHITECTURE.md draws the whole picture.
//!
//! A step is three calls, so that something can stand between the gradient and the update:
//!
//! ```text
//!   accumulate(batch)   forward pass + gradient *sums* Σ xᵀ(s − y), Σ (s − y) and loss / hit sums, left on the device
//!   combine(reducer)    the point where sums from several processes are added (identity today; an allreduce later)
//!   update(step)        the optimizer turns the (combined) sums into new weights; its state lives with the backend
//! ```
//!
//! Data reaches a backend only through a [`RowSource`] of checked row chunks: the backend either copies the whole
//! source into its own memory once ([`Backend::hold`], resident data) and is then given batches as row indices into
//! it, or is handed each batch as host rows ([`Batch::host`]). Streamed data and [`objective`] hold one chunk at a
//! time and release it ([`Backend::release`]). Nothing
//! above the source indexes the data itself; the shuffle is a permutation of a held set's own rows ([`Held::order`]).
//!
//! Progress, the JSON log and the `--check-every` shadow are [`Observer`]s: they see every step and every epoch from
//! outside the interface, and get the backend to read weights from when they need them.
//!
//! Minibatch optimizers are steps of that loop; full-batch L-BFGS ([`Optimizer::Lbfgs`], `full_batch.rs`) drives
//! the same three calls over every row for each evaluation of the objective, and keeps its own state on the host.
//!
//! Implementors: [`crate::cpu::CpuBackend`] (f32 and f64), [`crate::cpu::FastCpu`], [`crate::gpu::GpuBackend`]
//! (dense and sparse). Planned: a distributed one whose [`Reducer`] is an MPI allreduce.

use std::time::Instant;

use ndarray::{Array1, Array2};

use serde::Serialize;

use crate::config::TrainConfig;
use std::sync::Arc;

pub use crate::data::held_row_bytes;
use crate::data::{Chunk, HostRows, InMemory, RowSource, SparseChunk, SparseInMemory, SparseRows};
use crate::error::{Error, Result};
pub use crate::optim::{state_of, Optimizer, OptimizerState, Update};
pub use crate::params::{check_class_weights, Params, Shape};
use crate::rng::SplitMix64;

mod full_batch;

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

/// Sums over rows of cross-entropy and of correct predictions.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    /// Σ −log S_y.
    pub loss: f64,
    /// Σ [argmax z = y].
    pub correct: f64,
    /// Rows summed.
    pub rows: usize,
}

impl Sums {
    /// Adds one batch.
    pub fn add(&mut self, loss: f64, correct: f64, rows: usize) {
        self.loss += loss;
        self.correct += correct;
        self.rows += rows;
    }

    /// Mean cross-entropy.
    pub fn mean_loss(&self) -> f64 {
        self.loss / self.rows.max(1) as f64
    }

    /// Fraction correct.
    pub fn accuracy(&self) -> f64 {
        self.correct / self.rows.max(1) as f64
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

/// Adds sums across the processes of a data-parallel run. [`Local`] is the one-process identity.
pub trait Reducer {
    /// True when combining changes nothing (one process): backends then leave their sums where they are.
    fn is_identity(&self) -> bool;
    /// Replaces every value by its sum over all processes, added in an order that is the same on every process.
    fn allreduce(&mut self, values: &mut [f64]) -> Result<()>;
}

/// One process: nothing to combine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Reducer for Local {
    fn is_identity(&self) -> bool {
        true
    }

    fn allreduce(&mut self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }
}

/// Rows a backend holds in its own memory after [`Backend::hold`], addressed 0..len.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    id: usize,
    rows: usize,
}

impl Held {
    /// A handle; made by backends in [`Backend::hold`].
    pub fn new(id: usize, rows: usize) -> Self {
        Held { id, rows }
    }

    /// The backend's own number for the set.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no rows are held.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The order of one pass over the held rows: theirs, or a permutation seeded by (seed, epoch).
    pub fn order(&self, seed: u64, epoch: usize, shuffle: bool) -> Vec<u32> {
        epoch_order(self.rows, seed, epoch, shuffle)
    }
}

/// What one [`Backend::accumulate`] or [`Backend::forward`] call works on.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    rows: BatchRows<'a>,
    /// A weight per row (sample weights), in the batch's order; None: every row weighs 1.
    weights: Option<&'a [f32]>,
}

/// The rows of a [`Batch`].
#[derive(Debug, Clone)]
pub enum BatchRows<'a> {
    /// Rows of a held set, by index, in this order.
    Held {
        /// The set.
        set: Held,
        /// Indices into it, each below its length.
        rows: &'a [u32],
    },
    /// Rows given by the host (a streaming source's chunk, or part of one).
    Host(Chunk<'a>),
}

impl<'a> Batch<'a> {
    /// Rows `rows` of a held set: at least one, each below the set's length.
    pub fn held(set: Held, rows: &'a [u32]) -> Result<Self> {
        if rows.is_empty() {
            return Err(Error::param("batch", "at least 1 row", 0));
        }
        if let Some(&bad) = rows.iter().find(|&&r| r as usize >= set.rows) {
            return Err(Error::shape(
                "batch row index",
                format!("below {}", set.rows),
                bad,
            ));
        }
        Ok(Batch {
            rows: BatchRows::Held { set, rows },
            weights: None,
        })
    }

    /// Host rows (already checked: a [`Chunk`] cannot hold bad rows).
    pub fn host(chunk: Chunk<'a>) -> Result<Self> {
        if chunk.is_empty() {
            return Err(Error::param("batch", "at least 1 row", 0));
        }
        Ok(Batch {
            rows: BatchRows::Host(chunk),
            weights: None,
        })
    }

    /// Rows `start..end` of the batch (not empty), as a batch: a part of a checked batch needs no new check.
    pub fn slice(&self, start: usize, end: usize) -> Batch<'_> {
        debug_assert!(
            start < end && end <= self.len(),
            "{start}..{end} of {}",
            self.len()
        );
        Batch {
            rows: match &self.rows {
                BatchRows::Held { set, rows } => BatchRows::Held {
                    set: *set,
                    rows: &rows[start..end],
                },
                BatchRows::Host(chunk) => BatchRows::Host(chunk.slice(start, end)),
            },
            weights: self.weights.map(|w| &w[start..end]),
        }
    }

    /// The batch with a weight for each row (sample weights): each row's loss and residual are scaled by it, so
    /// that J = (1/N)·Σ wᵢ·CEᵢ (+ penalty). Weights are finite and ≥ 0, one per row.
    pub fn with_weights(self, weights: &'a [f32]) -> Result<Self> {
        if weights.len() != self.len() {
            return Err(Error::shape(
                "batch weights",
                format!("{} (one per row)", self.len()),
                weights.len(),
            ));
        }
        if let Some((i, w)) = weights
            .iter()
            .enumerate()
            .find(|(_, w)| !(w.is_finite() && **w >= 0.0))
        {
            return Err(Error::param(
                "--sample-weight",
                "finite weights ≥ 0",
                format!("{w} for row {i} of a batch"),
            ));
        }
        Ok(Batch {
            rows: self.rows,
            weights: Some(weights),
        })
    }

    /// The rows' weights, when the batch has them.
    pub fn weights(&self) -> Option<&'a [f32]> {
        self.weights
    }

    /// The rows.
    pub fn rows(&self) -> &BatchRows<'a> {
        &self.rows
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        match &self.rows {
            BatchRows::Held { rows, .. } => rows.len(),
            BatchRows::Host(c) => c.len(),
        }
    }

    /// Never true: empty batches are refused.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    /// The current parameters.
    fn params(&mut self) -> Result<Params>;

    /// Replaces the parameters (warm start, resume, full-batch methods).
    fn set_params(&mut self, p: &Params) -> Result<()>;

    /// The optimizer's state (what a checkpoint saves beside the weights).
    /// Weights each row's loss by the weight of its class (`--class-weight`): J = (1/N)·Σ w_{y_i}·CE_i (+ penalty),
    /// so the residual of a row, and with it the gradient sums, is scaled by w_{y_i}; the divisor stays the row count.
    /// One positive, finite weight per class; None removes them. Applies to every later accumulate and forward pass.
    fn set_class_weights(&mut self, weights: Option<&[f32]>) -> Result<()>;

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

/// What a step did, as observers see it.
#[derive(Debug)]
pub struct StepEvent<'a> {
    /// 1-based count of steps in the run.
    pub step: u64,
    /// 1-based epoch.
    pub epoch: usize,
    /// Rows in the step's batch.
    pub rows: usize,
    /// The update applied after it.
    pub update: &'a Update,
}

/// What observers are told before the first step.
pub struct Start<'a> {
    /// The training source (rewind it to read it again).
    pub train: &'a mut dyn RowSource,
    /// How the backend keeps the training rows: held ([`Observer::on_batch`] then sees batches of the held set, the
    /// rows of `train` by index), or streamed (it sees the rows themselves, when it asks for them).
    pub residency: Residency,
}

impl std::fmt::Debug for Start<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Start")
            .field("train", &self.train.name())
            .field("residency", &self.residency)
            .finish()
    }
}

/// Watches a run from outside the backend: progress, logs, the `--check-every` shadow, checkpoints.
pub trait Observer {
    /// Before the first step, with the training source and the backend with its starting weights.
    fn on_start(
        &mut self,
        _start: &mut Start<'_>,
        _cfg: &TrainConfig,
        _backend: &mut dyn Backend,
    ) -> Result<()> {
        Ok(())
    }

    /// True when the observer needs the rows of streamed batches in [`Observer::on_batch`] (they are then copied
    /// out of each chunk for it); resident batches are always given by index.
    fn wants_rows(&self) -> bool {
        false
    }

    /// After each part of a step's batch was accumulated (a step over held rows is one part; a streamed step that
    /// spans two chunks is two). For held data the batch names rows of the training source by index; for streamed
    /// data it holds the rows when [`Observer::wants_rows`], otherwise it names rows of a chunk the observer never
    /// saw.
    fn on_batch(&mut self, _batch: &Batch<'_>, _backend: &mut dyn Backend) -> Result<()> {
        Ok(())
    }

    /// After each step's update has been queued.
    fn on_step(&mut self, _event: &StepEvent<'_>, _backend: &mut dyn Backend) -> Result<()> {
        Ok(())
    }

    /// After each epoch; may add to the report (the shadow fills in `drift`) before later observers see it.
    fn on_epoch(&mut self, _report: &mut EpochReport, _backend: &mut dyn Backend) -> Result<()> {
        Ok(())
    }

    /// After the last epoch.
    fn on_finish(&mut self, _backend: &mut dyn Backend) -> Result<()> {
        Ok(())
    }
}

/// An observer from a closure called with each epoch's report.
pub struct OnEpoch<F>(pub F);

impl<F: FnMut(&EpochReport) -> Result<()>> Observer for OnEpoch<F> {
    fn on_epoch(&mut self, report: &mut EpochReport, _backend: &mut dyn Backend) -> Result<()> {
        (self.0)(report)
    }
}

impl<F> std::fmt::Debug for OnEpoch<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnEpoch")
    }
}

/// An observer from a closure called with the rows of each step.
pub struct OnRows<F>(pub F);

impl<F: FnMut(usize)> Observer for OnRows<F> {
    fn on_step(&mut self, event: &StepEvent<'_>, _backend: &mut dyn Backend) -> Result<()> {
        (self.0)(event.rows);
        Ok(())
    }
}

impl<F> std::fmt::Debug for OnRows<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnRows")
    }
}

/// What one epoch produced; printed as a line or, through serde, as one JSON object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochReport {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's forward passes + l2/2·‖W‖² at the end of the epoch.
    pub train_loss: f64,
    /// Accuracy over the epoch's forward passes.
    pub train_accuracy: f64,
    /// Mean cross-entropy on the held-out rows at the end of the epoch.
    pub val_loss: Option<f64>,
    /// Accuracy on the held-out rows at the end of the epoch.
    pub val_accuracy: Option<f64>,
    /// Training rows per second of wall time, evaluation excluded.
    pub samples_per_sec: f64,
    /// Wall time of the epoch, evaluation included.
    pub seconds: f64,
    /// Largest ‖ΔW‖/‖W‖ against the CPU f64 reference measured during the epoch (`--check-every`), if any.
    pub drift: Option<f64>,
    /// The device that ran it.
    pub device: String,
    /// How the training rows were read from their source, when they were streamed.
    pub stream: Option<StreamReport>,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
    /// With early stopping: this epoch had the best held-out loss, and its weights are the ones kept.
    pub best: bool,
    /// With a convergence rule (`TrainConfig::convergence`): this epoch met it and ended the run.
    pub converged: bool,
    /// For L-BFGS, whose "epochs" are its iterations: the iteration's gradient norm, objective change, step length
    /// and evaluations, and on the last one why the run stopped.
    pub lbfgs: Option<crate::lbfgs::Iteration>,
}

impl From<&EpochReport> for crate::plot::Point {
    fn from(r: &EpochReport) -> Self {
        crate::plot::Point {
            epoch: r.epoch,
            train_loss: r.train_loss,
            train_accuracy: r.train_accuracy,
            val_loss: r.val_loss,
            val_accuracy: r.val_accuracy,
            best: r.best,
        }
    }
}

/// What reading a streamed epoch cost and how much of it overlapped the training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StreamReport {
    /// Chunks read.
    pub chunks: usize,
    /// Rows read.
    pub rows: u64,
    /// Seconds the reader thread spent reading and decoding.
    pub read_seconds: f64,
    /// Seconds the trainer waited for a chunk (reading that did not overlap computation).
    pub waited_seconds: f64,
    /// Fraction of the reading hidden behind computation: 1 − waited / read (1 when nothing was waited for).
    pub overlap: f64,
    /// Whether the order of chunks was shuffled (the source can seek) as well as the rows within each chunk.
    pub chunk_order_shuffled: bool,
}

/// The row order of one epoch: the data's order, or a permutation seeded by (seed, epoch).
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    if shuffle {
        SplitMix64::derive(seed, 0x5EED_0000 + epoch as u64).shuffle(&mut order);
    }
    order
}

/// How [`fit`] keeps a source's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Residency {
    /// Held by the backend: copied once into its memory (a CPU backend shares rows already in RAM).
    Held,
    /// Read from the source every epoch, `chunk_rows` rows at a time; a reader thread reads the next chunk while the
    /// backend trains on the current one, which it holds only while it trains on it.
    Streamed {
        /// Rows per chunk.
        chunk_rows: usize,
    },
}

/// Most bytes of X one streamed chunk holds: large enough that a chunk is many batches and its read is a few long
/// sequential reads, small enough that the chunks in flight stay a small part of any memory budget.
pub const MAX_CHUNK_BYTES: u64 = 64 << 20;

/// Chunks a streamed epoch has in memory at once, at most: one the trainer holds (and, on a software adapter, its
/// device copy), one waiting in the channel and one the reader is filling. The budget is divided by this and by
/// two again for the reader's decode buffer.
const CHUNKS_IN_FLIGHT: u64 = 4;

/// The host memory budget when none is given: half the memory available when training starts (4 GiB where that
/// cannot be read).
pub fn default_memory_budget() -> u64 {
    crate::data::available_memory().map_or(4 << 30, |a| a / 2)
}

/// Whether `source` is held or streamed on `backend` under the budgets of `cfg`. Rows already in RAM (an
/// [`crate::data::InMemory`] source) are held, as they always were; a source whose rows, held, would take more than
/// the memory they would be held in (`cfg.memory_budget` of host memory for the CPU backends and software
/// adapters, `cfg.device_memory` of the device's own when it has some) is streamed, and so is a source that does
/// not know its length before it is read.
pub fn residency(backend: &dyn Backend, source: &dyn RowSource, cfg: &TrainConfig) -> Residency {
    let host = cfg.memory_budget.unwrap_or_else(default_memory_budget);
    let limit = if backend.holds_in_host_memory() {
        host.min(cfg.device_memory.unwrap_or(u64::MAX))
    } else {
        cfg.device_memory.unwrap_or(u64::MAX)
    };
    let held = source.held_bytes();
    let fits = held.is_some_and(|bytes| bytes <= limit);
    if source.shared().is_some() || source.shared_sparse().is_some() || fits {
        return Residency::Held;
    }
    // Bytes a row takes held: its share of the source's, or a dense row's.
    let row = match (held, source.rows()) {
        (Some(b), Some(n)) if n > 0 => b.div_ceil(n).max(1),
        _ => held_row_bytes(source.features()),
    };
    let per_chunk = (host / CHUNKS_IN_FLIGHT / 2).clamp(row, MAX_CHUNK_BYTES.max(row));
    let mut chunk_rows = (per_chunk / row).max(1) as usize;
    // Chunks of whole batches, so that batches do not straddle chunks (a straddling batch is two parts of one step).
    let batch = cfg.batch_size.max(1);
    if batch < chunk_rows {
        chunk_rows -= chunk_rows % batch;
    }
    Residency::Streamed { chunk_rows }
}

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

/// The next at most `rows` rows of `source` as a part a backend can hold: sparse rows stay sparse.
fn next_part(source: &mut dyn RowSource, rows: usize) -> Result<Option<Part>> {
    Ok(if source.is_sparse() {
        source.next_sparse(rows)?.map(Part::Sparse)
    } else {
        source
            .next_chunk(rows)?
            .map(|c| Part::Dense(c.into_owned()))
    })
}

/// Reads `source` from its start `chunk_rows` rows at a time; the backend holds each chunk only while `f` runs on it
/// (given the held set and the chunk's first row in the source), then releases it.
fn for_each_held_chunk(
    backend: &mut dyn Backend,
    source: &mut dyn RowSource,
    chunk_rows: usize,
    mut f: impl FnMut(&mut dyn Backend, Held, u64) -> Result<()>,
) -> Result<()> {
    source.rewind()?;
    let name = source.name().to_string();
    let k = source.classes();
    while let Some(part) = next_part(source, chunk_rows)? {
        let first = part.first_row();
        let mut held_rows = part.into_source(&name, k)?;
        let set = backend.hold(held_rows.as_mut())?;
        f(backend, set, first)?;
        backend.release(set)?;
    }
    Ok(())
}

/// Trains for `cfg.epochs` epochs: each epoch runs one step per `cfg.batch_size` rows of a seeded shuffle, reads the
/// epoch's loss sums, and evaluates the held-out rows. The training rows (and the held-out ones) are held by the
/// backend or streamed, as [`residency`] decides: streamed rows are read a chunk at a time by a reader thread while
/// the backend trains on the previous chunk, and shuffled at chunk granularity (the order of chunks, where the
/// source can seek) and within each chunk. With shuffling off, streamed training takes the same steps over the same
/// rows as resident training. `observers` see every step and epoch, in order. Stops with [`Error::Diverged`] when the
/// loss overflows.
pub fn fit(
    backend: &mut dyn Backend,
    train: &mut dyn RowSource,
    held_out: Option<&mut dyn RowSource>,
    cfg: &TrainConfig,
    observers: &mut [&mut dyn Observer],
) -> Result<Vec<EpochReport>> {
    fit_with(backend, train, held_out, cfg, &mut Local, observers)
}

/// A step being assembled from parts: accumulated part by part, then combined and applied at the scheduled rate.
struct Stepper<'r> {
    batch: usize,
    in_batch: usize,
    step: u64,
    epoch: usize,
    update: Update,
    base_lr: f32,
    schedule: crate::schedule::Schedule,
    total_steps: u64,
    reducer: &'r mut dyn Reducer,
}

impl Stepper<'_> {
    /// Rows the current step still takes.
    fn room(&self) -> usize {
        self.batch - self.in_batch
    }

    /// Accumulates one part of the current step; `seen` is what observers are shown of it.
    fn part(
        &mut self,
        backend: &mut dyn Backend,
        observers: &mut [&mut dyn Observer],
        part: &Batch<'_>,
        seen: &Batch<'_>,
    ) -> Result<()> {
        backend.accumulate(part)?;
        for o in observers.iter_mut() {
            o.on_batch(seen, backend)?;
        }
        self.in_batch += part.len();
        if self.in_batch >= self.batch {
            self.finish(backend, observers)?;
        }
        Ok(())
    }

    /// Combines and applies what the current step accumulated (nothing when it is empty).
    fn finish(
        &mut self,
        backend: &mut dyn Backend,
        observers: &mut [&mut dyn Observer],
    ) -> Result<()> {
        if self.in_batch == 0 {
            return Ok(());
        }
        backend.combine(self.reducer)?;
        self.update.lr = self
            .schedule
            .lr(self.base_lr, self.step + 1, self.total_steps);
        backend.update(&self.update)?;
        self.step += 1;
        let event = StepEvent {
            step: self.step,
            epoch: self.epoch,
            rows: self.in_batch,
            update: &self.update,
        };
        self.in_batch = 0;
        for o in observers.iter_mut() {
            o.on_step(&event, backend)?;
        }
        Ok(())
    }
}

/// [`fit`] with gradient sums combined by `reducer` at every step.
pub fn fit_with(
    backend: &mut dyn Backend,
    train: &mut dyn RowSource,
    mut held_out: Option<&mut dyn RowSource>,
    cfg: &TrainConfig,
    reducer: &mut dyn Reducer,
    observers: &mut [&mut dyn Observer],
) -> Result<Vec<EpochReport>> {
    cfg.check()?;
    if let Optimizer::Lbfgs(opts) = cfg.optimizer {
        // The held-out source's trait-object lifetime shortened to the others' (invariant behind `&mut`).
        let held_out = held_out.map(|h| h as &mut dyn RowSource);
        return full_batch::fit_lbfgs(backend, train, held_out, cfg, &opts, reducer, observers);
    }
    if cfg.early_stopping.is_some() && held_out.is_none() {
        return Err(Error::param(
            "--early-stopping",
            "a held-out set (--val-split above 0, or --test)",
            "none",
        ));
    }
    let device = backend.device();
    let Begun {
        train_residency,
        train_set,
        held_residency,
        held_set,
        sample_weights,
    } = begin(backend, train, held_out.as_deref_mut(), cfg, observers)?;
    let wants_rows = observers.iter().any(|o| o.wants_rows());
    // A batch larger than the data set is the whole data set (full-batch gradient descent).
    let rows_known = train_set.map(|s| s.len() as u64).or(train.rows());
    let batch = rows_known.map_or(cfg.batch_size, |n| {
        cfg.batch_size.min(usize::try_from(n).unwrap_or(usize::MAX))
    });
    let batch = batch.max(1);
    // Steps in the run, for schedules that span it: the full batches and the partial one of each epoch.
    let total_steps = rows_known.map_or(u64::MAX, |n| {
        n.div_ceil(batch as u64).saturating_mul(cfg.epochs as u64)
    });
    let mut stepper = Stepper {
        batch,
        in_batch: 0,
        step: 0,
        epoch: 0,
        update: Update {
            optimizer: cfg.optimizer,
            lr: cfg.lr,
            l2: cfg.l2,
            l1: cfg.l1,
        },
        base_lr: cfg.lr,
        schedule: cfg.schedule,
        total_steps,
        reducer,
    };
    // The best held-out loss so far, its epoch and weights, and the epochs since.
    let mut best: Option<(f64, usize, Params)> = None;
    let mut since_best = 0usize;
    // The best training loss so far and the epochs since it improved by more than the convergence tolerance.
    let (mut best_train, mut no_progress) = (f64::INFINITY, 0usize);
    let mut reports = Vec::new();
    // A resumed run: its first epoch, and the steps of that epoch already taken.
    let (mut first_epoch, mut skip) = (1, 0usize);
    if let Some(r) = cfg.resume {
        // A streamed epoch's steps are consecutive batches over its seeded sequence of chunks, as a held epoch's
        // are over its seeded permutation: either way the steps taken are the first `batches_done` batches.
        let Some(rows) = rows_known else {
            return Err(Error::param(
                "--resume",
                "a run whose training rows are counted before they are read",
                "a source of unknown length",
            ));
        };
        let per_epoch = usize::try_from(rows)
            .unwrap_or(usize::MAX)
            .div_ceil(stepper.batch);
        (first_epoch, skip) = if r.batches_done >= per_epoch {
            (r.epoch + 1, 0)
        } else {
            (r.epoch, r.batches_done)
        };
        stepper.step = r.steps;
    }
    for epoch in first_epoch..=cfg.epochs {
        stepper.epoch = epoch;
        let start = Instant::now();
        let stream = match (train_set, train_residency) {
            (Some(set), _) => {
                let order = set.order(cfg.seed, epoch, cfg.shuffle);
                let mut bw = Vec::new();
                for slice in order.chunks(stepper.batch).skip(std::mem::take(&mut skip)) {
                    let b = weighted(
                        Batch::held(set, slice)?,
                        sample_weights.as_deref(),
                        0,
                        slice,
                        &mut bw,
                    )?;
                    stepper.part(backend, observers, &b, &b)?;
                }
                None
            }
            (None, Residency::Streamed { chunk_rows }) => {
                let skip_rows =
                    (std::mem::take(&mut skip) as u64).saturating_mul(stepper.batch as u64);
                Some(stream_epoch(
                    backend,
                    &mut *train,
                    cfg,
                    (chunk_rows, skip_rows, sample_weights.as_deref()),
                    &mut stepper,
                    observers,
                    wants_rows,
                )?)
            }
            (None, Residency::Held) => unreachable!("a held source has a set"),
        };
        stepper.finish(backend, observers)?;
        let sums = backend.take_sums()?;
        let penalty = if cfg.l2 > 0.0 || cfg.l1 > 0.0 {
            let w = backend.params()?.w;
            0.5 * f64::from(cfg.l2) * w.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>()
                + f64::from(cfg.l1) * w.iter().map(|&v| f64::from(v).abs()).sum::<f64>()
        } else {
            0.0
        };
        let train_seconds = start.elapsed().as_secs_f64();
        let held = match (held_set, held_residency, held_out.as_deref_mut()) {
            (Some(h), _, _) => Some(evaluate(backend, h, batch)?),
            (None, Some(Residency::Streamed { chunk_rows }), Some(source)) => {
                Some(evaluate_streamed(backend, source, chunk_rows, batch)?)
            }
            _ => None,
        };
        let mut report = EpochReport {
            epoch,
            train_loss: sums.mean_loss() + penalty,
            train_accuracy: sums.accuracy(),
            val_loss: held.map(|s| s.mean_loss()),
            val_accuracy: held.map(|s| s.accuracy()),
            samples_per_sec: sums.rows as f64 / train_seconds.max(1e-9),
            seconds: start.elapsed().as_secs_f64(),
            drift: None,
            device: device.clone(),
            stream,
            lr: f64::from(stepper.update.lr),
            best: false,
            converged: false,
            lbfgs: None,
        };
        if !report.train_loss.is_finite() {
            return Err(Error::Diverged {
                step: stepper.step,
                what: format!("training loss {} in epoch {epoch}", report.train_loss),
            });
        }
        // SGDClassifier's rule: no epoch below the best loss − tol for `patience` epochs in a row.
        let converged = cfg.convergence.is_some_and(|c| {
            if report.train_loss > best_train - c.tol {
                no_progress += 1;
            } else {
                no_progress = 0;
            }
            best_train = best_train.min(report.train_loss);
            no_progress >= c.patience
        });
        report.converged = converged;
        for o in observers.iter_mut() {
            o.on_epoch(&mut report, backend)?;
        }
        let val_loss = report.val_loss;
        reports.push(report);
        if converged {
            break;
        }
        if let (Some(stop), Some(loss)) = (cfg.early_stopping, val_loss) {
            let improved = best
                .as_ref()
                .is_none_or(|(b, _, _)| loss < b - stop.min_delta);
            if improved {
                best = Some((loss, epoch, backend.params()?));
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= stop.patience {
                    break;
                }
            }
        }
    }
    for o in observers.iter_mut() {
        o.on_finish(backend)?;
    }
    // Observers saw the run as it ended; the backend ends with the best epoch's weights.
    if let Some((_, epoch, params)) = best {
        if epoch != reports.len() {
            backend.set_params(&params)?;
        }
        if let Some(r) = reports.get_mut(epoch - 1) {
            r.best = true;
        }
    }
    Ok(reports)
}

/// How a run holds its rows, once [`begin`] has set it up.
struct Begun {
    train_residency: Residency,
    train_set: Option<Held>,
    held_residency: Option<Residency>,
    held_set: Option<Held>,
    sample_weights: Option<Arc<[f32]>>,
}

/// What every run does first, minibatch or full-batch: checks the sources' shapes, sets the class weights, decides
/// each source's residency and holds what is held, checks the sample weights against the training rows, and tells
/// the observers the run starts.
fn begin<'t, 'h>(
    backend: &mut dyn Backend,
    train: &mut (dyn RowSource + 't),
    mut held_out: Option<&mut (dyn RowSource + 'h)>,
    cfg: &TrainConfig,
    observers: &mut [&mut dyn Observer],
) -> Result<Begun> {
    let shape = backend.shape();
    shape.check_source(train)?;
    if let Some(h) = held_out.as_deref() {
        shape.check_source(h)?;
    }
    backend.set_class_weights(cfg.class_weights.as_deref())?;
    let sample_weights = train.sample_weights();
    let train_residency = residency(backend, train, cfg);
    let train_set = match train_residency {
        Residency::Held => Some(backend.hold(train)?),
        Residency::Streamed { .. } => None,
    };
    check_sample_weights(sample_weights.as_deref(), train_set, train)?;
    let held_residency = held_out.as_deref().map(|h| residency(backend, h, cfg));
    let held_set = match (&mut held_out, held_residency) {
        (Some(h), Some(Residency::Held)) => Some(backend.hold(&mut **h)?),
        _ => None,
    };
    let mut start = Start {
        train: &mut *train,
        residency: train_residency,
    };
    for o in observers.iter_mut() {
        o.on_start(&mut start, cfg, backend)?;
    }
    Ok(Begun {
        train_residency,
        train_set,
        held_residency,
        held_set,
        sample_weights,
    })
}

/// `batch` with the sample weights of its rows — `rows` of the part of the source that starts at row `first` — when
/// the source has weights (`bw` holds them).
fn weighted<'b>(
    batch: Batch<'b>,
    weights: Option<&[f32]>,
    first: u64,
    rows: &[u32],
    bw: &'b mut Vec<f32>,
) -> Result<Batch<'b>> {
    let Some(w) = weights else {
        return Ok(batch);
    };
    bw.clear();
    bw.extend(rows.iter().map(|&r| w[first as usize + r as usize]));
    batch.with_weights(bw)
}

/// Sample weights, when the source has them, are one per row of it.
fn check_sample_weights(
    weights: Option<&[f32]>,
    set: Option<Held>,
    source: &dyn RowSource,
) -> Result<()> {
    let Some(w) = weights else {
        return Ok(());
    };
    let rows = set.map(|s| s.len() as u64).or(source.rows());
    if rows != Some(w.len() as u64) {
        return Err(Error::shape(
            format!("sample weights of {}", source.name()),
            format!("one per row ({rows:?} rows)"),
            w.len(),
        ));
    }
    Ok(())
}

/// The chunks of one streamed epoch, as (first row, rows): in order, or in a seeded order of chunks.
fn chunk_plan(rows: u64, chunk_rows: usize, seed: u64, epoch: usize) -> Vec<(u64, usize)> {
    let c = chunk_rows.max(1) as u64;
    let mut plan: Vec<(u64, usize)> = (0..rows.div_ceil(c))
        .map(|i| (i * c, (rows - i * c).min(c) as usize))
        .collect();
    SplitMix64::derive(seed, 0xC4A4_0000 + epoch as u64).shuffle(&mut plan);
    plan
}

/// A chunk a reader thread hands to the trainer: dense rows, or sparse ones from a sparse source.
enum Part {
    Dense(Chunk<'static>),
    Sparse(SparseChunk),
}

impl Part {
    fn len(&self) -> usize {
        match self {
            Part::Dense(c) => c.len(),
            Part::Sparse(c) => c.len(),
        }
    }

    fn first_row(&self) -> u64 {
        match self {
            Part::Dense(c) => c.first_row(),
            Part::Sparse(c) => c.first_row,
        }
    }

    /// The rows as a source a backend can hold.
    fn into_source(self, name: &str, k: usize) -> Result<Box<dyn RowSource>> {
        Ok(match self {
            Part::Dense(c) => Box::new(InMemory::new(Arc::new(HostRows::from_chunk(name, c, k)))),
            Part::Sparse(c) => Box::new(SparseInMemory::new(Arc::new(SparseRows::from_chunk(
                name, &c, k,
            )?))),
        })
    }
}

/// Reads one epoch's chunks into `tx`: in the source's order, or (shuffling a source that can seek) in a seeded
/// order of chunks. Stops at the first error (sent on) or when the trainer hangs up. Returns its busy seconds.
fn read_epoch(
    source: &mut dyn RowSource,
    (chunk_rows, mut skip): (usize, u64),
    cfg: &TrainConfig,
    epoch: usize,
    tx: std::sync::mpsc::SyncSender<Result<(Part, usize)>>,
) -> (f64, bool) {
    // Rows of the epoch still to pass over: whole chunks are dropped, and the first chunk kept carries the rest.
    let mut within = |n: usize| -> Option<usize> {
        if skip >= n as u64 {
            skip -= n as u64;
            None
        } else {
            Some(std::mem::take(&mut skip) as usize)
        }
    };
    let mut busy = 0.0;
    let mut read = |source: &mut dyn RowSource, rows: usize| -> Option<Result<Part>> {
        let t = Instant::now();
        let chunk = next_part(source, rows);
        busy += t.elapsed().as_secs_f64();
        chunk.transpose()
    };
    let rows = source.rows();
    let seekable = cfg.shuffle && rows.is_some() && matches!(source.seek(0), Ok(true));
    if seekable {
        for (first, n) in chunk_plan(rows.unwrap_or(0), chunk_rows, cfg.seed, epoch) {
            let Some(skip_here) = within(n) else {
                continue;
            };
            let chunk = match source.seek(first) {
                Ok(_) => read(source, n),
                Err(e) => Some(Err(e)),
            }
            .map(|c| c.map(|part| (part, skip_here)));
            let stop = !matches!(chunk, Some(Ok(_)));
            if let Some(c) = chunk {
                if tx.send(c).is_err() {
                    break;
                }
            }
            if stop {
                break;
            }
        }
    } else if let Err(e) = source.rewind() {
        let _ = tx.send(Err(e));
    } else {
        while let Some(chunk) = read(source, chunk_rows) {
            let stop = chunk.is_err();
            let chunk = match chunk {
                Ok(part) => match within(part.len()) {
                    Some(skip_here) => Ok((part, skip_here)),
                    None => continue,
                },
                Err(e) => Err(e),
            };
            if tx.send(chunk).is_err() || stop {
                break;
            }
        }
    }
    (busy, seekable)
}

/// The rows `rows` of a held chunk as host rows, for observers that replay them (dense; sparse rows made dense,
/// a batch at a time).
fn rows_for_observers<'x>(held: &dyn RowSource, first: u64, rows: &[u32]) -> Result<Chunk<'x>> {
    if let Some(dense) = held.shared() {
        return Ok(dense.chunk(first, rows));
    }
    let sparse = held
        .shared_sparse()
        .ok_or_else(|| Error::Internal("a held chunk neither dense nor sparse".into()))?;
    let b = sparse.batch(rows);
    Chunk::owned(
        sparse.name(),
        b.to_dense(),
        b.y.clone(),
        sparse.classes(),
        first,
    )
}

/// One epoch over a streamed source: a reader thread fills the next chunk while the backend trains on the current
/// one, held only while it is trained on; rows are shuffled within each chunk (and chunks among themselves, see
/// [`read_epoch`]).
/// One streamed epoch; `skip_rows` rows at its start (a resumed run's steps already taken) are passed over: the
/// chunks they fill are not read where the source can seek, and the rest are skipped in the chunk's seeded order.
fn stream_epoch(
    backend: &mut dyn Backend,
    source: &mut dyn RowSource,
    cfg: &TrainConfig,
    (chunk_rows, skip_rows, sample_weights): (usize, u64, Option<&[f32]>),
    stepper: &mut Stepper<'_>,
    observers: &mut [&mut dyn Observer],
    wants_rows: bool,
) -> Result<StreamReport> {
    let name = source.name().to_string();
    let k = source.classes();
    let epoch = stepper.epoch;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(Part, usize)>>(1);
        let reader =
            scope.spawn(move || read_epoch(source, (chunk_rows, skip_rows), cfg, epoch, tx));
        let mut waited = 0.0;
        let mut chunks = 0usize;
        let mut rows = 0u64;
        let mut train = || -> Result<()> {
            loop {
                let t = Instant::now();
                let Ok(chunk) = rx.recv() else {
                    return Ok(());
                };
                waited += t.elapsed().as_secs_f64();
                let (chunk, skip) = chunk?;
                chunks += 1;
                rows += chunk.len() as u64;
                let first = chunk.first_row();
                let mut held_rows = chunk.into_source(&name, k)?;
                let set = backend.hold(held_rows.as_mut())?;
                let mut order = set.order(0, 0, false);
                if cfg.shuffle {
                    SplitMix64::derive(
                        cfg.seed ^ first.rotate_left(17),
                        0x5EED_0000 + epoch as u64,
                    )
                    .shuffle(&mut order);
                }
                let mut at = skip.min(order.len());
                let mut bw = Vec::new();
                while at < order.len() {
                    let take = stepper.room().min(order.len() - at);
                    let rows_of = &order[at..at + take];
                    let part = weighted(
                        Batch::held(set, rows_of)?,
                        sample_weights,
                        first,
                        rows_of,
                        &mut bw,
                    )?;
                    if wants_rows {
                        let seen = rows_for_observers(held_rows.as_ref(), first, rows_of)?;
                        let seen = match part.weights() {
                            Some(w) => Batch::host(seen)?.with_weights(w)?,
                            None => Batch::host(seen)?,
                        };
                        stepper.part(backend, observers, &part, &seen)?;
                    } else {
                        stepper.part(backend, observers, &part, &part)?;
                    }
                    at += take;
                }
                backend.release(set)?;
            }
        };
        let trained = train();
        drop(rx);
        let (read_seconds, shuffled) = reader
            .join()
            .map_err(|_| Error::Internal(format!("the reader thread of {name} panicked")))?;
        trained?;
        let overlap = if read_seconds > 0.0 {
            (1.0 - waited / read_seconds).clamp(0.0, 1.0)
        } else {
            1.0
        };
        Ok(StreamReport {
            chunks,
            rows,
            read_seconds,
            waited_seconds: waited,
            overlap,
            chunk_order_shuffled: shuffled,
        })
    })
}

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
