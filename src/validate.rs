//! CPU-vs-GPU validation as evidence: every kernel in f32 on the GPU against its CPU mirror in f64, with an error
//! bound derived from f32 precision and the length of each reduction; a finite-difference gradient check; a training
//! trajectory; bitwise determinism.

use ndarray::{Array1, Array2, ArrayView2, Dimension};
use serde::Serialize;

use crate::cpu::{self, CpuBackend};
use crate::data::{self, Standardizer};
use crate::error::{Error, Result};
use crate::gpu::{ops, GpuBackend, GpuContext, GpuOptions, Kernel};
pub use crate::numerics::{compare, relative_distance, tolerance, ulp_distance, Comparison, U};
use crate::rng::SplitMix64;
use crate::train::{Backend, Batch, Held, Optimizer, Shape, Update};

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

/// The sparse kernels on one random batch of B rows (taken in shuffled order from a held set) over D columns, about
/// `density` of them non-zero. The bounds are the dense kernels' for the same rows made dense: a sparse sum has at
/// most the dense one's terms.
fn check_sparse(
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
    let mut r = ops::residual(ctx, s.view(), &y, cpu::Weights::none())?;
    checks.corrupt(Kernel::Residual, &mut r);
    let r_ref = cpu::residual(to64(&s).view(), &y, cpu::Weights::none());
    let r_tol = tolerance::residual(r_ref.view());
    checks.push(Kernel::Residual, "R", &case, compare(&r, &r_ref, &r_tol));
    check_weighted(ctx, checks, &case, (&x, &w, &bias), &z_in, &s, &y)?;

    let r32 = r_ref.mapv(|v| v as f32);
    let (mut gw, gb) = ops::grad(ctx, x.view(), r32.view())?;
    checks.corrupt(Kernel::Grad, &mut gw);
    let (gw_ref, gb_ref) = cpu::grad(x64.view(), to64(&r32).view());
    let (gw_tol, gb_tol) = tolerance::grad(x64.view(), to64(&r32).view());
    checks.push(Kernel::Grad, "G", &case, compare(&gw, &gw_ref, &gw_tol));
    checks.push(Kernel::Grad, "g_b", &case, compare(&gb, &gb_ref, &gb_tol));
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

/// The weighted residual, softmax loss and (K ≤ 16) fused forward pass against their f64 mirrors: each kernel scales a
/// row's residual and loss by the weight of its class (`--class-weight`) times its own (`--sample-weight`).
///
/// Long on purpose: the weighted kernels checked one after the other on the same weights.
fn check_weighted(
    ctx: &GpuContext,
    checks: &mut Checks,
    case: &str,
    (x, w, bias): (&Array2<f32>, &Array2<f32>, &Array1<f32>),
    z: &Array2<f32>,
    s: &Array2<f32>,
    y: &[u32],
) -> Result<()> {
    let k = s.ncols();
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
    let r = ops::residual(
        ctx,
        s.view(),
        y,
        cpu::Weights {
            class: Some(&cw),
            row: Some(&sw),
        },
    )?;
    let r_ref = cpu::residual(
        to64(s).view(),
        y,
        cpu::Weights {
            class: Some(&cw64),
            row: Some(&sw64),
        },
    );
    let r_tol = scale_rows(
        tolerance::residual(cpu::residual(to64(s).view(), y, cpu::Weights::none()).view()),
        &rw,
    );
    checks.push(Kernel::Residual, "R", &case, compare(&r, &r_ref, &r_tol));
    let (_, stats) = ops::softmax(
        ctx,
        z.view(),
        y,
        cpu::Weights {
            class: Some(&cw),
            row: Some(&sw),
        },
    )?;
    let z64 = to64(z);
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
    }
    let (mut got, _) = ops::grad_held(ctx, x.view(), &perm, r.view(), chunk_rows)?;
    checks.corrupt(Kernel::GradHeld, &mut got);
    let (want, _) = cpu::grad_held(x.view(), &perm, to64(r).view());
    let (tol, _) = tolerance::grad(xb.view(), to64(r).view());
    checks.push(Kernel::GradHeld, "G", case, compare(&got, &want, &tol));
    Ok(())
}

