//! `train --check-every N`: a real training run checked against the CPU reference while it runs.
//!
//! [`Shadowed`] wraps any [`Backend`] and replays every step it takes — the same rows, in the same batches, with the
//! same learning rate and penalty, from the same starting weights — on the CPU mirrors in f64. Every `every` steps it
//! reads the device's weights and compares them with the shadow's:
//!
//! ```text
//! drift = ‖[W;b]_device − [W;b]_f64‖ / ‖[W;b]_f64‖        (Frobenius norms, in f64)
//! ```
//!
//! and stops the run with [`Error::Drift`] once the drift passes the tolerance. The same steps also run on the CPU's
//! f32 path, whose drift from f64 is reported beside the device's: it is what f32 rounding alone does to this run, so
//! a failed check says whether the device is at fault (the CPU's f32 stays close) or the training dynamics amplify
//! rounding (an unstable learning rate makes the CPU's f32 drift as much). The shadow gathers its batches from
//! the caller's f32 rows and widens them one batch at a time, so it adds only two copies of the weights and one batch
//! to the memory of the run; its cost is that of a CPU f64 and a CPU f32 training run, plus one weight read-back per
//! check.
//!
//! Why a default tolerance of 1e-3: each f32 step perturbs the weights by about u·√(reduction length) relative to
//! the f64 step (u = 2⁻²⁴ ≈ 6e-8; `validate` bounds each kernel this way), and on this convex objective with a
//! stable learning rate SGD contracts perturbations rather than compounding them, so the drift of a correct device
//! settles orders of magnitude lower (measured: 1e-7 to 1e-5 over thousands of steps, see README). A wrong kernel —
//! a mis-indexed row, a race, a lost workgroup — moves the weights by whole percent within a few steps.

use ndarray::{Array1, Array2, ArrayView2};
use serde::Serialize;

