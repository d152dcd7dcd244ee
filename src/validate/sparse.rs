//! The sparse kernels (CSR logits and gradient, the update over touched columns) against their mirrors.

use crate::cpu;
use crate::error::Result;
use crate::gpu::{ops, GpuContext, Kernel};
use crate::rng::SplitMix64;
use ndarray::{Array1, Array2};

use super::{rand2, to64, Checks};
use crate::numerics::{compare, tolerance};

/// The sparse kernels on one random batch of B rows (taken in shuffled order from a held set) over D columns, about
/// `density` of them non-zero. The bounds are the dense kernels' for the same rows made dense: a sparse sum has at
/// most the dense one's terms.
pub(super) fn check_sparse(
    ctx: &GpuContext,
    checks: &mut Checks,
    g: &mut SplitMix64,
    (b, d, k): (usize, usize, usize),
    density: f64,
) -> Result<()> {
    use crate::data::{SparseChunk, SparseRows};
    let case = format!("B={b} D={d} K={k} density {density}");
    let n = b + 10;
    let mut x = rand2(n, d, -1.0, 1.0, g);
    x.mapv_inplace(|v| if g.next_f64() < density { v } else { 0.0 });
    let y: Vec<u32> = (0..n).map(|_| g.below(k as u64) as u32).collect();
    let rows = SparseRows::from_chunk("validate", &SparseChunk::from_dense(x.view(), &y, 0), k)?;
    let mut perm: Vec<u32> = (0..n as u32).collect();
    g.shuffle(&mut perm);
    let batch = rows.batch(&perm[..b]);
    let dense = to64(&batch.to_dense());
    let w = rand2(d, k, -1.0, 1.0, g);
    let bias = rand2(1, k, -1.0, 1.0, g).row(0).to_owned();
    let (w64, b64) = (to64(&w), to64(&bias));
    let mut z = ops::sparse_logits(ctx, &batch, w.view(), bias.view())?;
    checks.corrupt(Kernel::SparseLogits, &mut z);
    let z_ref = cpu::sparse_logits(&batch, w64.view(), b64.view());
    let z_tol = tolerance::logits(dense.view(), w64.view(), b64.view());
    checks.push(
        Kernel::SparseLogits,
        "Z",
        &case,
        compare(&z, &z_ref, &z_tol),
    );
    let r = rand2(b, k, -1.0, 1.0, g);
    let (mut gw, gb) = ops::sparse_grad(ctx, &batch, r.view())?;
    checks.corrupt(Kernel::SparseGrad, &mut gw);
    let (gw_ref, gb_ref) = cpu::sparse_grad(&batch, to64(&r).view());
    let (gw_tol, gb_tol) = tolerance::grad(dense.view(), to64(&r).view());
    checks.push(
        Kernel::SparseGrad,
        "G",
        &case,
        compare(&gw, &gw_ref, &gw_tol),
    );
    checks.push(
        Kernel::SparseGrad,
        "g_b",
        &case,
        compare(&gb, &gb_ref, &gb_tol),
    );
    check_sparse_update(
        ctx,
        checks,
        &case,
        &batch.cols,
        (&w, &bias),
        (&gw_ref, &gb_ref),
        b,
    )
}

/// The update over a batch's columns, from the exact gradient sums rounded to f32.
fn check_sparse_update(
    ctx: &GpuContext,
    checks: &mut Checks,
    case: &str,
    cols: &[u32],
    (w, bias): (&Array2<f32>, &Array1<f32>),
    (gw, gb): (&Array2<f64>, &Array1<f64>),
    rows: usize,
) -> Result<()> {
    let (g32, gb32) = (gw.mapv(|v| v as f32), gb.mapv(|v| v as f32));
    let (lr, l2) = (0.1f32, 1e-3f32);
    let ((mut wn, bn), _) = ops::sparse_update(
        ctx,
        cols,
        g32.view(),
        gb32.view(),
        w.view(),
        bias.view(),
        (lr, l2, rows as u32),
        true,
    )?;
    checks.corrupt(Kernel::SparseUpdate, &mut wn);
    let (mut g64, mut gb64, mut w_ref, mut b_ref) = (to64(&g32), to64(&gb32), to64(w), to64(bias));
    cpu::sparse_update(
        cols,
        g64.view_mut(),
        gb64.view_mut(),
        w_ref.view_mut(),
        b_ref.view_mut(),
        f64::from(lr),
        f64::from(l2),
        rows as f64,
        true,
    );
    let w_tol = tolerance::update(
        to64(w).view(),
        to64(&g32).view(),
        f64::from(lr),
        rows as f64,
    );
    checks.push(
        Kernel::SparseUpdate,
        "W",
        case,
        compare(&wn, &w_ref, &w_tol),
    );
    let b_tol = tolerance::update(
        to64(bias).insert_axis(ndarray::Axis(0)).view(),
        to64(&gb32).insert_axis(ndarray::Axis(0)).view(),
        f64::from(lr),
        rows as f64,
    )
    .row(0)
    .to_owned();
    checks.push(
        Kernel::SparseUpdate,
        "b",
        case,
        compare(&bn, &b_ref, &b_tol),
    );
    Ok(())
}
