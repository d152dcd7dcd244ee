//! Every dense kernel in f32 on the GPU against its CPU mirror in f64, within a bound derived from f32 precision and
//! the length of each reduction; with a fault injected on request, to show the check catches it.

use crate::cpu;
use crate::error::Result;
use crate::gpu::kernels::Team;
use crate::gpu::{ops, GpuContext, Kernel};
use crate::rng::SplitMix64;
use ndarray::{Array1, Array2};

use super::{
    check_optimizers, check_sparse, check_update, check_weighted, rand2, to64, Checks, Fault,
    KernelCheck,
};
use crate::numerics::{compare, tolerance};

/// Runs every kernel on edge shapes and adversarial values.
pub fn check_kernels(
    ctx: &GpuContext,
    seed: u64,
    fault: Option<Fault>,
) -> Result<Vec<KernelCheck>> {
    let mut g = SplitMix64::derive(seed, 0xCAFE);
    let mut checks = Checks {
        fault,
        out: Vec::new(),
    };
    // (B, D, K, feature scale): edges, non-multiples of the workgroup sizes, K ≥ 1000, extreme magnitudes.
    let shapes: [(usize, usize, usize, f64); 7] = [
        (1, 1, 2, 1.0),
        (65, 3, 3, 1.0),
        (63, 784, 10, 1.0),
        (1000, 64, 10, 1.0),
        (33, 16, 1000, 1.0),
        (65, 10, 4, 1e6),
        (65, 10, 4, 1e-6),
    ];
    for (b, d, k, scale) in shapes {
        check_case(ctx, &mut checks, &mut g, (b, d, k), scale)?;
    }
    check_adversarial_softmax(ctx, &mut checks, &mut g)?;
    check_gather(ctx, &mut checks, &mut g)?;
    // (B, D, K, density): text-like (wide, very sparse), denser, and mostly empty rows and columns.
    for (b, d, k, density) in [
        (65, 5000, 10, 0.01),
        (1000, 784, 3, 0.3),
        (63, 64, 20, 0.005),
    ] {
        check_sparse(ctx, &mut checks, &mut g, (b, d, k), density)?;
    }
    Ok(checks.out)
}

/// Every kernel on one random problem of B rows, D features and K classes, features of magnitude `scale`. Each
/// kernel takes the exact result of the previous one (rounded to f32) as its input, so each is judged alone.
fn check_case(
    ctx: &GpuContext,
    checks: &mut Checks,
    g: &mut SplitMix64,
    (b, d, k): (usize, usize, usize),
    scale: f64,
) -> Result<()> {
    let case = format!(
        "B={b} D={d} K={k}{}",
        if scale != 1.0 {
            format!(" |x|~{scale:e}")
        } else {
            String::new()
        }
    );
    let x = rand2(b, d, -scale, scale, g);
    let w = rand2(d, k, -1.0, 1.0, g);
    let bias = rand2(1, k, -1.0, 1.0, g).row(0).to_owned();
    let y: Vec<u32> = (0..b).map(|_| g.below(k as u64) as u32).collect();
    let (x64, w64, b64) = (to64(&x), to64(&w), to64(&bias));

    let mut z = ops::logits(ctx, x.view(), w.view(), bias.view())?;
    checks.corrupt(Kernel::Logits, &mut z);
    let z_ref = cpu::logits(x64.view(), w64.view(), b64.view());
    let z_tol = tolerance::logits(x64.view(), w64.view(), b64.view());
    checks.push(Kernel::Logits, "Z", &case, compare(&z, &z_ref, &z_tol));

    if k <= 16 {
        check_forward(ctx, checks, &case, (&x, &w, &bias), &y)?;
    }

    let z_in = if scale == 1.0 {
        z.clone()
    } else {
        rand2(b, k, -20.0, 20.0, g)
    };
    softmax_checks(ctx, &z_in, &y, &case, checks)?;

    let s = cpu::softmax(z_in.view(), &y, cpu::Weights::none()).0;
    let r_ref = cpu::residual(to64(&s).view(), &y, cpu::Weights::none());
    check_weighted(ctx, checks, &case, (&x, &w, &bias), &z_in, &y)?;

    let r32 = r_ref.mapv(|v| v as f32);
    let (mut gw, gb) = ops::grad(ctx, x.view(), r32.view())?;
    checks.corrupt(Kernel::Grad, &mut gw);
    let (gw_ref, gb_ref) = cpu::grad(x64.view(), to64(&r32).view());
    let (gw_tol, gb_tol) = tolerance::grad(x64.view(), to64(&r32).view());
    checks.push(Kernel::Grad, "G", &case, compare(&gw, &gw_ref, &gw_tol));
    checks.push(Kernel::Grad, "g_b", &case, compare(&gb, &gb_ref, &gb_tol));
    // Split over rows as GPUs train (at most 2 segments: several units to a segment once B > 512), and reduced.
    let (mut gs, mut gbs) = ops::grad_split(ctx, x.view(), r32.view(), 2)?;
    checks.corrupt(Kernel::Grad, &mut gs);
    checks.corrupt(Kernel::Reduce, &mut gbs);
    let split = format!("{case}, split over rows");
    checks.push(Kernel::Grad, "G", &split, compare(&gs, &gw_ref, &gw_tol));
    checks.push(
        Kernel::Reduce,
        "g_b",
        &split,
        compare(&gbs, &gb_ref, &gb_tol),
    );
    if ctx.kernels.available(Kernel::ForwardHeld) && ctx.kernels.available(Kernel::GradHeld) {
        check_held(ctx, checks, &case, (&x, &w, &bias), &y, &r32)?;
    }

    check_update(ctx, checks, &case, (&w, &bias), (&gw_ref, &gb_ref), b)?;
    check_optimizers(ctx, checks, g, &case, (&w, &bias), (&gw_ref, &gb_ref), b)?;

    let (_, stats) = cpu::softmax(z_in.view(), &y, cpu::Weights::none());
    let (mut loss, hits) = ops::metrics(ctx, stats.view())?;
    if let Some(f) = checks.fault.filter(|f| f.kernel == Kernel::Metrics) {
        loss *= 1.0 + f.relative;
    }
    let (loss_ref, hits_ref) = cpu::metrics(to64(&stats).view());
    let l_tol = tolerance::sum(to64(&stats).column(0));
    checks.push(
        Kernel::Metrics,
        "sums",
        &case,
        compare(
            &Array1::from(vec![loss, hits]),
            &Array1::from(vec![loss_ref, hits_ref]),
            &Array1::from(vec![l_tol, 0.5]),
        ),
    );
    Ok(())
}

