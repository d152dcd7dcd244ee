//! `train --check-every` at the library level: a checked GPU run passes, trains exactly like an unchecked one, and a
//! device whose weights go wrong mid-run is stopped at the next check with the device named as the cause.

mod common;

use common::*;
use softmax_wgpu::data::{self, Standardizer};
use softmax_wgpu::gpu::{GpuBackend, GpuContext, GpuOptions};
use softmax_wgpu::shadow::{Shadow, ShadowOptions};
use softmax_wgpu::train::{
    Batch, EpochReport, Gradient, Held, OnEpoch, OptimizerState, Params, Sums, Update,
};
use softmax_wgpu::{fit, Backend, Error, RowSource, Shape, TrainConfig};

fn problem() -> data::Dataset {
    let mut d = data::synthetic(700, 24, 6, 11).unwrap();
    Standardizer::fit(d.x.view()).apply(&mut d.x);
    d
}

const SHAPE: Shape = Shape { d: 24, k: 6 };

fn config() -> TrainConfig {
    // 700 rows in batches of 32: 21 full steps and one of 28 per epoch, 66 steps in all.
    TrainConfig {
        epochs: 3,
        batch_size: 32,
        lr: 0.1,
        l2: 1e-3,
        val_split: 0.0,
        ..TrainConfig::default()
    }
}

fn gpu_backend(ctx: &GpuContext) -> GpuBackend<'_> {
    GpuBackend::new(ctx, SHAPE, &GpuOptions::default()).unwrap()
}

fn options(every: usize) -> ShadowOptions {
    ShadowOptions {
        every,
        tolerance: ShadowOptions::DEFAULT_TOLERANCE,
    }
}

#[test]
fn a_checked_gpu_run_passes_and_trains_exactly_like_an_unchecked_one() {
    let d = problem();
    let cfg = config();
    on_every_gpu(|ctx| {
        let mut plain = gpu_backend(ctx);
        fit(
            &mut plain,
            &mut d.clone().into_source().unwrap(),
            None,
            &cfg,
            &mut [],
        )
        .unwrap();
        let want = plain.params().unwrap();

        let mut checked = gpu_backend(ctx);
        let mut shadow = Shadow::new(SHAPE, options(5)).unwrap();
        let mut drifts = Vec::new();
        let mut record = OnEpoch(|r: &EpochReport| {
            drifts.push(r.drift);
            Ok(())
        });
        let mut train = d.clone().into_source().unwrap();
        fit(
            &mut checked,
            &mut train,
            None,
            &cfg,
            &mut [&mut shadow, &mut record],
        )
        .unwrap();
        // Watching the steps must not change a single one: the GPU is deterministic, so the weights are bitwise
        // those of the unchecked run.
        assert_eq!(checked.params().unwrap(), want);
        assert!(
            drifts.iter().all(Option::is_some),
            "22 steps per epoch, a check every 5"
        );
        let s = shadow.summary();
        assert_eq!(
            (s.steps, s.checks),
            (66, 14),
            "checks after 5, 10, …, 65, and 66 at the end"
        );
        let worst = s.worst.unwrap();
        // Per step the f32 kernels differ from f64 by ~(B + D)·u ≈ 3e-6 relatively; on this convex, standardised
        // problem SGD contracts old errors, so 66 steps stay well under 66 × 3e-6 ≈ 2e-4 (measured on lavapipe:
        // ~3e-7, the same as the CPU's own f32 path). 1e-4 would still catch any wrong kernel, which moves W by
        // percent.
        assert!(worst.drift < 1e-4, "{worst:?}");
        assert!(worst.cpu_f32_drift < 1e-4, "{worst:?}");
    });
}

/// A device that trains correctly until `at_step`, then has 1 % added to every weight: what a race or a
/// mis-indexed write would do to a real device. Written against the public trait, as any third-party backend is.
struct Corrupt<'a> {
    inner: GpuBackend<'a>,
    at_step: usize,
    steps: usize,
    /// When set, the loss sums read after this many reads are 1 % high: a wrong evaluation of J (what L-BFGS runs
    /// on), the weights untouched.
    sums_after: Option<usize>,
    sums_read: usize,
}

