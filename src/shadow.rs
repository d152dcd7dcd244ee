//! `train --check-every N`: a real training run checked against the CPU reference while it runs.
//!
//! [`Shadow`] is an [`Observer`] of a run: it holds the same training source on two CPU backends (f64 and f32) and
//! replays every step the device takes — the same rows, in the same batches, with the same update, from the same
//! starting weights — on both. Every `every` steps it reads the device's weights and compares them with the f64
//! replay's:
//!
//! ```text
//! drift = ‖[W;b]_device − [W;b]_f64‖ / ‖[W;b]_f64‖        (Frobenius norms, in f64)
//! ```
//!
//! and stops the run with [`Error::Drift`] once the drift passes the tolerance. The same steps also run on the CPU's
//! f32 path, whose drift from f64 is reported beside the device's: it is what f32 rounding alone does to this run, so
//! a failed check says whether the device is at fault (the CPU's f32 stays close) or the training dynamics amplify
//! rounding (an unstable learning rate makes the CPU's f32 drift as much). The CPU backends share the source's rows
//! when it holds them in memory and widen them one batch at a time, so the shadow adds only two copies of the weights
//! and one batch to the memory of the run; its cost is that of a CPU f64 and a CPU f32 training run, plus one weight
//! read-back per check.
//!
//! An L-BFGS run has no steps to replay: its iterates are the host's f64 algebra on the device's evaluations of J
//! and ∇J. There each iteration counts as a step, and a check recomputes J at the device's weights over the held
//! rows on the CPU in f64 (and f32) and compares it with the J the device evaluated: drift = |J_device − J_f64| /
//! |J_f64|, a few ulp of J for a correct device.
//!
//! Why a default tolerance of 1e-3: each f32 step perturbs the weights by about u·√(reduction length) relative to
//! the f64 step (u = 2⁻²⁴ ≈ 6e-8; `validate` bounds each kernel this way), and on this convex objective with a
//! stable learning rate SGD contracts perturbations rather than compounding them, so the drift of a correct device
//! settles orders of magnitude lower (measured: 1e-7 to 1e-5 over thousands of steps, see README). A wrong kernel —
//! a mis-indexed row, a race, a lost workgroup — moves the weights by whole percent within a few steps.

use serde::Serialize;

use crate::config::TrainConfig;
use crate::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::numerics::relative_distance;
use crate::train::{
    Backend, Batch, BatchRows, EpochReport, Held, Observer, Residency, Shape, Start, StepEvent,
};

/// How often and how strictly to check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ShadowOptions {
    /// Compare after every this many steps (≥ 1).
    pub every: usize,
    /// Largest allowed drift (relative, > 0).
    pub tolerance: f64,
}

impl ShadowOptions {
    /// The default tolerance (see the module documentation).
    pub const DEFAULT_TOLERANCE: f64 = 1e-3;

    /// Refuses a zero interval and a tolerance that is not a positive finite number.
    pub fn check(&self) -> Result<()> {
        if self.every == 0 {
            return Err(Error::param(
                "--check-every",
                "at least 1 (steps between checks)",
                0,
            ));
        }
        if !(self.tolerance.is_finite() && self.tolerance > 0.0) {
            return Err(Error::param(
                "--check-tolerance",
                "a positive finite number",
                self.tolerance,
            ));
        }
        Ok(())
    }
}

/// One comparison of the device's weights with the shadow's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Check {
    /// Steps taken before it (1-based count of the last step compared).
    pub step: usize,
    /// ‖Δ‖/‖reference‖ over W and b: the device against the f64 reference.
    pub drift: f64,
    /// The same for the CPU's own f32 path on the same steps: the drift that f32 rounding alone causes here.
    pub cpu_f32_drift: f64,
}

/// What the checks of a run found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ShadowSummary {
    /// Steps the device took.
    pub steps: usize,
    /// Comparisons made.
    pub checks: usize,
    /// The largest drift seen, with its step.
    pub worst: Option<Check>,
    /// The most recent comparison.
    pub last: Option<Check>,
    /// The options it ran with.
    pub options: ShadowOptions,
}

