//! `train --check-every` at the library level: a checked GPU run passes, trains exactly like an unchecked one, and a
//! device whose weights go wrong mid-run is stopped at the next check with the device named as the cause.

mod common;

use common::*;
use softmax_wgpu::data::{self, Standardizer};
use softmax_wgpu::gpu::{GpuBackend, GpuContext, GpuOptions};
use softmax_wgpu::shadow::{ShadowOptions, Shadowed};
use softmax_wgpu::train::{Params, Sums};
use softmax_wgpu::{fit, Backend, Error, TrainConfig};

fn problem() -> data::Dataset {
    let mut d = data::synthetic(700, 24, 6, 11).unwrap();
    Standardizer::fit(d.x.view()).apply(&mut d.x);
    d
}

fn config() -> TrainConfig {
    // 700 rows in batches of 32: 21 full steps and one of 28 per epoch, 66 steps in all.
    TrainConfig {
        epochs: 3,
        batch_size: 32,
        lr: 0.1,
        l2: 1e-3,
        ..TrainConfig::default()
    }
}

fn gpu_backend<'a>(ctx: &'a GpuContext, d: &data::Dataset) -> GpuBackend<'a> {
    GpuBackend::new(
        ctx,
        d.x.view(),
        &d.y,
        6,
        None,
        config().batch_size,
        &GpuOptions::default(),
    )
    .unwrap()
}

#[test]
fn a_checked_gpu_run_passes_and_trains_exactly_like_an_unchecked_one() {
    let d = problem();
    let cfg = config();
    on_every_gpu(|ctx| {
        let mut plain = gpu_backend(ctx, &d);
        fit(&mut plain, d.len(), &cfg, &mut |_| {}, &mut |_| {}).unwrap();
        let want = plain.params().unwrap();

        let options = ShadowOptions {
            every: 5,
            tolerance: ShadowOptions::DEFAULT_TOLERANCE,
        };
        let mut checked =
            Shadowed::new(Box::new(gpu_backend(ctx, &d)), d.x.view(), &d.y, options).unwrap();
        let reports = fit(&mut checked, d.len(), &cfg, &mut |_| {}, &mut |_| {}).unwrap();
        // Splitting epochs at the checks must not change a single step: the GPU is deterministic, so the weights
        // are bitwise those of the unchecked run.
        assert_eq!(checked.params().unwrap(), want);
        assert!(
            reports.iter().all(|r| r.drift.is_some()),
            "22 steps per epoch, a check every 5"
        );
        let s = checked.finish().unwrap();
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
/// mis-indexed write would do to a real device.
struct Corrupt<'a> {
    inner: GpuBackend<'a>,
    at_step: usize,
    steps: usize,
}

impl Backend for Corrupt<'_> {
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
    ) -> softmax_wgpu::Result<Sums> {
        let sums = self
            .inner
            .train_epoch(order, batch_size, lr, l2, progress)?;
        let before = self.steps;
        self.steps += order.len().div_ceil(batch_size);
        if before < self.at_step && self.steps >= self.at_step {
            let p = self.inner.params()?;
            self.inner.set_params(&Params {
                w: p.w.mapv(|v| v * 1.01),
                b: p.b,
            })?;
        }
        Ok(sums)
    }

    fn evaluate(&mut self) -> softmax_wgpu::Result<Option<Sums>> {
        self.inner.evaluate()
    }

    fn params(&mut self) -> softmax_wgpu::Result<Params> {
        self.inner.params()
    }
}

#[test]
fn a_device_that_goes_wrong_is_stopped_at_the_next_check_and_blamed() {
    let d = problem();
    let cfg = config();
    on_every_gpu(|ctx| {
        let corrupt = Corrupt {
            inner: gpu_backend(ctx, &d),
            at_step: 30,
            steps: 0,
        };
        let options = ShadowOptions {
            every: 4,
            tolerance: ShadowOptions::DEFAULT_TOLERANCE,
        };
        let mut checked = Shadowed::new(Box::new(corrupt), d.x.view(), &d.y, options).unwrap();
        let mut epochs = 0;
        let err = fit(&mut checked, d.len(), &cfg, &mut |_| {}, &mut |_| {
            epochs += 1
        })
        .unwrap_err();
        // Checks are every 4 steps of the whole run (4, 8, …, 20, 24, … — epoch 1 ends at step 22, between two);
        // the device is handed the steps between checks at once, so the corruption lands at the end of the segment
        // holding step 30, (28, 32], and the check after step 32 catches it.
        match &err {
            Error::Drift {
                step,
                drift,
                cpu_f32_drift,
                ..
            } => {
                assert_eq!(*step, 32);
                // 1 % on W (b is untouched and small next to W): a drift near 1e-2.
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
