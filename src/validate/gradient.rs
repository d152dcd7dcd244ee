//! A finite-difference check of the gradient the kernels implement, on the f64 reference.

use crate::cpu;
use crate::rng::SplitMix64;
use ndarray::{Array1, Array2, ArrayView2};
use serde::Serialize;

use super::rand2;

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

pub(super) fn objective(
    x: ArrayView2<f64>,
    y: &[u32],
    w: &Array2<f64>,
    b: &Array1<f64>,
    l2: f64,
) -> f64 {
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
