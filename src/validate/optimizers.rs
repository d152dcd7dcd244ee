//! The momentum, Nesterov and Adam update kernels against the mirror of the step.

use crate::cpu;
use crate::error::Result;
use crate::gpu::{ops, GpuContext, Kernel};
use crate::rng::SplitMix64;
use ndarray::{Array1, Array2};

use super::{to64, Checks};
use crate::numerics::{compare, tolerance};

/// The momentum (Nesterov) and Adam (AdamW) kernels from gradient sums over `rows` rows, with random state.
pub(super) fn check_optimizers(
    ctx: &GpuContext,
    checks: &mut Checks,
    g: &mut SplitMix64,
    case: &str,
    (w, bias): (&Array2<f32>, &Array1<f32>),
    (gw_ref, gb_ref): (&Array2<f64>, &Array1<f64>),
    rows: usize,
) -> Result<()> {
    use crate::cpu::StepParams;
    let (d, k) = w.dim();
    let n = d * k + k;
    let gw32 = gw_ref.mapv(|v| v as f32);
    let gb32 = gb_ref.mapv(|v| v as f32);
    let s1: Vec<f32> = (0..n).map(|_| (g.next_f64() - 0.5) as f32).collect();
    let s2: Vec<f32> = (0..n).map(|_| (g.next_f64() * 0.5) as f32).collect();
    for (kernel, adam, nesterov, wd) in [
        (Kernel::UpdateMomentum, false, true, 0.0f32),
        (Kernel::UpdateAdam, true, false, 0.01),
    ] {
        let p = StepParams {
            lr: 0.05f32,
            l2: 1e-3,
            l1: 1e-3,
            rows: rows as f32,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: wd,
            c1: 0.1,
            c2: 0.001,
            nesterov,
        };
        let slots: Vec<&[f32]> = if adam { vec![&s1, &s2] } else { vec![&s1] };
        let ((mut w_new, _), _) = ops::optimizer_step(
            ctx,
            adam,
            gw32.view(),
            gb32.view(),
            w.view(),
            bias.view(),
            &slots,
            &p,
        )?;
        checks.corrupt(kernel, &mut w_new);
        let f = |v: f32| f64::from(v);
        let p64 = p.to_f64();
        let s1_64: Vec<f64> = s1.iter().map(|&v| f(v)).collect();
        let (mut t1, mut t2) = (s1_64.clone(), s2.iter().map(|&v| f(v)).collect::<Vec<_>>());
        let (mut w_ref, mut b_ref) = (to64(w), to64(bias));
        cpu::optimizer_step(
            adam,
            to64(&gw32).view(),
            to64(&gb32).view(),
            w_ref.view_mut(),
            b_ref.view_mut(),
            &mut t1,
            &mut t2,
            &p64,
        );
        let tol = tolerance::optimizer(
            adam,
            to64(w).view(),
            to64(&gw32).view(),
            (&s1_64, &t1, &t2),
            &p64,
        );
        checks.push(kernel, "W", case, compare(&w_new, &w_ref, &tol));
    }
    Ok(())
}

/// The update kernel from gradient sums over `rows` rows.
pub(super) fn check_update(
    ctx: &GpuContext,
    checks: &mut Checks,
    case: &str,
    (w, bias): (&Array2<f32>, &Array1<f32>),
    (gw_ref, gb_ref): (&Array2<f64>, &Array1<f64>),
    rows: usize,
) -> Result<()> {
    // With an L1 step too: the proximal shrink is checked wherever it does not reach zero and where it does.
    let (lr, l2, l1) = (0.05f32, 1e-3f32, 2e-2f32);
    let gw32 = gw_ref.mapv(|v| v as f32);
    let gb32 = gb_ref.mapv(|v| v as f32);
    let (mut w_new, b_new) = ops::update(
        ctx,
        gw32.view(),
        gb32.view(),
        w.view(),
        bias.view(),
        lr,
        l2,
        l1,
        rows as u32,
    )?;
    checks.corrupt(Kernel::Update, &mut w_new);
    let (w64, b64) = (to64(w), to64(bias));
    let (mut w_ref, mut b_ref) = (w64.clone(), b64.clone());
    let (g64, gb64) = (to64(&gw32), to64(&gb32));
    let (lr64, n) = (f64::from(lr), rows as f64);
    cpu::update(
        g64.view(),
        gb64.view(),
        w_ref.view_mut(),
        b_ref.view_mut(),
        lr64,
        f64::from(l2),
        f64::from(l1),
        n,
    );
    // The shrink's subtraction rounds once more, relative to lr·l1 at most.
    let w_tol = tolerance::update(w64.view(), g64.view(), lr64, n)
        + lr64 * f64::from(l1) * 4.0 * crate::numerics::U;
    checks.push(Kernel::Update, "W", case, compare(&w_new, &w_ref, &w_tol));
    let row = |a: &Array1<f64>| a.view().insert_axis(ndarray::Axis(0)).to_owned();
    let b_tol = tolerance::update(row(&b64).view(), row(&gb64).view(), lr64, n)
        .row(0)
        .to_owned();
    checks.push(Kernel::Update, "b", case, compare(&b_new, &b_ref, &b_tol));
    Ok(())
}