/// The fused forward kernel (K ≤ 16) against the f64 composition of logits, softmax and residual, within
/// [`tolerance::forward`].
fn check_forward(
    ctx: &GpuContext,
    checks: &mut Checks,
    case: &str,
    (x, w, bias): (&Array2<f32>, &Array2<f32>, &Array1<f32>),
    y: &[u32],
) -> Result<()> {
    let (mut r, stats) = ops::forward(
        ctx,
        x.view(),
        w.view(),
        bias.view(),
        y,
        cpu::Weights::none(),
    )?;
    checks.corrupt(Kernel::Forward, &mut r);
    let (x64, w64, b64) = (to64(x), to64(w), to64(bias));
    let (r_ref, stats_ref) =
        cpu::forward(x64.view(), w64.view(), b64.view(), y, cpu::Weights::none());
    let (r_tol, l_tol) = tolerance::forward(x64.view(), w64.view(), b64.view(), y);
    checks.push(Kernel::Forward, "R", case, compare(&r, &r_ref, &r_tol));
    checks.push(
        Kernel::Forward,
        "loss",
        case,
        compare(
            &stats.column(0).to_owned(),
            &stats_ref.column(0).to_owned(),
            &l_tol,
        ),
    );
    Ok(())
}

/// The held kernels, which read a batch's rows in place: X as a held set of two chunks, the batch its rows in reverse
/// (every row crosses to the other chunk's slot), against the mirrors over the same rows within the bounds of the
/// kernels they stand in for.
fn check_held(
    ctx: &GpuContext,
    checks: &mut Checks,
    case: &str,
    (x, w, bias): (&Array2<f32>, &Array2<f32>, &Array1<f32>),
    y: &[u32],
    r: &Array2<f32>,
) -> Result<()> {
    let b = x.nrows();
    let perm: Vec<u32> = (0..b as u32).rev().collect();
    let chunk_rows = b.div_ceil(2);
    let (xb, yb) = cpu::gather::<f64>(&perm, x.view(), y);
    let (w64, b64) = (to64(w), to64(bias));
    if w.ncols() <= 16 {
        let (mut got, _) = ops::forward_held(
            ctx,
            x.view(),
            y,
            &perm,
            w.view(),
            bias.view(),
            cpu::Weights::none(),
            chunk_rows,
        )?;
        checks.corrupt(Kernel::ForwardHeld, &mut got);
        let (want, _) = cpu::forward_held(
            x.view(),
            y,
            &perm,
            w64.view(),
            b64.view(),
            cpu::Weights::none(),
        );
        let (tol, _) = tolerance::forward(xb.view(), w64.view(), b64.view(), &yb);
        checks.push(Kernel::ForwardHeld, "R", case, compare(&got, &want, &tol));
    } else if ctx.kernels.available(Kernel::LogitsHeld) {
        let (mut got, _) =
            ops::logits_held(ctx, x.view(), y, &perm, (w.view(), bias.view()), chunk_rows)?;
        checks.corrupt(Kernel::LogitsHeld, &mut got);
        let want = cpu::logits(xb.view(), w64.view(), b64.view());
        let tol = tolerance::logits(xb.view(), w64.view(), b64.view());
        checks.push(Kernel::LogitsHeld, "Z", case, compare(&got, &want, &tol));
        // Staged through workgroup memory, as GPUs read held rows past the one-pass kernel's classes.
        let (mut got, _) =
            ops::logits_held_staged(ctx, x.view(), y, &perm, (w.view(), bias.view()), chunk_rows)?;
        checks.corrupt(Kernel::LogitsHeld, &mut got);
        let staged = format!("{case}, staged");
        checks.push(Kernel::LogitsHeld, "Z", &staged, compare(&got, &want, &tol));
    }
    let (mut got, _) = ops::grad_held(ctx, x.view(), &perm, r.view(), chunk_rows)?;
    checks.corrupt(Kernel::GradHeld, &mut got);
    let (want, _) = cpu::grad_held(x.view(), &perm, to64(r).view());
    let (tol, _) = tolerance::grad(xb.view(), to64(r).view());
    checks.push(Kernel::GradHeld, "G", case, compare(&got, &want, &tol));
    // Split over rows as GPUs train held rows past the fused kernel's classes (at most 2 segments), and reduced.
    let (mut got, _) = ops::grad_held_split(ctx, x.view(), &perm, r.view(), chunk_rows, 2)?;
    checks.corrupt(Kernel::GradHeld, &mut got);
    let split = format!("{case}, split over rows");
    checks.push(Kernel::GradHeld, "G", &split, compare(&got, &want, &tol));
    // And staged through workgroup memory, as GPUs read held rows past the one-pass kernel's classes.
    let (mut got, _) = ops::grad_held_staged(ctx, x.view(), &perm, r.view(), chunk_rows, 2)?;
    checks.corrupt(Kernel::GradHeld, &mut got);
    let staged = format!("{case}, split over rows, staged");
    checks.push(Kernel::GradHeld, "G", &staged, compare(&got, &want, &tol));
    let shape = crate::params::Shape {
        d: x.ncols(),
        k: w.ncols(),
    };
    if crate::gpu::GpuBackend::runs_fused(ctx, shape) {
        // The one-pass kernel and its reduction, as one: G, g_b and the loss against the mirror in f64, for each
        // shape this device can run (below).
        let (g_ref, gb_ref, loss_ref, _) = cpu::fused(
            x.view(),
            y,
            &perm,
            w64.view(),
            b64.view(),
            cpu::Weights::none(),
        );
        let (r_ref, stats_ref) =
            cpu::forward(xb.view(), w64.view(), b64.view(), &yb, cpu::Weights::none());
        let (g_tol, gb_tol, loss_tol) = tolerance::fused(
            xb.view(),
            (w64.view(), b64.view()),
            &yb,
            (r_ref.view(), stats_ref.column(0)),
            1.0,
        );
        // The GPU shape as this device runs it, its exchange through workgroup memory where it has subgroups (what
        // devices without them run), the narrower teams its large batches take (Team::for_rows: 16 and 8 lanes
        // where small batches take 32), and the CPU adapters' one invocation a row.
        let team = ops::team(ctx);
        let mut teams = vec![team];
        if team.subgroups {
            teams.push(team.without_subgroups());
        }
        let mut lanes = team.lanes;
        while lanes > 8 {
            lanes /= 2;
            teams.push(Team { lanes, ..team });
        }
        if team != Team::ONE {
            teams.push(Team::ONE);
        }
        for team in teams {
            let case = format!("{case}, {team}");
            let (mut g, mut gb, loss, _) = ops::fused_held(
                ctx,
                x.view(),
                y,
                &perm,
                w.view(),
                bias.view(),
                cpu::Weights::none(),
                chunk_rows,
                team,
            )?;
            checks.corrupt(Kernel::FusedHeld, &mut g);
            checks.corrupt(Kernel::Reduce, &mut gb);
            checks.push(Kernel::FusedHeld, "G", &case, compare(&g, &g_ref, &g_tol));
            checks.push(Kernel::Reduce, "g_b", &case, compare(&gb, &gb_ref, &gb_tol));
            checks.push(
                Kernel::Reduce,
                "loss",
                &case,
                compare(
                    &ndarray::arr1(&[loss]),
                    &ndarray::arr1(&[loss_ref]),
                    &ndarray::arr1(&[loss_tol]),
                ),
            );
        }
    }
    Ok(())
}