/// Replays a run's steps on the CPU in f64 (and f32) and checks the device against it. See the module documentation.
#[derive(Debug)]
pub struct Shadow {
    f64_path: CpuBackend<f64>,
    f32_path: CpuBackend<f32>,
    held: Option<(Held, Held)>,
    /// For an L-BFGS run: its L2 penalty and the training rows' sample weights; the checks then compare J.
    lbfgs: Option<(f32, Option<std::sync::Arc<[f32]>>)>,
    /// The objective the device reported for its latest iterate (L-BFGS).
    last_j: f64,
    options: ShadowOptions,
    steps: usize,
    since: usize,
    checks: usize,
    worst: Option<Check>,
    last: Option<Check>,
    epoch_worst: Option<f64>,
}

impl Shadow {
    /// A shadow for a model of `shape`.
    pub fn new(shape: Shape, options: ShadowOptions) -> Result<Self> {
        options.check()?;
        Ok(Shadow {
            f64_path: CpuBackend::try_new(shape)?,
            f32_path: CpuBackend::try_new(shape)?,
            held: None,
            lbfgs: None,
            last_j: f64::NAN,
            options,
            steps: 0,
            since: 0,
            checks: 0,
            worst: None,
            last: None,
            epoch_worst: None,
        })
    }

    /// Compares now, whatever the interval says. Fails like a scheduled check.
    pub fn check_now(&mut self, device: &mut dyn Backend) -> Result<Check> {
        let params = device.params()?;
        let (w64, b64) = self.f64_path.weights();
        let reference = || w64.iter().chain(b64.iter()).copied();
        let drift = relative_distance(params.w.iter().chain(params.b.iter()).copied(), reference());
        let (w32, b32) = self.f32_path.weights();
        let cpu_f32_drift = relative_distance(w32.iter().chain(b32.iter()).copied(), reference());
        // Overflow on the CPU (in f64, or in f32 on the same steps) is the run diverging, not the device drifting;
        // a device that goes non-finite while the CPU's f32 does not is a drift (NaN fails the comparison below).
        let finite64 = reference().all(f64::is_finite);
        let finite32 = w32.iter().chain(b32.iter()).all(|v| v.is_finite());
        let check = self.record(drift, cpu_f32_drift);
        if !(finite64 && finite32) {
            return Err(Error::Diverged {
                step: self.steps as u64,
                what: format!(
                    "the CPU's {} weights overflow too",
                    if finite64 { "f32" } else { "f64" }
                ),
            });
        }
        self.judge(device, check)
    }

    /// Counts a comparison: the interval starts again, and the worst of the run and of the epoch are kept.
    fn record(&mut self, drift: f64, cpu_f32_drift: f64) -> Check {
        let check = Check {
            step: self.steps,
            drift,
            cpu_f32_drift,
        };
        self.since = 0;
        self.checks += 1;
        self.last = Some(check);
        if self.worst.is_none_or(|w| drift > w.drift || drift.is_nan()) {
            self.worst = Some(check);
        }
        self.epoch_worst = Some(self.epoch_worst.map_or(drift, |w| w.max(drift)));
        check
    }

    /// The check, or [`Error::Drift`] when its drift is over the tolerance (or NaN).
    fn judge(&self, device: &dyn Backend, check: Check) -> Result<Check> {
        if check.drift > self.options.tolerance || check.drift.is_nan() {
            return Err(Error::Drift {
                device: device.device(),
                step: self.steps,
                drift: check.drift,
                tolerance: self.options.tolerance,
                cpu_f32_drift: check.cpu_f32_drift,
            });
        }
        Ok(check)
    }

    /// An L-BFGS run's check: J at the device's weights, recomputed over the held rows on the CPU in f64 (and f32),
    /// against the J the device evaluated there (`j_device`). L-BFGS's iterates are the host's f64 algebra on the
    /// device's evaluations, so the evaluation is what the device contributes and what is checked; the drift is
    /// |J_device − J_f64| / |J_f64|.
    fn check_objective(&mut self, device: &mut dyn Backend, j_device: f64) -> Result<Check> {
        let (l2, weights) = self
            .lbfgs
            .clone()
            .ok_or_else(|| Error::Internal("an objective check outside an L-BFGS run".into()))?;
        let (h64, h32) = self.held.ok_or_else(|| {
            Error::Internal("an L-BFGS check without the training rows held".into())
        })?;
        let params = device.params()?;
        let (j64, _) = crate::train::objective_held(
            &mut self.f64_path,
            h64,
            &params,
            (l2, weights.as_deref()),
        )?;
        let (j32, _) = crate::train::objective_held(
            &mut self.f32_path,
            h32,
            &params,
            (l2, weights.as_deref()),
        )?;
        let scale = j64.abs().max(f64::MIN_POSITIVE);
        let check = self.record((j_device - j64).abs() / scale, (j32 - j64).abs() / scale);
        self.judge(device, check)
    }