impl Backend for Corrupt<'_> {
    fn device(&self) -> String {
        self.inner.device()
    }
    fn shape(&self) -> Shape {
        self.inner.shape()
    }
    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }
    fn hold(&mut self, source: &mut dyn RowSource) -> softmax_wgpu::Result<Held> {
        self.inner.hold(source)
    }
    fn release(&mut self, set: Held) -> softmax_wgpu::Result<()> {
        self.inner.release(set)
    }
    fn holds_in_host_memory(&self) -> bool {
        self.inner.holds_in_host_memory()
    }
    fn accumulate(&mut self, batch: &Batch<'_>) -> softmax_wgpu::Result<()> {
        self.inner.accumulate(batch)
    }
    fn forward(&mut self, batch: &Batch<'_>) -> softmax_wgpu::Result<()> {
        self.inner.forward(batch)
    }
    fn update(&mut self, u: &Update) -> softmax_wgpu::Result<()> {
        self.inner.update(u)?;
        self.steps += 1;
        if self.steps == self.at_step {
            let p = self.inner.params()?;
            self.inner.set_params(&Params {
                w: p.w.mapv(|v| v * 1.01),
                b: p.b,
            })?;
        }
        Ok(())
    }
    fn take_gradient(&mut self) -> softmax_wgpu::Result<Gradient> {
        self.inner.take_gradient()
    }
    fn set_gradient(&mut self, g: &Gradient) -> softmax_wgpu::Result<()> {
        self.inner.set_gradient(g)
    }
    fn take_sums(&mut self) -> softmax_wgpu::Result<Sums> {
        let mut sums = self.inner.take_sums()?;
        self.sums_read += 1;
        if self.sums_after.is_some_and(|n| self.sums_read > n) {
            sums.loss *= 1.01;
        }
        Ok(sums)
    }

    fn set_sums(&mut self, sums: Sums) -> softmax_wgpu::Result<()> {
        self.inner.set_sums(sums)
    }
    fn params(&mut self) -> softmax_wgpu::Result<Params> {
        self.inner.params()
    }
    fn set_params(&mut self, p: &Params) -> softmax_wgpu::Result<()> {
        self.inner.set_params(p)
    }
    fn set_class_weights(&mut self, w: Option<&[f32]>) -> softmax_wgpu::Result<()> {
        self.inner.set_class_weights(w)
    }
    fn optimizer_state(&mut self) -> softmax_wgpu::Result<OptimizerState> {
        self.inner.optimizer_state()
    }
    fn set_optimizer_state(&mut self, s: &OptimizerState) -> softmax_wgpu::Result<()> {
        self.inner.set_optimizer_state(s)
    }
}

#[test]
fn a_device_that_goes_wrong_is_stopped_at_the_next_check_and_blamed() {
    let d = problem();
    let cfg = config();
    on_every_gpu(|ctx| {
        let mut corrupt = Corrupt {
            inner: gpu_backend(ctx),
            at_step: 30,
            steps: 0,
            sums_after: None,
            sums_read: 0,
        };
        let mut shadow = Shadow::new(SHAPE, options(4)).unwrap();
        let mut epochs = 0;
        let mut count = OnEpoch(|_: &EpochReport| {
            epochs += 1;
            Ok(())
        });
        let mut train = d.clone().into_source().unwrap();
        let err = fit(
            &mut corrupt,
            &mut train,
            None,
            &cfg,
            &mut [&mut shadow, &mut count],
        )
        .unwrap_err();
        // Checks are every 4 steps of the whole run (4, 8, …, 28, 32 — epoch 1 ends at step 22, between two); the
        // weights go wrong after step 30, and the check after step 32 catches it.
        match &err {
            Error::Drift {
                step,
                drift,
                cpu_f32_drift,
                ..
            } => {
                assert_eq!(*step, 32);
                // 1 % on W (b is untouched and small next to W), two correct steps later: a drift near 1e-2.
                assert!(*drift > 5e-3 && *drift < 1.1e-2, "{drift}");
                assert!(*cpu_f32_drift < 1e-5, "{cpu_f32_drift}");
            }
            other => panic!("expected a drift, got {other}"),
        }
        assert_eq!(epochs, 1, "stopped during the second epoch");
        let msg = err.to_string();
        assert!(msg.contains("the device computes differently"), "{msg}");
        assert!(msg.starts_with(&ctx.describe()), "names the device: {msg}");
        assert!(!err.is_input(), "a failed check is not bad input (exit 1)");
    });
}

#[test]
fn an_lbfgs_run_is_checked_by_its_objective_and_a_wrong_evaluation_is_stopped() {
    use softmax_wgpu::lbfgs::LbfgsOptions;
    use softmax_wgpu::train::Optimizer;
    let d = problem();
    let cfg = TrainConfig {
        optimizer: Optimizer::Lbfgs(LbfgsOptions {
            tol: 1e-6,
            max_iter: 40,
            ..LbfgsOptions::default()
        }),
        l2: 1e-3,
        val_split: 0.0,
        ..TrainConfig::default()
    };
    on_every_gpu(|ctx| {
        // Correct: every 3rd iteration and the last are checked, J agrees to f32's precision.
        let mut shadow = Shadow::new(SHAPE, options(3)).unwrap();
        let mut device = gpu_backend(ctx);
        let mut src = d.clone().into_source().unwrap();
        let reports = fit(&mut device, &mut src, None, &cfg, &mut [&mut shadow]).unwrap();
        let s = shadow.summary();
        assert_eq!(s.checks, reports.len().div_ceil(3), "{s:?}");
        let worst = s.worst.unwrap();
        // J is a mean of 700 f32 losses: a few ulp of J, far below the 1e-3 tolerance.
        assert!(
            worst.drift < 1e-5 && worst.cpu_f32_drift < 1e-5,
            "{worst:?}"
        );
        assert!(reports.iter().any(|r| r.drift.is_some()));
        // A device whose loss sums go 1 % high after its 6th read is stopped at the next check, and blamed.
        let mut shadow = Shadow::new(SHAPE, options(2)).unwrap();
        let mut bad = Corrupt {
            inner: gpu_backend(ctx),
            at_step: usize::MAX,
            steps: 0,
            sums_after: Some(6),
            sums_read: 0,
        };
        let mut src = d.clone().into_source().unwrap();
        match fit(&mut bad, &mut src, None, &cfg, &mut [&mut shadow]) {
            Err(Error::Drift {
                drift,
                cpu_f32_drift,
                ..
            }) => {
                assert!((0.005..0.02).contains(&drift), "{drift}");
                assert!(cpu_f32_drift < 1e-5);
            }
            other => panic!("expected a drift error, got {other:?}"),
        }
    });
}
