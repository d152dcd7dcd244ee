//! The kernels with class and row weights, on power-of-two weights (which scale the bounds exactly).

use crate::cpu;
use crate::error::Result;
use crate::gpu::{ops, GpuContext, Kernel};
use ndarray::{Array1, Array2};

use super::{to64, Checks};
use crate::numerics::{compare, tolerance};

/// Power-of-two class weights 1/4 … 4, one per class. With power-of-two row weights too, every row's weight is a
/// power of two (or 0), and multiplying by it is exact in f32: a weighted output's error is its unweighted error
/// times the row's weight, and so is its bound.
fn power_of_two_weights(k: usize) -> Vec<f32> {
    (0..k).map(|c| 2f32.powi((c % 5) as i32 - 2)).collect()
}

/// Each row of `tol` times that row's weight.
fn scale_rows(mut tol: Array2<f64>, rw: &[f32]) -> Array2<f64> {
    for (mut row, &w) in tol.outer_iter_mut().zip(rw) {
        row.mapv_inplace(|t| t * f64::from(w));
    }
    tol
}

/// The weighted residual (the softmax in a training step), softmax loss and (K ≤ 16) fused forward pass against
/// their f64 mirrors: each kernel scales a row's residual and loss by the weight of its class (`--class-weight`)
/// times its own (`--sample-weight`).
///
/// Long on purpose: the weighted kernels checked one after the other on the same weights.
pub(super) fn check_weighted(
    ctx: &GpuContext,
    checks: &mut Checks,
    case: &str,
    (x, w, bias): (&Array2<f32>, &Array2<f32>, &Array1<f32>),
    z: &Array2<f32>,
    y: &[u32],
) -> Result<()> {
    let k = z.ncols();
    let cw = power_of_two_weights(k);
    let cw64: Vec<f64> = cw.iter().map(|&v| f64::from(v)).collect();
    // Row weights 1/2, 1, 2, … (and a 0: a row that does not count).
    let sw: Vec<f32> = (0..y.len())
        .map(|i| {
            if i % 7 == 6 {
                0.0
            } else {
                2f32.powi((i % 3) as i32 - 1)
            }
        })
        .collect();
    let sw64: Vec<f64> = sw.iter().map(|&v| f64::from(v)).collect();
    // The weight of each row, for scaling its bound: exact, a product of powers of two.
    let rw: Vec<f32> = y
        .iter()
        .zip(&sw)
        .map(|(&c, &w)| cw[c as usize] * w)
        .collect();
    let case = format!("{case}, weighted");
    // The softmax as a training step runs it: the weighted residual in place of S.
    let (r, _) = ops::softmax_residual(
        ctx,
        z.view(),
        y,
        cpu::Weights {
            class: Some(&cw),
            row: Some(&sw),
        },
    )?;
    let z64 = to64(z);
    let s64 = cpu::softmax(z64.view(), y, cpu::Weights::none()).0;
    let r_ref = cpu::residual(
        s64.view(),
        y,
        cpu::Weights {
            class: Some(&cw64),
            row: Some(&sw64),
        },
    );
    let (s_tol, _) = tolerance::softmax(z64.view(), y);
    let r_tol = scale_rows(
        s_tol + tolerance::residual(cpu::residual(s64.view(), y, cpu::Weights::none()).view()),
        &rw,
    );
    checks.push(Kernel::Softmax, "R", &case, compare(&r, &r_ref, &r_tol));
    let (_, stats) = ops::softmax(
        ctx,
        z.view(),
        y,
        cpu::Weights {
            class: Some(&cw),
            row: Some(&sw),
        },
    )?;
    let (_, stats_ref) = cpu::softmax(
        z64.view(),
        y,
        cpu::Weights {
            class: Some(&cw64),
            row: Some(&sw64),
        },
    );
    let (_, l_tol) = tolerance::softmax(z64.view(), y);
    let l_tol = l_tol * &Array1::from_iter(rw.iter().map(|&w| f64::from(w)));
    checks.push(
        Kernel::Softmax,
        "loss",
        &case,
        compare(
            &stats.column(0).to_owned(),
            &stats_ref.column(0).to_owned(),
            &l_tol,
        ),
    );
    if k <= 16 {
        let (r, stats) = ops::forward(
            ctx,
            x.view(),
            w.view(),
            bias.view(),
            y,
            cpu::Weights {
                class: Some(&cw),
                row: Some(&sw),
            },
        )?;
        let (x64, w64, b64) = (to64(x), to64(w), to64(bias));
        let (r_ref, stats_ref) = cpu::forward(
            x64.view(),
            w64.view(),
            b64.view(),
            y,
            cpu::Weights {
                class: Some(&cw64),
                row: Some(&sw64),
            },
        );
        let (r_tol, l_tol) = tolerance::forward(x64.view(), w64.view(), b64.view(), y);
        let l_tol = l_tol * &Array1::from_iter(rw.iter().map(|&w| f64::from(w)));
        checks.push(
            Kernel::Forward,
            "R",
            &case,
            compare(&r, &r_ref, &scale_rows(r_tol, &rw)),
        );
        checks.push(
            Kernel::Forward,
            "loss",
            &case,
            compare(
                &stats.column(0).to_owned(),
                &stats_ref.column(0).to_owned(),
                &l_tol,
            ),
        );
    }
    Ok(())
}
