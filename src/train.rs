//! The training loop, written once over the [`Backend`] interface that the CPU and GPU trainers implement (and that
//! a streaming or distributed trainer can implement later). Per epoch: a seeded shuffle, the steps, one read of the
//! epoch's loss and accuracy sums, an evaluation on the held-out rows.

use std::time::Instant;

use ndarray::{Array1, Array2};
use serde::Serialize;

use crate::config::TrainConfig;
use crate::error::Result;
use crate::rng::SplitMix64;

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

/// Fitted parameters in the layout the kernels use: `w` is [d, k], `b` is [k].
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Weights, [d, k].
    pub w: Array2<f32>,
    /// Biases, [k].
    pub b: Array1<f32>,
}

impl Params {
    /// ‖W‖², accumulated in f64.
    pub fn w_norm_sq(&self) -> f64 {
        self.w.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
    }
}

/// A device that can run the training step. Owns the training rows, the held-out rows and the weights.
pub trait Backend {
    /// A one-line description of the device (adapter name and backend, or the CPU and its precision).
    fn device(&self) -> String;

    /// Runs one step per consecutive `batch_size` slice of `order` (row indices into the training set); the last
    /// slice may be shorter and is averaged over its own length. Returns the forward-pass sums of the epoch, taken
    /// before each step's update. `progress` is told how many rows have been submitted.
    fn train_epoch(
        &mut self,
        order: &[u32],
        batch_size: usize,
        lr: f32,
        l2: f32,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Sums>;

    /// Loss and accuracy on the held-out rows, or None when there are none.
    fn evaluate(&mut self) -> Result<Option<Sums>>;

    /// The current parameters.
    fn params(&mut self) -> Result<Params>;

    /// For backends that check themselves against a reference as they train ([`crate::shadow::Shadowed`]): the
    /// largest relative drift measured since the last call, or None when nothing was measured.
    fn take_drift(&mut self) -> Option<f64> {
        None
    }
}

/// What one epoch produced; printed as a line or as JSON.
#[derive(Debug, Clone, Serialize)]
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

/// Trains for `cfg.epochs` epochs on `n_train` rows, calling `on_epoch` after each.
pub fn fit(
    backend: &mut dyn Backend,
    n_train: usize,
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(usize),
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> Result<Vec<EpochReport>> {
    cfg.check()?;
    let device = backend.device();
    // A batch larger than the data set is the whole data set (full-batch gradient descent).
    let batch = cfg.batch_size.min(n_train.max(1));
    let mut reports = Vec::with_capacity(cfg.epochs);
    for epoch in 1..=cfg.epochs {
        let order = epoch_order(n_train, cfg.seed, epoch, cfg.shuffle);
        let start = Instant::now();
        let sums = backend.train_epoch(&order, batch, cfg.lr, cfg.l2, progress)?;
        let penalty = if cfg.l2 > 0.0 {
            0.5 * f64::from(cfg.l2) * backend.params()?.w_norm_sq()
        } else {
            0.0
        };
        let train_seconds = start.elapsed().as_secs_f64();
        let held_out = backend.evaluate()?;
        let report = EpochReport {
            epoch,
            train_loss: sums.mean_loss() + penalty,
            train_accuracy: sums.accuracy(),
            val_loss: held_out.map(|s| s.mean_loss()),
            val_accuracy: held_out.map(|s| s.accuracy()),
            samples_per_sec: sums.rows as f64 / train_seconds.max(1e-9),
            seconds: start.elapsed().as_secs_f64(),
            drift: backend.take_drift(),
            device: device.clone(),
        };
        on_epoch(&report);
        reports.push(report);
    }
    Ok(reports)
}
