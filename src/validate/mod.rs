//! CPU-vs-GPU validation as evidence: every kernel in f32 on the GPU against its CPU mirror in f64, with an error
//! bound derived from f32 precision and the length of each reduction; a finite-difference gradient check; a training
//! trajectory; bitwise determinism.
//!
//! One file a check: `kernels.rs`, `sparse.rs`, `weighted.rs`, `optimizers.rs`, `gradient.rs`, `trajectory.rs`,
//! `lbfgs.rs`; this file runs them on an adapter.

mod gradient;
mod kernels;
mod lbfgs;
mod optimizers;
mod sparse;
mod trajectory;
mod weighted;

use ndarray::{Array2, Dimension};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, Kernel};
pub use crate::numerics::{compare, relative_distance, tolerance, ulp_distance, Comparison, U};
use crate::rng::SplitMix64;
use crate::train::{Backend, Batch, Held, Update};

use gradient::objective;
pub use gradient::{gradient_checks, GradCheck};
pub use kernels::check_kernels;
pub use lbfgs::{lbfgs, LbfgsCheck};
use optimizers::{check_optimizers, check_update};
use sparse::check_sparse;
pub use trajectory::{trajectory, Trajectory};
use weighted::check_weighted;

/// Most trajectory steps `validate --steps` runs: each reads the device's weights back, so 100,000 steps already
/// take minutes on a software adapter.
pub const MAX_STEPS: usize = 100_000;

/// One kernel output on one case.
#[derive(Debug, Clone, Serialize)]
pub struct KernelCheck {
    /// Kernel name (file stem).
    pub kernel: String,
    /// Which output of the kernel.
    pub output: String,
    /// Shape and inputs.
    pub case: String,
    /// The figures.
    #[serde(flatten)]
    pub cmp: Comparison,
}

/// Perturbs one kernel's GPU output before comparison, to prove that validation catches a wrong result.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    /// The kernel whose result is corrupted.
    pub kernel: Kernel,
    /// Relative perturbation of its first element.
    pub relative: f32,
}

fn rand2(rows: usize, cols: usize, lo: f64, hi: f64, g: &mut SplitMix64) -> Array2<f32> {
    Array2::from_shape_simple_fn((rows, cols), || (lo + (hi - lo) * g.next_f64()) as f32)
}

fn to64<D: Dimension>(a: &ndarray::Array<f32, D>) -> ndarray::Array<f64, D> {
    a.mapv(f64::from)
}

fn corrupt<D: Dimension>(a: &mut ndarray::Array<f32, D>, kernel: Kernel, fault: Option<Fault>) {
    if let Some(f) = fault.filter(|f| f.kernel == kernel) {
        if let Some(v) = a.iter_mut().next() {
            *v = if *v == 0.0 {
                f.relative
            } else {
                *v * (1.0 + f.relative)
            };
        }
    }
}

/// Collects kernel checks, corrupting the GPU's result first when a [`Fault`] names the kernel.
struct Checks {
    fault: Option<Fault>,
    out: Vec<KernelCheck>,
}

impl Checks {
    fn push(&mut self, kernel: Kernel, output: &str, case: &str, cmp: Comparison) {
        self.out.push(KernelCheck {
            kernel: kernel.name().into(),
            output: output.into(),
            case: case.into(),
            cmp,
        });
    }

    fn corrupt<D: Dimension>(&self, kernel: Kernel, a: &mut ndarray::Array<f32, D>) {
        corrupt(a, kernel, self.fault);
    }
}

/// Everything validated on one adapter.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterReport {
    /// "name (backend)".
    pub adapter: String,
    /// Per kernel and case.
    pub kernels: Vec<KernelCheck>,
    /// Finite differences.
    pub gradient_checks: Vec<GradCheck>,
    /// Training trajectory and determinism.
    pub trajectory: Trajectory,
    /// Full-batch L-BFGS against the f64 reference.
    pub lbfgs: LbfgsCheck,
    /// Every check passed.
    pub pass: bool,
}

/// Runs every check on one adapter.
pub fn validate_adapter(
    ctx: &GpuContext,
    seed: u64,
    steps: usize,
    fault: Option<Fault>,
    progress: &mut dyn FnMut(usize),
) -> Result<AdapterReport> {
    if !(1..=MAX_STEPS).contains(&steps) {
        return Err(Error::param(
            "--steps",
            format!("in 1..={MAX_STEPS}"),
            steps,
        ));
    }
    let kernels = check_kernels(ctx, seed, fault)?;
    let gradient_checks = gradient_checks(seed);
    let trajectory = trajectory(ctx, seed, steps, progress)?;
    let lbfgs = lbfgs(ctx, seed)?;
    let pass = kernels.iter().all(|k| k.cmp.pass)
        && gradient_checks.iter().all(|g| g.pass)
        && trajectory.pass
        && lbfgs.pass;
    Ok(AdapterReport {
        adapter: ctx.describe(),
        kernels,
        gradient_checks,
        trajectory,
        lbfgs,
        pass,
    })
}

/// One SGD step of the rows `rows` of a held set, through the training seam.
fn sgd_step(backend: &mut dyn Backend, set: Held, rows: &[u32], update: &Update) -> Result<()> {
    backend.accumulate(&Batch::held(set, rows)?)?;
    backend.update(update)?;
    backend.take_sums()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_check_passes_on_the_reference_gradient() {
        for g in gradient_checks(1) {
            assert!(g.pass, "{g:?}");
        }
    }
}
