//! Validated training parameters. Checked once, here, with an error that names the field and the allowed range;
//! the data are checked separately (see [`crate::data`]).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::limits::{MAX_BATCH, MAX_EPOCHS};
use crate::optim::Optimizer;
use crate::params::Sums;
pub use crate::schedule::{Schedule, ScheduleKind};
use crate::stopping::StopState;
pub use crate::stopping::{Convergence, EarlyStopping};

/// Where a resumed run starts: in epoch `epoch` (1-based) after its first `batches_done` steps, `steps` in all, with
/// the stopping rules where they stood at the end of the last whole epoch and the weights early stopping keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    /// The epoch in progress.
    pub epoch: usize,
    /// Steps of that epoch already taken.
    pub batches_done: usize,
    /// Steps taken in all.
    pub steps: u64,
    /// The stopping rules after the last whole epoch (absent from checkpoints written before they were saved:
    /// those resume with the rules as at a run's start).
    #[serde(default)]
    pub stopping: StopState,
    /// The loss and hit sums of the steps of the epoch in progress already taken (its reported training loss
    /// covers them), none at an epoch's end.
    #[serde(default)]
    pub sums: Sums,
    /// The weights of early stopping's best epoch so far, W [d, k] row-major then b, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<(Vec<f32>, Vec<f32>)>,
}

/// Everything that shapes a training run apart from the data and the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Rows per step; the last, partial batch of an epoch is averaged over its own size.
    pub batch_size: usize,
    /// Step size α.
    pub lr: f32,
    /// L2 penalty λ on W (not on b): objective = mean cross-entropy + λ/2·‖W‖² (+ λ₁·‖W‖₁).
    pub l2: f32,
    /// L1 penalty λ₁ on W (not on b), by a proximal step; with `l2` too, the elastic net.
    #[serde(default)]
    pub l1: f32,
    /// Seed of the per-epoch shuffle and of the validation split.
    pub seed: u64,
    /// Shuffle the training rows every epoch (false: the data's own order).
    pub shuffle: bool,
    /// Fraction of the data held out for evaluation when no test set is given (0 disables).
    pub val_split: f64,
    /// Z-score the features with the training split's mean and standard deviation.
    pub standardize: bool,
    /// The update rule.
    #[serde(default)]
    pub optimizer: Optimizer,
    /// Host memory the training rows may be held in (bytes); larger data is streamed from its file. None: half the
    /// memory available when training starts ([`crate::train::default_memory_budget`]).
    #[serde(default)]
    pub memory_budget: Option<u64>,
    /// Device memory the training rows may be held in (bytes), for adapters with memory of their own; None: no
    /// limit but the device's. Software adapters hold rows in host memory, under `memory_budget` as well.
    #[serde(default)]
    pub device_memory: Option<u64>,
    /// The learning rate of each step.
    #[serde(default)]
    pub schedule: Schedule,
    /// Stop on the held-out loss (needs a held-out set).
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Stop a minibatch run when its training loss stops falling (`epochs` is then the cap). Absent from the
    /// serialised settings when unset, so that runs without it keep their identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convergence: Option<Convergence>,
    /// A weight per class (index order) for each row's loss: J = (1/N)·Σ w_{y_i}·CE_i + penalty (see
    /// [`crate::train::Backend::set_class_weights`]). None: every row weighs 1. Absent from the serialised settings
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<Vec<f32>>,
    /// Where the training rows' sample weights came from (`--sample-weight`), for the run's identity and the
    /// model's metadata; the weights themselves travel with the rows ([`crate::RowSource::sample_weights`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_weight: Option<String>,
    /// Fit the biases b; false keeps them at 0 (scikit-learn's `fit_intercept=False`): L-BFGS only. Absent from
    /// the serialised settings when true.
    #[serde(default = "fit_intercept_default", skip_serializing_if = "is_true")]
    pub fit_intercept: bool,
    /// Continue a run from a checkpoint's point instead of its start (the backend given the checkpoint's weights
    /// and optimizer state). Not a setting of the run, so not saved with it.
    #[serde(skip)]
    pub resume: Option<Resume>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 30,
            batch_size: 64,
            lr: 0.01,
            l2: 0.0,
            l1: 0.0,
            seed: 42,
            shuffle: true,
            val_split: 0.2,
            standardize: false,
            optimizer: Optimizer::Sgd,
            memory_budget: None,
            device_memory: None,
            schedule: Schedule::default(),
            early_stopping: None,
            convergence: None,
            class_weights: None,
            sample_weight: None,
            fit_intercept: true,
            resume: None,
        }
    }
}