use crate::cpu::{cast, gather, step};
use crate::error::{Error, Result};
use crate::train::{Backend, Params, Sums};
use crate::validate::relative_distance;

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
                "must be at least 1 (steps between checks)",
            ));
        }
        if !(self.tolerance.is_finite() && self.tolerance > 0.0) {
            return Err(Error::param(
                "--check-tolerance",
                format!("must be a positive finite number, got {}", self.tolerance),
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

/// A [`Backend`] whose every step is replayed and checked on the CPU in f64.
#[allow(missing_debug_implementations)] // holds a `dyn Backend`
pub struct Shadowed<'a> {
    inner: Box<dyn Backend + 'a>,
    x: ArrayView2<'a, f32>,
    y: &'a [u32],
    w: Array2<f64>,
    b: Array1<f64>,
    /// The CPU's own f32 path on the same steps.
    f32_path: Params,
    options: ShadowOptions,
    steps: usize,
    since: usize,
    checks: usize,
    worst: Option<Check>,
    last: Option<Check>,
    epoch_worst: Option<f64>,
}

impl<'a> Shadowed<'a> {
    /// Wraps `inner`, which trains on the rows `x`, `y` (the same rows, in the same order, it was built with). The
    /// shadow starts from `inner`'s current weights.
    pub fn new(
        mut inner: Box<dyn Backend + 'a>,
        x: ArrayView2<'a, f32>,
        y: &'a [u32],
        options: ShadowOptions,
    ) -> Result<Self> {
        options.check()?;
        let start = inner.params()?;
        Ok(Shadowed {
            inner,
            x,
            y,
            w: start.w.mapv(f64::from),
            b: start.b.mapv(f64::from),
            f32_path: start,
            options,
            steps: 0,
            since: 0,
            checks: 0,
            worst: None,
            last: None,
            epoch_worst: None,
        })
    }

    /// Compares now, whatever the interval says (at the end of a run). Fails like a scheduled check.
    pub fn check_now(&mut self) -> Result<Check> {
        let params = self.inner.params()?;
        let drift = self.drift_of(&params);
        let cpu_f32_drift = self.drift_of(&self.f32_path);
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
        // Overflow on the CPU (in f64, or in f32 on the same steps) is the run diverging, not the device drifting;
        // a device that goes non-finite while the CPU's f32 does not is a drift (NaN fails the comparison below).
        let finite64 = self.w.iter().chain(self.b.iter()).all(|v| v.is_finite());
        let finite32 = self
            .f32_path
            .w
            .iter()
            .chain(self.f32_path.b.iter())
            .all(|v| v.is_finite());
        if !(finite64 && finite32) {
            return Err(Error::param(
                "--lr",
                format!(
                    "training diverged by step {} (the CPU's {} weights overflow too): lower the learning rate",
                    self.steps,
                    if finite64 { "f32" } else { "f64" }
                ),
            ));
        }
        // NaN (a device that produced one) fails too.
        if drift > self.options.tolerance || drift.is_nan() {
            return Err(Error::Drift {
                device: self.inner.device(),
                step: self.steps,
                drift,
                tolerance: self.options.tolerance,
                cpu_f32_drift,
            });
        }
        Ok(check)
    }

    /// Ends a run: compares the steps taken since the last check (if any, or if nothing was ever compared) and
    /// returns what all the checks found.
    pub fn finish(&mut self) -> Result<ShadowSummary> {
        if self.since > 0 || self.checks == 0 {
            self.check_now()?;
        }
        Ok(self.summary())
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

    /// ‖[W;b] − [W;b]_f64‖ / ‖[W;b]_f64‖ of f32 weights.
    fn drift_of(&self, p: &Params) -> f64 {
        relative_distance(
            p.w.iter().chain(p.b.iter()).copied(),
            self.w.iter().chain(self.b.iter()).copied(),
        )
    }
}

impl Backend for Shadowed<'_> {
    fn device(&self) -> String {
        self.inner.device()
    }

    fn train_epoch(
        &mut self,
        order: &[u32],
        batch_size: usize,
        lr: f32,
        l2: f32,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Sums> {
        let batch_size = batch_size.max(1);
        let (lr64, l2_64) = (f64::from(lr), f64::from(l2));
        let mut sums = Sums::default();
        let mut pos = 0;
        while pos < order.len() {
            // Run up to the next check on the device, then replay the same batches on the shadow.
            let left = (order.len() - pos).div_ceil(batch_size);
            let take = (self.options.every - self.since).min(left);
            let end = (pos + take * batch_size).min(order.len());
            let segment = &order[pos..end];
            let s = self
                .inner
                .train_epoch(segment, batch_size, lr, l2, progress)?;
            sums.add(s.loss, s.correct, s.rows);
            for batch in segment.chunks(batch_size) {
                let (xb, yb) = gather(batch, self.x, self.y);
                let f32_path = &mut self.f32_path;
                step(xb.view(), &yb, &mut f32_path.w, &mut f32_path.b, lr, l2);
                step(
                    cast::<f64>(xb.view()).view(),
                    &yb,
                    &mut self.w,
                    &mut self.b,
                    lr64,
                    l2_64,
                );
            }
            self.steps += take;
            self.since += take;
            pos = end;
            if self.since >= self.options.every {
                self.check_now()?;
            }
        }
        Ok(sums)
    }

    fn evaluate(&mut self) -> Result<Option<Sums>> {
        self.inner.evaluate()
    }

    fn params(&mut self) -> Result<Params> {
        self.inner.params()
    }

    fn take_drift(&mut self) -> Option<f64> {
        self.epoch_worst.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuBackend;
    use crate::data::synthetic;
    use crate::train::epoch_order;

    fn options(every: usize) -> ShadowOptions {
        ShadowOptions {
            every,
            tolerance: ShadowOptions::DEFAULT_TOLERANCE,
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
        // Wrapping the f64 CPU trainer: the shadow runs the same f64 arithmetic on the same batches, so the only
        // difference is the f32 rounding of the weights that params() returns, at most u = 2⁻²⁴ relative per
        // element and so in norm. A replay of the wrong rows, batches or step count would be off by far more.
        let data = synthetic(203, 7, 4, 5).unwrap();
        let inner = Box::new(CpuBackend::<f64>::new(data.x.view(), &data.y, 4, None));
        let mut s = Shadowed::new(inner, data.x.view(), &data.y, options(3)).unwrap();
        let mut rows = 0;
        for epoch in 1..=3 {
            let order = epoch_order(data.len(), 9, epoch, true);
            let sums = s
                .train_epoch(&order, 16, 0.2, 1e-3, &mut |r| rows += r)
                .unwrap();
            assert_eq!(sums.rows, data.len());
            assert!(
                s.take_drift().is_some(),
                "13 steps per epoch: checks happen"
            );
        }
        assert_eq!(rows, 3 * data.len(), "progress passes through");
        let summary = s.finish().unwrap();
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
        let data = synthetic(50, 3, 2, 1).unwrap();
        let inner = Box::new(CpuBackend::<f32>::new(data.x.view(), &data.y, 2, None));
        let mut s = Shadowed::new(inner, data.x.view(), &data.y, options(4)).unwrap();
        let order = epoch_order(data.len(), 1, 1, false);
        // 50 rows in batches of 10: 5 steps, a check after step 4, then finish checks step 5.
        s.train_epoch(&order, 10, 0.1, 0.0, &mut |_| {}).unwrap();
        assert_eq!(s.summary().checks, 1);
        let summary = s.finish().unwrap();
        assert_eq!((summary.checks, summary.last.unwrap().step), (2, 5));
        assert_eq!(s.finish().unwrap().checks, 2, "nothing new to compare");
    }

    #[test]
    fn diverging_training_is_reported_as_divergence() {
        let data = synthetic(64, 4, 3, 2).unwrap();
        let x = data.x.mapv(|v| v * 1e30);
        let inner = Box::new(CpuBackend::<f32>::new(x.view(), &data.y, 3, None));
        let mut s = Shadowed::new(inner, x.view(), &data.y, options(1)).unwrap();
        let order = epoch_order(data.len(), 1, 1, false);
        let mut result = Ok(Sums::default());
        for _ in 0..20 {
            result = s.train_epoch(&order, 8, 1e30, 0.0, &mut |_| {});
            if result.is_err() {
                break;
            }
        }
        let e = result.unwrap_err();
        assert!(e.to_string().contains("diverged"), "{e}");
    }
}
