//! The numerics that `validate`, the `--check-every` shadow and the tests share: f32's unit roundoff, the error
//! bound of each kernel ([`tolerance`]), the ULP distance, the relative distance of two weight matrices, and an
//! element-wise comparison against a bound.

use ndarray::{Dimension, Zip};
use serde::Serialize;

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
        let (s, _) = crate::cpu::softmax(z, y, crate::cpu::Weights::none());
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

    /// The fused forward pass (logits, softmax, residual) on X, W, b: a logit off by δ moves each probability by at
    /// most 2·S·δ and the loss by 2·δ, so the residual's bound is the softmax's on the exact logits plus the logits'
    /// own bound (the row's largest) carried through, plus the residual's one subtraction; the loss's likewise.
    pub fn forward(
        x: ArrayView2<f64>,
        w: ArrayView2<f64>,
        b: ArrayView1<f64>,
        y: &[u32],
    ) -> (Array2<f64>, Array1<f64>) {
        let z = crate::cpu::logits(x, w, b);
        let worst_dz = logits(x, w, b).map_axis(Axis(1), |row| row.fold(0.0f64, |a, &v| a.max(v)));
        let (s, _) = crate::cpu::softmax(z.view(), y, crate::cpu::Weights::none());
        let (mut r_tol, l_tol) = softmax(z.view(), y);
        for (i, mut row) in r_tol.outer_iter_mut().enumerate() {
            for (c, t) in row.iter_mut().enumerate() {
                *t += 2.0 * s[[i, c]] * worst_dz[i] + 2.0 * U;
            }
        }
        (r_tol, l_tol + worst_dz * 2.0)
    }

    /// One pass of the fused kernel over a batch (rows X, labels y, row weights scaling each row by at most
    /// `weight`): the bounds of G, g_b and the summed loss. The residual's bound ([`forward`], scaled by the weight)
    /// carries into G through |X|ᵀ and into g_b through its column sums, on top of the sums' own roundings
    /// ([`grad`] on the exact residual `r`); the loss adds its rows' bounds to the sum's own ([`sum`]).
    pub fn fused(
        x: ArrayView2<f64>,
        (w, b): (ArrayView2<f64>, ArrayView1<f64>),
        y: &[u32],
        (r, losses): (ArrayView2<f64>, ArrayView1<f64>),
        weight: f64,
    ) -> (Array2<f64>, Array1<f64>, f64) {
        let (r_tol, l_tol) = forward(x, w, b, y);
        let r_tol = r_tol * weight;
        let (g_tol, gb_tol) = grad(x, r);
        (
            g_tol + x.mapv(f64::abs).t().dot(&r_tol),
            gb_tol + r_tol.sum_axis(Axis(0)),
            sum(losses) + l_tol.sum() * weight,
        )
    }

    /// R = S − Y: one subtraction.
    pub fn residual(r: ArrayView2<f64>) -> Array2<f64> {
        r.mapv(|v| 2.0 * v.abs() * U + f64::MIN_POSITIVE)
    }

    /// G = Xᵀ·R and g_b = colsum(R), the gradient sums over a batch of B rows: B roundings each.
    pub fn grad(x: ArrayView2<f64>, r: ArrayView2<f64>) -> (Array2<f64>, Array1<f64>) {
        let n = x.nrows() as f64;
        let f = 2.0 * (n + 2.0) * U;
        let ra = r.mapv(f64::abs);
        (
            x.mapv(f64::abs).t().dot(&ra) * f + 1e-30,
            ra.sum_axis(Axis(0)) * f + 1e-30,
        )
    }

    /// W − lr·(G/B + l2·W): five operations, each one rounding relative to the larger operand.
    pub fn update(w: ArrayView2<f64>, g: ArrayView2<f64>, lr: f64, rows: f64) -> Array2<f64> {
        (w.mapv(f64::abs) + g.mapv(f64::abs) * (lr / rows)) * (10.0 * U) + 1e-38
    }

    /// A momentum or Adam step of W from gradient sums `g` over `p.rows` rows, state `s1` before the step and
    /// `s1_new`, `s2_new` after it (in f64, from the mirror): a handful of operations, each rounding relative to the
    /// largest term it adds — the weight, and α times each part of the step (the mean gradient and the old and new
    /// velocity; or Adam's first moment through m̂/(√v̂ + ε), and the decay) — so 16 u of their sum, plus the L1
    /// shrink's subtraction (lr·l1).
    pub fn optimizer(
        adam: bool,
        w: ArrayView2<f64>,
        g: ArrayView2<f64>,
        (s1, s1_new, s2_new): (&[f64], &[f64], &[f64]),
        p: &crate::cpu::StepParams<f64>,
    ) -> Array2<f64> {
        let k = w.ncols();
        Array2::from_shape_fn(w.dim(), |(j, c)| {
            let e = j * k + c;
            let wv = w[[j, c]].abs();
            let grad = g[[j, c]].abs() / p.rows + p.l2 * wv;
            let step = if adam {
                let num = p.beta1 * s1[e].abs() + (1.0 - p.beta1) * grad;
                2.0 * num / p.c1 / ((s2_new[e] / p.c2).sqrt() + p.eps) + p.weight_decay * wv
            } else {
                grad + p.beta1 * s1[e].abs() + (1.0 + p.beta1) * s1_new[e].abs()
            };
            16.0 * U * (wv + p.lr * step) + p.lr * p.l1 * 4.0 * U + 1e-30
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2};

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
        // Σ of 4 products |1·1|, 6 roundings, doubled.
        assert!((gt[[0, 0]] - (2.0 * 6.0 * U * 4.0 + 1e-30)).abs() < 1e-18);
    }
}
