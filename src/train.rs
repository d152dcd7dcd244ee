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
//! it, or is handed each batch as host rows ([`Batch::host`], what a streaming reader and [`objective`] do). Nothing
//! above the source indexes the data itself; the shuffle is a permutation of a held set's own rows ([`Held::order`]).
//!
//! Progress, the JSON log and the `--check-every` shadow are [`Observer`]s: they see every step and every epoch from
//! outside the interface, and get the backend to read weights from when they need them.
//!
//! Implementors: [`crate::cpu::CpuBackend`] (f32 and f64), [`crate::gpu::GpuBackend`]. Planned: a streaming trainer
//! (out-of-core data, the `Batch::host` path with double buffering), a sparse (CSR) backend, and a distributed one
//! whose [`Reducer`] is an MPI allreduce.

use std::time::Instant;

use ndarray::{Array1, Array2};

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::data::{Chunk, RowSource};
use crate::error::{Error, Result};
pub use crate::model::Params;
use crate::rng::SplitMix64;

/// The size of the model: `d` features, `k` classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Features.
    pub d: usize,
    /// Classes.
    pub k: usize,
}

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

/// The optimizer applied by [`Backend::update`]. New optimizers (momentum, Adam …) are new variants carrying their
/// hyper-parameters; their state is kept by the backend beside the weights ([`OptimizerState`]).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Optimizer {
    /// Plain gradient descent: W ← W − α·(G/B + λ·W), b ← b − α·g_b/B.
    #[default]
    Sgd,
}

/// One update: the optimizer, this step's learning rate (a schedule may change it every step) and the L2 penalty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update {
    /// Which optimizer.
    pub optimizer: Optimizer,
    /// Step size α for this step.
    pub lr: f32,
    /// L2 penalty λ on W (never on b).
    pub l2: f32,
}

