//! CPU-vs-GPU validation as evidence: every kernel in f32 on the GPU against its CPU mirror in f64, with an error
//! bound derived from f32 precision and the length of each reduction; a finite-difference gradient check; a training
//! trajectory; bitwise determinism.

use ndarray::{Array1, Array2, ArrayView2, Dimension, Zip};
use serde::Serialize;

use crate::cpu::{self, CpuBackend};
use crate::data::{self, Standardizer};
use crate::error::Result;
use crate::gpu::{ops, GpuBackend, GpuContext, GpuOptions, Kernel};
use crate::rng::SplitMix64;
use crate::train::{epoch_order, Backend};

/// f32 unit roundoff, 2⁻²⁴.
pub const U: f64 = 5.960_464_477_539_063e-8;

/// Element-wise error bounds for each kernel, from the standard model of floating-point arithmetic
/// (fl(a ∘ b) = (a ∘ b)(1 + δ), |δ| ≤ u): a sum of n terms is within γₙ·Σ|terms|, γₙ ≈ n·u. Each bound is doubled
/// to cover any summation order and fused or unfused multiply-adds.
pub mod tolerance {
    use super::U;
    use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

    /// Z = X·W + b: d products and the bias, d + 1 roundings of Σ|x||w| + |b|.
    pub fn logits(x: ArrayView2<f64>, w: ArrayView2<f64>, b: ArrayView1<f64>) -> Array2<f64> {
        let d = x.ncols() as f64;
        (x.mapv(f64::abs).dot(&w.mapv(f64::abs)) + b.mapv(f64::abs)) * (2.0 * (d + 2.0) * U)
    }

    /// Softmax: WGSL allows exp an error of 3 + 2·|x| ULP, and z − m is itself rounded (relative to |z| + |m|); the sum
    /// and division add k + 2 roundings. 1e-37 covers results flushed to zero below f32's normal range. The loss
    /// m + log Σ − z_y adds log's absolute error (2⁻²¹) to the roundings of its terms.
    pub fn softmax(z: ArrayView2<f64>, y: &[u32]) -> (Array2<f64>, Array1<f64>) {
        let (rows, k) = z.dim();
        let (s, _) = crate::cpu::softmax(z, y);
        let mut s_tol = Array2::zeros((rows, k));
        let mut l_tol = Array1::zeros(rows);
        for i in 0..rows {
            let m = z.row(i).iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            for c in 0..k {
                let x = z[[i, c]] - m;
                let ulps = 3.0 + 2.0 * x.abs() + 2.0 * (z[[i, c]].abs() + m.abs()) + k as f64 + 2.0;
                s_tol[[i, c]] = 2.0 * ulps * U * s[[i, c]] + 1e-37;
            }
            let zy = z[[i, y[i] as usize]];
            l_tol[i] = 4.0 * U * (m.abs() + zy.abs() + (k as f64).ln() + 1.0) * (k as f64 + 4.0)
                + 2f64.powi(-20);
        }
        (s_tol, l_tol)
    }

    /// R = S − Y: one subtraction.
    pub fn residual(r: ArrayView2<f64>) -> Array2<f64> {
        r.mapv(|v| 2.0 * v.abs() * U + f64::MIN_POSITIVE)
    }

    /// G = Xᵀ·R / B and g_b = colsum(R) / B: a reduction of length B and a division, B + 2 roundings.
    pub fn grad(x: ArrayView2<f64>, r: ArrayView2<f64>) -> (Array2<f64>, Array1<f64>) {
        let n = x.nrows() as f64;
        let f = 2.0 * (n + 2.0) * U / n;
        let ra = r.mapv(f64::abs);
        (
            x.mapv(f64::abs).t().dot(&ra) * f + 1e-30,
            ra.sum_axis(Axis(0)) * f + 1e-30,
        )
    }

    /// W − lr·(G + l2·W): four operations, each one rounding relative to the larger operand.
    pub fn update(w: ArrayView2<f64>, g: ArrayView2<f64>, lr: f64) -> Array2<f64> {
        (w.mapv(f64::abs) + g.mapv(f64::abs) * lr) * (8.0 * U) + 1e-38
    }