    /// What the checks found so far.
    pub fn summary(&self) -> ShadowSummary {
        ShadowSummary {
            steps: self.steps,
            checks: self.checks,
            worst: self.worst,
            last: self.last,
            options: self.options,
        }
    }

    /// Accumulates one part of a step on both CPU paths: rows of the held set by the same indices, or the rows
    /// themselves when the device streams them.
    fn replay_part(&mut self, batch: &Batch<'_>) -> Result<()> {
        let (b64, b32) = match batch.rows() {
            BatchRows::Held { rows, .. } => {
                let (h64, h32) = self.held.ok_or_else(|| {
                    Error::Internal("shadow given held rows it does not hold".into())
                })?;
                (Batch::held(h64, rows)?, Batch::held(h32, rows)?)
            }
            BatchRows::Host(chunk) => (Batch::host(chunk.clone())?, Batch::host(chunk.clone())?),
        };
        let (b64, b32) = match batch.weights() {
            Some(w) => (b64.with_weights(w)?, b32.with_weights(w)?),
            None => (b64, b32),
        };
        self.f64_path.accumulate(&b64)?;
        self.f32_path.accumulate(&b32)
    }

    /// Applies the step's update on both CPU paths.
    fn replay_update(&mut self, event: &StepEvent<'_>) -> Result<()> {
        let paths: [&mut dyn Backend; 2] = [&mut self.f64_path, &mut self.f32_path];
        for cpu in paths {
            cpu.update(event.update)?;
            cpu.take_sums()?;
        }
        Ok(())
    }
}

impl Observer for Shadow {
    fn on_start(
        &mut self,
        start: &mut Start<'_>,
        cfg: &TrainConfig,
        device: &mut dyn Backend,
    ) -> Result<()> {
        self.f64_path
            .set_class_weights(cfg.class_weights.as_deref())?;
        self.f32_path
            .set_class_weights(cfg.class_weights.as_deref())?;
        // Held data is held here too (shared, not copied, when it is in RAM); streamed rows are replayed as the
        // device sees them.
        self.held = None;
        self.lbfgs = None;
        if let crate::train::Optimizer::Lbfgs(_) = cfg.optimizer {
            if start.residency != Residency::Held {
                return Err(Error::param(
                    "--check-every",
                    "used on training rows held in memory with --optimizer lbfgs (each check evaluates J over them again)",
                    "streamed rows",
                ));
            }
            self.lbfgs = Some((cfg.l2, start.train.sample_weights()));
        }
        if start.residency == Residency::Held {
            let h64 = self.f64_path.hold(start.train)?;
            let h32 = self.f32_path.hold(start.train)?;
            self.held = Some((h64, h32));
        }
        let start = device.params()?;
        self.f64_path.set_params(&start)?;
        self.f32_path.set_params(&start)
    }

    fn wants_rows(&self) -> bool {
        true
    }

    fn on_batch(&mut self, batch: &Batch<'_>, _device: &mut dyn Backend) -> Result<()> {
        self.replay_part(batch)
    }

    fn on_step(&mut self, event: &StepEvent<'_>, device: &mut dyn Backend) -> Result<()> {
        self.replay_update(event)?;
        self.steps += 1;
        self.since += 1;
        if self.since >= self.options.every {
            self.check_now(device)?;
        }
        Ok(())
    }

    fn on_epoch(&mut self, report: &mut EpochReport, device: &mut dyn Backend) -> Result<()> {
        if let (Some(it), Some(_)) = (report.lbfgs, &self.lbfgs) {
            // An L-BFGS iteration is a step here: every `every` of them, J is recomputed on the CPU.
            self.steps = it.iteration;
            self.since += 1;
            self.last_j = report.train_loss;
            if self.since >= self.options.every {
                self.check_objective(device, report.train_loss)?;
            }
        }
        report.drift = self.epoch_worst.take();
        Ok(())
    }