/// Softmax on rows that break naive implementations: huge logits, ties, a true class of probability e⁻⁸⁰.
fn check_adversarial_softmax(
    ctx: &GpuContext,
    checks: &mut Checks,
    g: &mut SplitMix64,
) -> Result<()> {
    let k = 10;
    let mut huge = rand2(64, k, -1.0, 1.0, g);
    huge.mapv_inplace(|v| if v >= 0.0 { 1e4 + v } else { -1e4 + v });
    let y: Vec<u32> = (0..64).map(|i| (i % k) as u32).collect();
    softmax_checks(ctx, &huge, &y, "logits ±1e4", checks)?;
    let equal = Array2::from_elem((64, k), 3.5);
    softmax_checks(ctx, &equal, &y, "all-equal logits", checks)?;
    let mut far = Array2::<f32>::zeros((64, k));
    for (i, mut row) in far.outer_iter_mut().enumerate() {
        row[(y[i] as usize + 1) % k] = 80.0; // true class probability ≈ e^-80
    }
    softmax_checks(ctx, &far, &y, "true class p≈e^-80", checks)
}

/// A batch gathered across many chunks is an exact copy.
fn check_gather(ctx: &GpuContext, checks: &mut Checks, g: &mut SplitMix64) -> Result<()> {
    let x = rand2(1000, 7, -1.0, 1.0, g);
    let yy: Vec<u32> = (0..1000).map(|_| g.below(5) as u32).collect();
    let mut perm: Vec<u32> = (0..1000).collect();
    g.shuffle(&mut perm);
    let (mut xb, _) = ops::gather(ctx, &perm[..500], x.view(), &yy, 64)?;
    checks.corrupt(Kernel::Gather, &mut xb);
    let (xr, _) = cpu::gather::<f64>(&perm[..500], x.view(), &yy);
    let zero = Array2::from_elem(xr.dim(), f64::MIN_POSITIVE);
    checks.push(
        Kernel::Gather,
        "X batch",
        "500 of 1000 rows from 16 chunks",
        compare(&xb, &xr, &zero),
    );
    Ok(())
}

