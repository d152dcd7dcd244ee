//! L-BFGS on the device against the f64 reference's L-BFGS.

use crate::cpu::CpuBackend;
use crate::data::{self, Standardizer};
use crate::error::{Error, Result};
use crate::gpu::{GpuBackend, GpuContext, GpuOptions};
use crate::numerics::relative_distance;
use crate::train::{Backend, Optimizer, Shape};
use serde::Serialize;

/// Full-batch L-BFGS on the GPU against L-BFGS on the CPU in f64, both through `fit` to the same tolerance.
#[derive(Debug, Clone, Serialize)]
pub struct LbfgsCheck {
    /// Problem and settings.
    pub case: String,
    /// Iterations the GPU run and the f64 run took.
    pub iterations: (usize, usize),
    /// ‖W_gpu − W_cpu‖ / ‖W_cpu‖ at the end.
    pub relative_diff: f64,
    /// Allowed (see [`lbfgs`]).
    pub tolerance: f64,
    /// |J_gpu − J_cpu| / J_cpu at the end.
    pub objective_gap: f64,
    /// Both runs converged and the weights are within the tolerance.
    pub pass: bool,
}

/// L-BFGS to ‖∇J‖∞ ≤ 1e-7 on a standardised synthetic problem (1,024 × 32, 5 classes, λ = 1e-2), on the GPU and on
/// the CPU in f64. J is strictly convex with curvature ≥ λ along every direction of W, so both runs end within
/// ‖∇J‖₂/λ ≤ √165·1e-7/1e-2 ≈ 1.3e-4 of the one optimum (W's norm is ~3 here, so ≤ 5e-5 relative in the worst
/// case): the weights must agree to 1e-4, and the objectives to 1e-6 (J is flat at the optimum). A wrong gradient
/// moves the optimum itself, by orders of magnitude more.
pub fn lbfgs(ctx: &GpuContext, seed: u64) -> Result<LbfgsCheck> {
    let k = 5usize;
    let shape = Shape { d: 32, k };
    let mut train = data::synthetic(1024, 32, k, seed)?;
    Standardizer::fit(train.x.view()).apply(&mut train.x);
    let cfg = crate::config::TrainConfig {
        l2: 1e-2,
        val_split: 0.0,
        optimizer: Optimizer::Lbfgs(crate::lbfgs::LbfgsOptions {
            tol: 1e-7,
            max_iter: 1000,
            ..Default::default()
        }),
        ..Default::default()
    };
    let run = |backend: &mut dyn Backend| -> Result<(f64, usize, bool)> {
        let mut source = train.clone().into_source()?;
        let reports = crate::train::fit(backend, &mut source, None, &cfg, &mut [])?;
        let last = reports
            .last()
            .and_then(|r| r.lbfgs.map(|it| (r.train_loss, it)))
            .ok_or_else(|| Error::Internal("an L-BFGS run without a report".into()))?;
        Ok((
            last.0,
            last.1.iteration,
            last.1.stop.is_some_and(crate::lbfgs::Stop::converged),
        ))
    };
    let mut gpu = GpuBackend::new(ctx, shape, &GpuOptions::default())?;
    let (j_gpu, it_gpu, ok_gpu) = run(&mut gpu)?;
    let mut cpu = CpuBackend::<f64>::new(shape);
    let (j_cpu, it_cpu, ok_cpu) = run(&mut cpu)?;
    let (w_ref, _) = cpu.weights();
    let relative_diff = relative_distance(gpu.params()?.w, w_ref.iter().copied());
    let objective_gap = (j_gpu - j_cpu).abs() / j_cpu.abs().max(1e-300);
    let tolerance = 1e-4;
    Ok(LbfgsCheck {
        case: "1024×32, 5 classes, l2 0.01, tol 1e-7".into(),
        iterations: (it_gpu, it_cpu),
        relative_diff,
        tolerance,
        objective_gap,
        pass: ok_gpu && ok_cpu && relative_diff <= tolerance && objective_gap <= 1e-6,
    })
}