    /// Compares the steps taken since the last check (or the start, when nothing was compared yet).
    fn on_finish(&mut self, device: &mut dyn Backend) -> Result<()> {
        if self.since > 0 || self.checks == 0 {
            if self.lbfgs.is_some() {
                let j = self.last_j;
                self.check_objective(device, j)?;
            } else {
                self.check_now(device)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{synthetic, InMemory};
    use crate::train::fit;

    fn options(every: usize) -> ShadowOptions {
        ShadowOptions {
            every,
            tolerance: ShadowOptions::DEFAULT_TOLERANCE,
        }
    }

    fn source(n: usize, d: usize, k: usize, seed: u64) -> InMemory {
        let data = synthetic(n, d, k, seed).unwrap();
        InMemory::from_arrays("synthetic", data.x, data.y, k).unwrap()
    }

    fn config(epochs: usize, batch_size: usize, lr: f32, l2: f32) -> TrainConfig {
        TrainConfig {
            epochs,
            batch_size,
            lr,
            l2,
            seed: 9,
            val_split: 0.0,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn impossible_options_are_refused() {
        assert!(options(0).check().is_err());
        for tolerance in [0.0, -1e-3, f64::NAN, f64::INFINITY] {
            let o = ShadowOptions {
                every: 1,
                tolerance,
            };
            let e = o.check().unwrap_err();
            assert!(e.to_string().contains("--check-tolerance"), "{e}");
        }
        assert!(options(1).check().is_ok());
    }

    #[test]
    fn an_f64_device_replays_exactly() {
        // Watching the f64 CPU trainer: the shadow runs the same f64 arithmetic on the same batches, so the only
        // difference is the f32 rounding of the weights that params() returns, at most u = 2⁻²⁴ relative per
        // element and so in norm. A replay of the wrong rows, batches or step count would be off by far more.
        let shape = Shape { d: 7, k: 4 };
        let mut train = source(203, 7, 4, 5);
        let mut device = CpuBackend::<f64>::new(shape);
        let mut shadow = Shadow::new(shape, options(3)).unwrap();
        let mut drifts = Vec::new();
        let mut record = crate::train::OnEpoch(|r: &EpochReport| {
            drifts.push(r.drift);
            Ok(())
        });
        fit(
            &mut device,
            &mut train,
            None,
            &config(3, 16, 0.2, 1e-3),
            &mut [&mut shadow, &mut record],
        )
        .unwrap();
        assert!(
            drifts.iter().all(Option::is_some),
            "13 steps per epoch: checks happen"
        );
        let summary = shadow.summary();
        // 13 steps per epoch (12 full batches of 16 and one of 11), 39 in all: checks after 3, 6, …, 39.
        assert_eq!(summary.steps, 39);
        assert_eq!(summary.checks, 13);
        let worst = summary.worst.unwrap();
        assert!(worst.drift <= 5.97e-8, "{worst:?}");
        // The CPU's f32 path does drift a little, and is reported.
        assert!(
            worst.cpu_f32_drift > 0.0 && worst.cpu_f32_drift < 1e-5,
            "{worst:?}"
        );
    }

    #[test]
    fn finish_checks_the_steps_since_the_last_check_once() {
        let shape = Shape { d: 3, k: 2 };
        let mut train = source(50, 3, 2, 1);
        let mut device = CpuBackend::<f32>::new(shape);
        let mut shadow = Shadow::new(shape, options(4)).unwrap();
        // 50 rows in batches of 10: 5 steps, a check after step 4, then the end of the run checks step 5.
        let cfg = TrainConfig {
            shuffle: false,
            ..config(1, 10, 0.1, 0.0)
        };
        fit(&mut device, &mut train, None, &cfg, &mut [&mut shadow]).unwrap();
        let summary = shadow.summary();
        assert_eq!((summary.checks, summary.last.unwrap().step), (2, 5));
        shadow.on_finish(&mut device).unwrap();
        assert_eq!(shadow.summary().checks, 2, "nothing new to compare");
    }

    #[test]
    fn diverging_training_is_reported_as_divergence() {
        let shape = Shape { d: 4, k: 3 };
        let data = synthetic(64, 4, 3, 2).unwrap();
        let mut train =
            InMemory::from_arrays("huge", data.x.mapv(|v| v * 1e30), data.y, 3).unwrap();
        let mut device = CpuBackend::<f32>::new(shape);
        let mut shadow = Shadow::new(shape, options(1)).unwrap();
        let e = fit(
            &mut device,
            &mut train,
            None,
            &config(20, 8, 1e30, 0.0),
            &mut [&mut shadow],
        )
        .unwrap_err();
        assert!(matches!(e, Error::Diverged { .. }), "{e}");
        assert!(e.to_string().contains("diverged"), "{e}");
    }
}