fn softmax_checks(
    ctx: &GpuContext,
    z: &Array2<f32>,
    y: &[u32],
    case: &str,
    checks: &mut Checks,
) -> Result<()> {
    let (mut s, stats) = ops::softmax(ctx, z.view(), y, cpu::Weights::none())?;
    checks.corrupt(Kernel::Softmax, &mut s);
    let z64 = to64(z);
    let (s_ref, stats_ref) = cpu::softmax(z64.view(), y, cpu::Weights::none());
    let (s_tol, l_tol) = tolerance::softmax(z64.view(), y);
    checks.push(Kernel::Softmax, "S", case, compare(&s, &s_ref, &s_tol));
    // As a training step runs it: the residual in place of S, within S's bound plus the subtraction's rounding.
    let (mut r, _) = ops::softmax_residual(ctx, z.view(), y, cpu::Weights::none())?;
    checks.corrupt(Kernel::Softmax, &mut r);
    let r_ref = cpu::residual(s_ref.view(), y, cpu::Weights::none());
    let r_tol = &s_tol + &tolerance::residual(r_ref.view());
    checks.push(Kernel::Softmax, "R", case, compare(&r, &r_ref, &r_tol));
    checks.push(
        Kernel::Softmax,
        "loss",
        case,
        compare(
            &stats.column(0).to_owned(),
            &stats_ref.column(0).to_owned(),
            &l_tol,
        ),
    );
    Ok(())
}