/// The momentum (Nesterov) and Adam (AdamW) kernels from gradient sums over `rows` rows, with random state.
fn check_optimizers(
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
fn check_update(
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

/// The analytic gradient against central finite differences of the f64 objective.
#[derive(Debug, Clone, Serialize)]
pub struct GradCheck {
    /// Problem shape.
    pub case: String,
    /// ‖g_analytic − g_fd‖ / max(‖g_analytic‖, ‖g_fd‖), over W and b.
    pub relative_error: f64,
    /// relative_error ≤ 1e-6.
    pub pass: bool,
}

fn objective(x: ArrayView2<f64>, y: &[u32], w: &Array2<f64>, b: &Array1<f64>, l2: f64) -> f64 {
    let z = cpu::logits(x, w.view(), b.view());
    let (_, stats) = cpu::softmax(z.view(), y, cpu::Weights::none());
    stats.column(0).mean().unwrap_or(0.0) + 0.5 * l2 * w.mapv(|v| v * v).sum()
}

/// Finite-difference checks on small random problems (f64 throughout).
pub fn gradient_checks(seed: u64) -> Vec<GradCheck> {
    let mut g = SplitMix64::derive(seed, 0x6AD);
    [(5, 4, 3), (1, 1, 2), (17, 6, 5)]
        .iter()
        .map(|&(n, d, k)| {
            let x = rand2(n, d, -2.0, 2.0, &mut g).mapv(f64::from);
            let w = rand2(d, k, -1.0, 1.0, &mut g).mapv(f64::from);
            let b = rand2(1, k, -1.0, 1.0, &mut g).row(0).mapv(f64::from);
            let y: Vec<u32> = (0..n).map(|_| g.below(k as u64) as u32).collect();
            let l2 = 0.1;
            let z = cpu::logits(x.view(), w.view(), b.view());
            let (s, _) = cpu::softmax(z.view(), &y, cpu::Weights::none());
            let r = cpu::residual(s.view(), &y, cpu::Weights::none());
            let (gw, gb) = cpu::grad(x.view(), r.view());
            let (gw, gb) = (gw / n as f64, gb / n as f64);
            let analytic: Vec<f64> = (&gw + &(&w * l2))
                .iter()
                .copied()
                .chain(gb.iter().copied())
                .collect();
            let h = 1e-5;
            let mut fd = Vec::with_capacity(analytic.len());
            for i in 0..d * k + k {
                let (mut wp, mut bp, mut wm, mut bm) = (w.clone(), b.clone(), w.clone(), b.clone());
                if i < d * k {
                    wp[[i / k, i % k]] += h;
                    wm[[i / k, i % k]] -= h;
                } else {
                    bp[i - d * k] += h;
                    bm[i - d * k] -= h;
                }
                fd.push(
                    (objective(x.view(), &y, &wp, &bp, l2) - objective(x.view(), &y, &wm, &bm, l2))
                        / (2.0 * h),
                );
            }
            let diff: f64 = analytic
                .iter()
                .zip(&fd)
                .map(|(a, f)| (a - f).powi(2))
                .sum::<f64>()
                .sqrt();
            let na: f64 = analytic.iter().map(|a| a * a).sum::<f64>().sqrt();
            let nf: f64 = fd.iter().map(|a| a * a).sum::<f64>().sqrt();
            let relative_error = diff / na.max(nf).max(1e-300);
            GradCheck {
                case: format!("N={n} D={d} K={k} l2={l2}"),
                relative_error,
                pass: relative_error <= 1e-6,
            }
        })
        .collect()
}

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

/// One SGD step of the rows `rows` of a held set, through the training seam.
fn sgd_step(backend: &mut dyn Backend, set: Held, rows: &[u32], update: &Update) -> Result<()> {
    backend.accumulate(&Batch::held(set, rows)?)?;
    backend.update(update)?;
    backend.take_sums()?;
    Ok(())
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