/// What an optimizer keeps between steps, beside the weights: a step count and named tensors (none for SGD;
/// velocities for momentum; first and second moments for Adam). What checkpoints save and resume restores.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OptimizerState {
    /// Updates applied.
    pub steps: u64,
    /// Named state tensors, each with its shape.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl OptimizerState {
    /// This state, if it can be plain SGD's (a step count and no tensors); what every backend checks before taking it.
    pub fn checked_for_sgd(&self) -> Result<Self> {
        if !self.tensors.is_empty() {
            return Err(Error::shape(
                "SGD optimizer state tensors",
                0,
                self.tensors.len(),
            ));
        }
        Ok(self.clone())
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
pub struct Batch<'a>(BatchRows<'a>);

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
        Ok(Batch(BatchRows::Held { set, rows }))
    }

    /// Host rows (already checked: a [`Chunk`] cannot hold bad rows).
    pub fn host(chunk: Chunk<'a>) -> Result<Self> {
        if chunk.is_empty() {
            return Err(Error::param("batch", "at least 1 row", 0));
        }
        Ok(Batch(BatchRows::Host(chunk)))
    }

    /// Rows `start..end` of the batch (not empty), as a batch: a part of a checked batch needs no new check.
    pub fn slice(&self, start: usize, end: usize) -> Batch<'_> {
        debug_assert!(
            start < end && end <= self.len(),
            "{start}..{end} of {}",
            self.len()
        );
        Batch(match &self.0 {
            BatchRows::Held { set, rows } => BatchRows::Held {
                set: *set,
                rows: &rows[start..end],
            },
            BatchRows::Host(chunk) => BatchRows::Host(chunk.slice(start, end)),
        })
    }

    /// The rows.
    pub fn rows(&self) -> &BatchRows<'a> {
        &self.0
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        match &self.0 {
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
pub struct StepEvent<'a, 'b> {
    /// 1-based count of steps in the run.
    pub step: u64,
    /// 1-based epoch.
    pub epoch: usize,
    /// The batch.
    pub batch: &'a Batch<'b>,
    /// The update applied after it.
    pub update: &'a Update,
}

/// Watches a run from outside the backend: progress, logs, the `--check-every` shadow, checkpoints.
pub trait Observer {
    /// Before the first step, with the training source (already held by the backend; rewind it to read it again)
    /// and the backend with its starting weights.
    fn on_start(
        &mut self,
        _train: &mut dyn RowSource,
        _cfg: &TrainConfig,
        _backend: &mut dyn Backend,
    ) -> Result<()> {
        Ok(())
    }

    /// After each step's update has been queued.
    fn on_step(&mut self, _event: &StepEvent<'_, '_>, _backend: &mut dyn Backend) -> Result<()> {
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
    fn on_step(&mut self, event: &StepEvent<'_, '_>, _backend: &mut dyn Backend) -> Result<()> {
        (self.0)(event.batch.len());
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
}

/// The row order of one epoch: the data's order, or a permutation seeded by (seed, epoch).
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    if shuffle {
        SplitMix64::derive(seed, 0x5EED_0000 + epoch as u64).shuffle(&mut order);
    }
    order
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

/// Trains for `cfg.epochs` epochs: the backend holds `train` (and `held_out`), then each epoch runs one step per
/// `cfg.batch_size` rows of a seeded shuffle, reads the epoch's loss sums, and evaluates the held-out rows.
/// `observers` see every step and epoch, in order. Stops with [`Error::Diverged`] when the loss overflows.
pub fn fit(
    backend: &mut dyn Backend,
    train: &mut dyn RowSource,
    held_out: Option<&mut dyn RowSource>,
    cfg: &TrainConfig,
    observers: &mut [&mut dyn Observer],
) -> Result<Vec<EpochReport>> {
    fit_with(backend, train, held_out, cfg, &mut Local, observers)
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
    let shape = backend.shape();
    shape.check_source(train)?;
    if let Some(h) = held_out.as_deref() {
        shape.check_source(h)?;
    }
    let device = backend.device();
    let train_set = backend.hold(train)?;
    let held_set = match &mut held_out {
        Some(h) => Some(backend.hold(&mut **h)?),
        None => None,
    };
    for o in observers.iter_mut() {
        o.on_start(train, cfg, backend)?;
    }
    // A batch larger than the data set is the whole data set (full-batch gradient descent).
    let batch = cfg.batch_size.min(train_set.len()).max(1);
    let update = Update {
        optimizer: cfg.optimizer,
        lr: cfg.lr,
        l2: cfg.l2,
    };
    let mut step = 0u64;
    let mut reports = Vec::new();
    for epoch in 1..=cfg.epochs {
        let order = train_set.order(cfg.seed, epoch, cfg.shuffle);
        let start = Instant::now();
        for slice in order.chunks(batch) {
            let b = Batch::held(train_set, slice)?;
            backend.accumulate(&b)?;
            backend.combine(reducer)?;
            backend.update(&update)?;
            step += 1;
            let event = StepEvent {
                step,
                epoch,
                batch: &b,
                update: &update,
            };
            for o in observers.iter_mut() {
                o.on_step(&event, backend)?;
            }
        }
        let sums = backend.take_sums()?;
        let penalty = if cfg.l2 > 0.0 {
            0.5 * f64::from(cfg.l2) * backend.params()?.w_norm_sq()
        } else {
            0.0
        };
        let train_seconds = start.elapsed().as_secs_f64();
        let held = match held_set {
            Some(h) => Some(evaluate(backend, h, batch)?),
            None => None,
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
        };
        if !report.train_loss.is_finite() {
            return Err(Error::Diverged {
                step,
                what: format!("training loss {} in epoch {epoch}", report.train_loss),
            });
        }
        for o in observers.iter_mut() {
            o.on_epoch(&mut report, backend)?;
        }
        reports.push(report);
    }
    for o in observers.iter_mut() {
        o.on_finish(backend)?;
    }
    Ok(reports)
}

/// The full-batch objective and its gradient at `params` over every row of `source`, what L-BFGS and its line
/// search need: J = mean cross-entropy + λ/2·‖W‖² and ∇J (the bias unpenalised). The source is streamed in chunks
/// of at most the device's batch; the gradient sums of all chunks are accumulated on the device in a fixed order
/// and combined by `reducer`. Leaves the backend's weights at `params`.
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
    backend.set_params(params)?;
    // Discard whatever an earlier caller left accumulated.
    backend.take_gradient()?;
    backend.take_sums()?;
    source.rewind()?;
    let rows = backend.max_batch().min(1 << 16);
    while let Some(chunk) = source.next_chunk(rows)? {
        backend.accumulate(&Batch::host(chunk)?)?;
    }
    backend.combine(reducer)?;
    let mut sums = backend.take_sums()?;
    if !reducer.is_identity() {
        let mut v = [sums.loss, sums.correct, sums.rows as f64];
        reducer.allreduce(&mut v)?;
        sums = Sums {
            loss: v[0],
            correct: v[1],
            rows: v[2] as usize,
        };
    }
    let sum = backend.take_gradient()?;
    let n = sum.rows.max(1) as f64;
    let lambda = f64::from(l2);
    let w = params.w.mapv(f64::from);
    let value = sums.loss / n + 0.5 * lambda * w.iter().map(|v| v * v).sum::<f64>();
    Ok((
        value,
        Gradient {
            w: sum.w / n + w * lambda,
            b: sum.b / n,
            rows: sum.rows,
        },
    ))
}
