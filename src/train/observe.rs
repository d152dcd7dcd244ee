//! Observers and the events they see: the start of a run, every accumulated part and step, every epoch's
//! [`EpochReport`] (with its [`StreamReport`] when rows were streamed), and the end.

use serde::Serialize;

use crate::config::TrainConfig;
use crate::data::RowSource;
use crate::error::Result;
use crate::optim::Update;

use super::{Backend, Batch, Residency};

/// What a step did, as observers see it.
#[derive(Debug)]
pub struct StepEvent<'a> {
    /// 1-based count of steps in the run.
    pub step: u64,
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based count of this epoch's steps (a resumed epoch counts the steps taken before it was resumed).
    pub in_epoch: usize,
    /// The epoch's last step, when the training rows are counted: [`Observer::on_epoch`] follows with the epoch's
    /// report and the stopping rules' verdict on it.
    pub last_in_epoch: bool,
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
    /// For one of several processes: seconds of the epoch spent in their collectives (summing the gradients of
    /// every step, the loss and held-out sums; waiting for slower processes included). The rest is compute.
    pub reduce_seconds: Option<f64>,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
    /// With early stopping: this epoch had the best held-out loss, and its weights are the ones kept.
    pub best: bool,
    /// With a convergence rule (`TrainConfig::convergence`): this epoch met it and ended the run.
    pub converged: bool,
    /// For L-BFGS, whose "epochs" are its iterations: the iteration's gradient norm, objective change, step length
    /// and evaluations, and on the last one why the run stopped.
    pub lbfgs: Option<crate::lbfgs::Iteration>,
    /// Where the stopping rules stand after this epoch (what a checkpoint written now saves); not part of the JSON
    /// log.
    #[serde(skip)]
    pub stopping: crate::stopping::StopState,
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