    /// Σ of n values: n roundings.
    pub fn sum(values: ArrayView1<f64>) -> f64 {
        2.0 * (values.len() as f64 + 8.0) * U * values.mapv(f64::abs).sum() + 1e-30
    }
}

/// The distance in units in the last place between an f32 result and the f32 nearest to the exact value.
pub fn ulp_distance(got: f32, exact: f64) -> u64 {
    fn ordered(v: f32) -> i64 {
        let b = v.to_bits() as i32;
        i64::from(if b < 0 { i32::MIN - b } else { b })
    }
    if got.is_nan() || exact.is_nan() {
        return u64::MAX;
    }
    (ordered(got) - ordered(exact as f32)).unsigned_abs()
}

/// ‖got − want‖ / ‖want‖ (Euclidean norms, accumulated in f64) between an f32 result and its reference: 0 when
/// they are equal (both zero included), NaN when `got` holds a NaN. Used for whole weight matrices.
pub fn relative_distance(
    got: impl IntoIterator<Item = f32>,
    want: impl IntoIterator<Item = f64>,
) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (g, w) in got.into_iter().zip(want) {
        let d = f64::from(g) - w;
        diff += d * d;
        norm += w * w;
    }
    if diff == 0.0 {
        0.0
    } else {
        (diff / norm).sqrt()
    }
}

/// How one output compares with its reference.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Comparison {
    /// Elements compared.
    pub elements: usize,
    /// max |got − exact|.
    pub max_abs: f64,
    /// max |got − exact| / |exact| over elements with |exact| > 1e-30.
    pub max_rel: f64,
    /// ULP distances.
    pub ulp_p50: u64,
    /// 99th percentile.
    pub ulp_p99: u64,
    /// Largest.
    pub ulp_max: u64,
    /// max |got − exact| / tolerance: ≤ 1 passes.
    pub worst_vs_tolerance: f64,
    /// Whether every element is within its tolerance.
    pub pass: bool,
}