fn fit_intercept_default() -> bool {
    true
}

fn is_true(v: &bool) -> bool {
    *v
}

impl TrainConfig {
    /// Checks every field; the error names the first bad one as its command-line flag.
    ///
    /// Long on purpose: one check per setting, in the order of the fields, each naming its flag.
    pub fn check(&self) -> Result<()> {
        if !(1..=MAX_EPOCHS).contains(&self.epochs) {
            return Err(Error::param(
                "--epochs",
                format!("in 1..={MAX_EPOCHS}"),
                self.epochs,
            ));
        }
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return Err(Error::param(
                "--batch-size",
                format!("in 1..={MAX_BATCH}"),
                self.batch_size,
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::param("--lr", "a positive, finite number", self.lr));
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(Error::param("--l2", "a finite number ≥ 0", self.l2));
        }
        if !(self.l1.is_finite() && self.l1 >= 0.0) {
            return Err(Error::param("--l1", "a finite number ≥ 0", self.l1));
        }
        for (flag, bytes) in [
            ("--memory-budget", self.memory_budget),
            ("--device-memory", self.device_memory),
        ] {
            if bytes == Some(0) {
                return Err(Error::param(flag, "a positive number of bytes", 0));
            }
        }
        self.schedule.check(self.lr)?;
        self.optimizer.check()?;
        if let Optimizer::Lbfgs(_) = self.optimizer {
            // L-BFGS chooses its own steps by full passes (with an L1 term, as OWL-QN).
            if self.early_stopping.is_some() {
                return Err(Error::param(
                    "--early-stopping",
                    "used with a minibatch optimizer only (L-BFGS stops by --tol and --max-iter)",
                    "--optimizer lbfgs",
                ));
            }
            if self.schedule != Schedule::default() {
                return Err(Error::param(
                    "--schedule",
                    "constant with no warm-up for --optimizer lbfgs (its line search chooses every step)",
                    format!("{:?}", self.schedule.kind).to_lowercase(),
                ));
            }
        }
        if !self.fit_intercept && !matches!(self.optimizer, Optimizer::Lbfgs(_)) {
            return Err(Error::param(
                "--no-intercept",
                "used with L-BFGS only (a minibatch optimizer always fits the biases)",
                "a minibatch optimizer",
            ));
        }
        if let Some(e) = self.early_stopping {
            if e.patience == 0 {
                return Err(Error::param("--patience", "at least 1 epoch", 0));
            }
            if !(e.min_delta.is_finite() && e.min_delta >= 0.0) {
                return Err(Error::param(
                    "--min-delta",
                    "a finite number ≥ 0",
                    e.min_delta,
                ));
            }
        }
        if let Some(c) = self.convergence {
            if !(c.tol.is_finite() && c.tol >= 0.0) {
                return Err(Error::param("--tol", "a finite number ≥ 0", c.tol));
            }
            if c.patience == 0 {
                return Err(Error::param("convergence patience", "at least 1 epoch", 0));
            }
        }
        if !(self.val_split.is_finite() && (0.0..1.0).contains(&self.val_split)) {
            return Err(Error::param("--val-split", "in [0, 1)", self.val_split));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(c: TrainConfig) -> String {
        match c.check() {
            Err(Error::Param { flag, .. }) => flag,
            other => panic!("expected a parameter error, got {other:?}"),
        }
    }

    #[test]
    fn default_is_valid() {
        TrainConfig::default().check().unwrap();
    }

    #[test]
    fn each_bad_field_is_named() {
        let d = TrainConfig::default;
        assert_eq!(field_of(TrainConfig { epochs: 0, ..d() }), "--epochs");
        assert_eq!(
            field_of(TrainConfig {
                epochs: MAX_EPOCHS + 1,
                ..d()
            }),
            "--epochs"
        );
        assert_eq!(
            field_of(TrainConfig {
                batch_size: 0,
                ..d()
            }),
            "--batch-size"
        );
        assert_eq!(field_of(TrainConfig { lr: -0.1, ..d() }), "--lr");
        assert_eq!(field_of(TrainConfig { lr: 0.0, ..d() }), "--lr");
        assert_eq!(
            field_of(TrainConfig {
                lr: f32::NAN,
                ..d()
            }),
            "--lr"
        );
        assert_eq!(field_of(TrainConfig { l2: -1.0, ..d() }), "--l2");
        assert_eq!(
            field_of(TrainConfig {
                val_split: 1.0,
                ..d()
            }),
            "--val-split"
        );
        assert_eq!(
            field_of(TrainConfig {
                val_split: -0.1,
                ..d()
            }),
            "--val-split"
        );
    }
}
