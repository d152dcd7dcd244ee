//! A training trajectory on the device against its f64 replay, and bitwise determinism.

use crate::cpu::{self, CpuBackend};
use crate::data::{self, Standardizer};
use crate::error::{Error, Result};
use crate::gpu::{GpuBackend, GpuContext, GpuOptions};
use crate::train::{Held, Optimizer, Shape, Update};
use serde::Serialize;

use super::{objective, sgd_step, MAX_STEPS};
use crate::numerics::relative_distance;
use crate::train::Backend;

/// GPU f32 against CPU f64 over many steps from the same start in the same order.
#[derive(Debug, Clone, Serialize)]
pub struct Trajectory {
    /// Problem and schedule.
    pub case: String,
    /// ‖W_gpu − W_cpu‖ / ‖W_cpu‖ after each step.
    pub relative_diff: Vec<f64>,
    /// Largest of those.
    pub max_relative_diff: f64,
    /// Allowed: 1e-4 (see [`trajectory`]).
    pub tolerance: f64,
    /// |J(W_gpu) − J(W_cpu)| of the training objective, evaluated in f64.
    pub objective_gap: f64,
    /// Fraction of held-out rows whose argmax agrees.
    pub prediction_agreement: f64,
    /// Whether the GPU run repeated gives bitwise-identical weights.
    pub deterministic: bool,
    /// All of the above within bounds.
    pub pass: bool,
}

/// Runs `steps` steps of batch 32 on a standardised synthetic problem on the GPU (twice, for determinism) and on
/// the CPU in f64. Each f32 step differs from the f64 one by about (B + D)·u ≈ 4e-6 relatively; gradient descent on
/// this convex, well-conditioned problem contracts earlier differences, so 200 steps stay far below 1e-4, while a
/// wrong step size, a missed row or a wrong 1/B exceeds it by orders of magnitude.
/// `progress` is told the steps done so far. `steps` is bounded by [`MAX_STEPS`].
///
/// Long on purpose: the f32 device run and its f64 replay stepped side by side, then compared.
pub fn trajectory(
    ctx: &GpuContext,
    seed: u64,
    steps: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Trajectory> {
    if !(1..=MAX_STEPS).contains(&steps) {
        return Err(Error::param(
            "--steps",
            format!("in 1..={MAX_STEPS}"),
            steps,
        ));
    }
    let (batch, k) = (32usize, 5usize);
    let shape = Shape { d: 32, k };
    let full = data::synthetic(1280, 32, k, seed)?;
    let (mut train, held) = data::split_holdout(full, 0.2, seed)?;
    let mut held = held.ok_or_else(|| Error::Internal("a fifth is held out".into()))?;
    let st = Standardizer::fit(train.x.view());
    st.apply(&mut train.x);
    st.apply(&mut held.x);
    let update = Update {
        optimizer: Optimizer::Sgd,
        lr: 0.1,
        l2: 1e-3,
        l1: 0.0,
    };
    let (lr, l2) = (update.lr, update.l2);
    let n = train.len();
    let mut source = train.clone().into_source()?;
    let mut cpu = CpuBackend::<f64>::new(shape);
    let cpu_rows = cpu.hold(&mut source)?;
    let mut run_gpu = |mut cpu: Option<(&mut CpuBackend<f64>, Held)>,
                       progress: &mut dyn FnMut(usize)|
     -> Result<(Vec<f64>, crate::train::Params)> {
        let mut gpu = GpuBackend::new(ctx, shape, &GpuOptions::default())?;
        let gpu_rows = gpu.hold(&mut source)?;
        let mut diffs = Vec::new();
        let (mut epoch, mut pos) = (0, 0);
        let mut order = Vec::new();
        for s in 0..steps {
            // Consecutive batches of consecutive seeded shuffles, as `fit` takes them (1024 rows: 32 batches each).
            if order.is_empty() || pos + batch > n {
                epoch += 1;
                order = gpu_rows.order(seed, epoch, true);
                pos = 0;
            }
            let slice = &order[pos..pos + batch];
            pos += batch;
            sgd_step(&mut gpu, gpu_rows, slice, &update)?;
            if let Some((c, rows)) = cpu.as_mut() {
                sgd_step(*c, *rows, slice, &update)?;
                let (w_ref, _) = c.weights();
                let w = gpu.params()?.w;
                diffs.push(relative_distance(w, w_ref.iter().copied()));
                progress(s + 1);
            }
        }
        Ok((diffs, gpu.params()?))
    };
    let (relative_diff, p1) = run_gpu(Some((&mut cpu, cpu_rows)), progress)?;
    let (_, p2) = run_gpu(None, &mut |_| {})?;
    let deterministic = p1 == p2;
    let (w_ref, b_ref) = cpu.weights();
    let x64 = train.x.mapv(f64::from);
    let gap = (objective(
        x64.view(),
        &train.y,
        &p1.w.mapv(f64::from),
        &p1.b.mapv(f64::from),
        f64::from(l2),
    ) - objective(x64.view(), &train.y, w_ref, b_ref, f64::from(l2)))
    .abs();
    let h64 = held.x.mapv(f64::from);
    let pred_gpu = crate::model::argmax_rows(
        cpu::logits(
            h64.view(),
            p1.w.mapv(f64::from).view(),
            p1.b.mapv(f64::from).view(),
        )
        .mapv(|v| v as f32)
        .view(),
    );
    let pred_cpu = crate::model::argmax_rows(
        cpu::logits(h64.view(), w_ref.view(), b_ref.view())
            .mapv(|v| v as f32)
            .view(),
    );
    let agree = pred_gpu
        .iter()
        .zip(&pred_cpu)
        .filter(|(a, b)| a == b)
        .count() as f64
        / pred_gpu.len().max(1) as f64;
    let max_relative_diff = relative_diff.iter().cloned().fold(0.0, f64::max);
    let tolerance = 1e-4;
    Ok(Trajectory {
        case: format!("{n}×32, {k} classes, batch {batch}, lr {lr}, l2 {l2}, {steps} steps"),
        pass: max_relative_diff <= tolerance && deterministic && agree >= 0.99 && gap <= 1e-4,
        relative_diff,
        max_relative_diff,
        tolerance,
        objective_gap: gap,
        prediction_agreement: agree,
        deterministic,
    })
}