/// Compares `got` with `exact` element-wise against `tol`.
pub fn compare<D: Dimension>(
    got: &ndarray::Array<f32, D>,
    exact: &ndarray::Array<f64, D>,
    tol: &ndarray::Array<f64, D>,
) -> Comparison {
    let mut ulps = Vec::with_capacity(got.len());
    let (mut max_abs, mut max_rel, mut worst) = (0.0f64, 0.0f64, 0.0f64);
    Zip::from(got).and(exact).and(tol).for_each(|&g, &e, &t| {
        let err = (f64::from(g) - e).abs();
        let err = if err.is_nan() { f64::INFINITY } else { err };
        max_abs = max_abs.max(err);
        if e.abs() > 1e-30 {
            max_rel = max_rel.max(err / e.abs());
        }
        worst = worst.max(err / t.max(f64::MIN_POSITIVE));
        ulps.push(ulp_distance(g, e));
    });
    ulps.sort_unstable();
    let pct = |p: f64| {
        ulps.get(((ulps.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    Comparison {
        elements: got.len(),
        max_abs,
        max_rel,
        ulp_p50: pct(0.5),
        ulp_p99: pct(0.99),
        ulp_max: ulps.last().copied().unwrap_or(0),
        worst_vs_tolerance: worst,
        pass: worst <= 1.0,
    }
}

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

/// Runs every kernel on edge shapes and adversarial values.
pub fn check_kernels(
    ctx: &GpuContext,
    seed: u64,
    fault: Option<Fault>,
) -> Result<Vec<KernelCheck>> {
    let mut g = SplitMix64::derive(seed, 0xCAFE);
    let mut out = Vec::new();
    let mut push = |kernel: Kernel, output: &str, case: &str, cmp: Comparison| {
        out.push(KernelCheck {
            kernel: kernel.name().into(),
            output: output.into(),
            case: case.into(),
            cmp,
        });
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
        let case = format!(
            "B={b} D={d} K={k}{}",
            if scale != 1.0 {
                format!(" |x|~{scale:e}")
            } else {
                String::new()
            }
        );
        let x = rand2(b, d, -scale, scale, &mut g);
        let w = rand2(d, k, -1.0, 1.0, &mut g);
        let bias = rand2(1, k, -1.0, 1.0, &mut g).row(0).to_owned();
        let y: Vec<u32> = (0..b).map(|_| g.below(k as u64) as u32).collect();
        let (x64, w64, b64) = (to64(&x), to64(&w), to64(&bias));

        let mut z = ops::logits(ctx, x.view(), w.view(), bias.view())?;
        corrupt(&mut z, Kernel::Logits, fault);
        let z_ref = cpu::logits(x64.view(), w64.view(), b64.view());
        push(
            Kernel::Logits,
            "Z",
            &case,
            compare(
                &z,
                &z_ref,
                &tolerance::logits(x64.view(), w64.view(), b64.view()),
            ),
        );

        // Softmax and what follows take the GPU's own f32 logits as input, so each kernel is judged alone.
        let z_in = if scale == 1.0 {
            z.clone()
        } else {
            rand2(b, k, -20.0, 20.0, &mut g)
        };
        softmax_checks(ctx, &z_in, &y, &case, fault, &mut push)?;

        let s = cpu::softmax(z_in.view(), &y).0;
        let mut r = ops::residual(ctx, s.view(), &y)?;
        corrupt(&mut r, Kernel::Residual, fault);
        let r_ref = cpu::residual(to64(&s).view(), &y);
        push(
            Kernel::Residual,
            "R",
            &case,
            compare(&r, &r_ref, &tolerance::residual(r_ref.view())),
        );

        let r32 = r_ref.mapv(|v| v as f32);
        let (mut gw, gb) = ops::grad(ctx, x.view(), r32.view())?;
        corrupt(&mut gw, Kernel::Grad, fault);
        let (gw_ref, gb_ref) = cpu::grad(x64.view(), to64(&r32).view());
        let (gw_tol, gb_tol) = tolerance::grad(x64.view(), to64(&r32).view());
        push(Kernel::Grad, "G", &case, compare(&gw, &gw_ref, &gw_tol));
        push(Kernel::Grad, "g_b", &case, compare(&gb, &gb_ref, &gb_tol));

        let (lr, l2) = (0.05f32, 1e-3f32);
        let gw32 = gw_ref.mapv(|v| v as f32);
        let gb32 = gb_ref.mapv(|v| v as f32);
        let (mut w_new, b_new) =
            ops::update(ctx, gw32.view(), gb32.view(), w.view(), bias.view(), lr, l2)?;
        corrupt(&mut w_new, Kernel::Update, fault);
        let (mut w_ref, mut b_ref) = (w64.clone(), b64.clone());
        let (g64, gb64) = (to64(&gw32), to64(&gb32));
        cpu::update(
            g64.view(),
            gb64.view(),
            w_ref.view_mut(),
            b_ref.view_mut(),
            f64::from(lr),
            f64::from(l2),
        );
        push(
            Kernel::Update,
            "W",
            &case,
            compare(
                &w_new,
                &w_ref,
                &tolerance::update(w64.view(), g64.view(), f64::from(lr)),
            ),
        );
        let b_tol = tolerance::update(
            b64.view().insert_axis(ndarray::Axis(0)),
            gb64.view().insert_axis(ndarray::Axis(0)),
            f64::from(lr),
        )
        .row(0)
        .to_owned();
        push(Kernel::Update, "b", &case, compare(&b_new, &b_ref, &b_tol));

        let (_, stats) = cpu::softmax(z_in.view(), &y);
        let (mut loss, hits) = ops::metrics(ctx, stats.view())?;
        if fault.is_some_and(|f| f.kernel == Kernel::Metrics) {
            loss *= 1.0 + fault.map_or(0.0, |f| f.relative);
        }
        let (loss_ref, hits_ref) = cpu::metrics(to64(&stats).view());
        let l_tol = tolerance::sum(to64(&stats).column(0));
        push(
            Kernel::Metrics,
            "sums",
            &case,
            compare(
                &Array1::from(vec![loss, hits]),
                &Array1::from(vec![loss_ref, hits_ref]),
                &Array1::from(vec![l_tol, 0.5]),
            ),
        );
    }
    // Adversarial softmax rows.
    let k = 10;
    let mut huge = rand2(64, k, -1.0, 1.0, &mut g);
    huge.mapv_inplace(|v| if v >= 0.0 { 1e4 + v } else { -1e4 + v });
    let y: Vec<u32> = (0..64).map(|i| (i % k) as u32).collect();
    softmax_checks(ctx, &huge, &y, "logits ±1e4", fault, &mut push)?;
    softmax_checks(
        ctx,
        &Array2::from_elem((64, k), 3.5),
        &y,
        "all-equal logits",
        fault,
        &mut push,
    )?;
    let mut far = Array2::<f32>::zeros((64, k));
    for (i, mut row) in far.outer_iter_mut().enumerate() {
        row[(y[i] as usize + 1) % k] = 80.0; // true class probability ≈ e^-80
    }
    softmax_checks(ctx, &far, &y, "true class p≈e^-80", fault, &mut push)?;
    // A batch gathered across many chunks is an exact copy.
    let x = rand2(1000, 7, -1.0, 1.0, &mut g);
    let yy: Vec<u32> = (0..1000).map(|_| g.below(5) as u32).collect();
    let mut perm: Vec<u32> = (0..1000).collect();
    g.shuffle(&mut perm);
    let (mut xb, _) = ops::gather(ctx, &perm[..500], x.view(), &yy, 64)?;
    corrupt(&mut xb, Kernel::Gather, fault);
    let (xr, _) = cpu::gather(&perm[..500], to64(&x).view(), &yy);
    let zero = Array2::from_elem(xr.dim(), f64::MIN_POSITIVE);
    push(
        Kernel::Gather,
        "X batch",
        "500 of 1000 rows from 16 chunks",
        compare(&xb, &xr, &zero),
    );
    Ok(out)
}

fn softmax_checks(
    ctx: &GpuContext,
    z: &Array2<f32>,
    y: &[u32],
    case: &str,
    fault: Option<Fault>,
    push: &mut impl FnMut(Kernel, &str, &str, Comparison),
) -> Result<()> {
    let (mut s, stats) = ops::softmax(ctx, z.view(), y)?;
    corrupt(&mut s, Kernel::Softmax, fault);
    let z64 = to64(z);
    let (s_ref, stats_ref) = cpu::softmax(z64.view(), y);
    let (s_tol, l_tol) = tolerance::softmax(z64.view(), y);
    push(Kernel::Softmax, "S", case, compare(&s, &s_ref, &s_tol));
    push(
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
    let (_, stats) = cpu::softmax(z.view(), y);
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
            let (s, _) = cpu::softmax(z.view(), &y);
            let r = cpu::residual(s.view(), &y);
            let (gw, gb) = cpu::grad(x.view(), r.view());
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
pub fn trajectory(ctx: &GpuContext, seed: u64, steps: usize) -> Result<Trajectory> {
    let (batch, k) = (32usize, 5usize);
    let full = data::synthetic(1280, 32, k, seed)?;
    let (mut train, held) = data::split_holdout(&full, 0.2, seed)?;
    let mut held = held.expect("a fifth is held out");
    let st = Standardizer::fit(train.x.view());
    st.apply(&mut train.x);
    st.apply(&mut held.x);
    let (lr, l2) = (0.1f32, 1e-3f32);
    let n = train.len();
    let order: Vec<u32> = (0..)
        .flat_map(|e| epoch_order(n, seed, e + 1, true))
        .take(steps * batch)
        .collect::<Vec<_>>();
    let mut cpu = CpuBackend::<f64>::new(train.x.view(), &train.y, k, None);
    let run_gpu = |record: bool,
                   cpu: Option<&mut CpuBackend<f64>>|
     -> Result<(Vec<f64>, crate::train::Params)> {
        let mut gpu = GpuBackend::new(
            ctx,
            train.x.view(),
            &train.y,
            k,
            None,
            batch,
            &GpuOptions::default(),
        )?;
        let mut diffs = Vec::new();
        let mut cpu = cpu;
        for s in 0..steps {
            let slice = &order[s * batch..(s + 1) * batch];
            gpu.train_epoch(slice, batch, lr, l2, &mut |_| {})?;
            if let (true, Some(c)) = (record, cpu.as_deref_mut()) {
                c.train_epoch(slice, batch, lr, l2, &mut |_| {})?;
                let (w_ref, _) = c.weights();
                let w = gpu.params()?.w;
                diffs.push(relative_distance(w, w_ref.iter().copied()));
            }
        }
        Ok((diffs, gpu.params()?))
    };
    let (relative_diff, p1) = run_gpu(true, Some(&mut cpu))?;
    let (_, p2) = run_gpu(false, None)?;
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
    /// Every check passed.
    pub pass: bool,
}

/// Runs every check on one adapter.
pub fn validate_adapter(
    ctx: &GpuContext,
    seed: u64,
    steps: usize,
    fault: Option<Fault>,
) -> Result<AdapterReport> {
    let kernels = check_kernels(ctx, seed, fault)?;
    let gradient_checks = gradient_checks(seed);
    let trajectory = trajectory(ctx, seed, steps)?;
    let pass = kernels.iter().all(|k| k.cmp.pass)
        && gradient_checks.iter().all(|g| g.pass)
        && trajectory.pass;
    Ok(AdapterReport {
        adapter: ctx.describe(),
        kernels,
        gradient_checks,
        trajectory,
        pass,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulp_distance_counts_representable_steps() {
        assert_eq!(ulp_distance(1.0, 1.0), 0);
        assert_eq!(ulp_distance(1.0 + f32::EPSILON, 1.0), 1);
        assert_eq!(ulp_distance(-0.0, 0.0), 0);
        assert_eq!(
            ulp_distance(f32::from_bits(1), -f64::from(f32::from_bits(1))),
            2
        );
        assert_eq!(ulp_distance(f32::NAN, 1.0), u64::MAX);
    }

    #[test]
    fn compare_passes_within_and_fails_beyond_the_tolerance() {
        let exact = Array1::from(vec![1.0f64, 2.0, 4.0]);
        let tol = Array1::from(vec![1e-6; 3]);
        let ok = compare(&Array1::from(vec![1.0f32, 2.0, 4.0]), &exact, &tol);
        assert!(ok.pass && ok.max_abs == 0.0 && ok.ulp_max == 0);
        let bad = compare(&Array1::from(vec![1.0f32, 2.001, 4.0]), &exact, &tol);
        assert!(!bad.pass && bad.worst_vs_tolerance > 900.0 && bad.ulp_max > 1000);
        let nan = compare(&Array1::from(vec![f32::NAN, 2.0, 4.0]), &exact, &tol);
        assert!(!nan.pass);
    }

    #[test]
    fn tolerances_grow_with_the_reduction_length_and_magnitude() {
        let x1 = Array2::<f64>::ones((1, 10));
        let x2 = Array2::<f64>::ones((1, 1000));
        let t1 = tolerance::logits(
            x1.view(),
            Array2::ones((10, 1)).view(),
            Array1::zeros(1).view(),
        )[[0, 0]];
        let t2 = tolerance::logits(
            x2.view(),
            Array2::ones((1000, 1)).view(),
            Array1::zeros(1).view(),
        )[[0, 0]];
        // Σ|x||w| grows 100× and the rounding count ≈ 100×: the bound grows ≈ 10⁴×.
        assert!(t2 / t1 > 5000.0, "{t1} {t2}");
        assert!((t1 - 2.0 * 12.0 * U * 10.0).abs() < 1e-15);
        let (gt, _) = tolerance::grad(Array2::ones((4, 1)).view(), Array2::ones((4, 1)).view());
        assert!((gt[[0, 0]] - (2.0 * 6.0 * U / 4.0 * 4.0 + 1e-30)).abs() < 1e-18);
    }

    #[test]
    fn gradient_check_passes_on_the_reference_gradient() {
        for g in gradient_checks(1) {
            assert!(g.pass, "{g:?}");
        }
    }
}
