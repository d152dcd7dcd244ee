//! Each GPU kernel against its CPU mirror (in f64) on every adapter, on shapes that stress the edges: B ∈ {1, 63, 64,
//! 65, 1000}, D ∈ {1, 3, 784}, K ∈ {2, 3, 10, 100}. Inputs are f32 values, exactly representable in f64, so the f64
//! reference is the exact result up to 2⁻⁵³ and the gap measures the GPU's own f32 rounding. Tolerances follow the
//! standard floating-point error bounds (Higham, Accuracy and Stability of Numerical Algorithms, §3): a sum of n
//! products in f32 is within γₙ·Σ|terms| of the exact sum, γₙ ≈ n·u, u = 2⁻²⁴; we allow 2γ to cover any summation
//! order and fused or unfused multiply-adds.

mod common;

use common::*;
use ndarray::{Array1, Array2};
use softmax_wgpu::cpu;
use softmax_wgpu::gpu::kernels::Team;
use softmax_wgpu::gpu::ops;
use softmax_wgpu::numerics::tolerance;

const BATCHES: [usize; 5] = [1, 63, 64, 65, 1000];
const FEATURES: [usize; 3] = [1, 3, 784];
const CLASSES: [usize; 4] = [2, 3, 10, 100];

#[test]
fn logits_match_cpu_on_edge_shapes() {
    on_every_gpu(|ctx| {
        for (s, (&b, &d, &k)) in iproduct(&BATCHES, &FEATURES, &CLASSES).enumerate() {
            let s = s as u64 * 3;
            let x = uniform(b, d, -2.0, 2.0, s);
            let w = uniform(d, k, -1.0, 1.0, s + 1);
            let bias = Array1::from(uniform(1, k, -1.0, 1.0, s + 2).into_raw_vec_and_offset().0);
            let got = ops::logits(ctx, x.view(), w.view(), bias.view()).unwrap();
            let want = cpu::logits(
                to64(&x).view(),
                to64(&w).view(),
                bias.mapv(f64::from).view(),
            );
            // A length-d dot product plus the bias: d + 1 roundings (the bound `validate` uses).
            let tol = tolerance::logits(
                to64(&x).view(),
                to64(&w).view(),
                bias.mapv(f64::from).view(),
            );
            assert_within(&format!("logits B={b} D={d} K={k}"), &got, &want, &tol);
        }
    });
}

fn check_softmax(ctx: &softmax_wgpu::gpu::GpuContext, z: &Array2<f32>, y: &[u32], what: &str) {
    let (s, stats) = ops::softmax(ctx, z.view(), y, cpu::Weights::none()).unwrap();
    let z64 = to64(z);
    let (s_ref, stats_ref) = cpu::softmax(z64.view(), y, cpu::Weights::none());
    let (s_tol, l_tol) = tolerance::softmax(z64.view(), y);
    assert!(
        s.iter().all(|v| v.is_finite()) && stats.iter().all(|v| v.is_finite()),
        "{what}: non-finite output"
    );
    assert_within(&format!("softmax S {what}"), &s, &s_ref, &s_tol);
    assert_within(
        &format!("softmax loss {what}"),
        &stats.column(0).to_owned(),
        &stats_ref.column(0).to_owned(),
        &l_tol,
    );
    // Correctness flags are exact unless two logits tie within rounding; random inputs make that vanishingly rare.
    assert_eq!(
        stats.column(1).to_vec(),
        stats_ref.column(1).mapv(|v| v as f32).to_vec(),
        "{what}: argmax flags"
    );
}

#[test]
fn softmax_matches_cpu_on_edge_shapes() {
    on_every_gpu(|ctx| {
        for &b in &BATCHES {
            for &k in &CLASSES {
                let z = uniform(b, k, -20.0, 20.0, (b * 1000 + k) as u64);
                let y = labels(b, k, b as u64 + k as u64);
                check_softmax(ctx, &z, &y, &format!("B={b} K={k}"));
            }
        }
    });
}

#[test]
fn softmax_of_huge_logits_is_finite_and_correct() {
    on_every_gpu(|ctx| {
        for &k in &CLASSES {
            // Rows of ±1e4: naive exp overflows to inf (and inf/inf = NaN); max-subtraction must avoid that.
            let mut z = uniform(65, k, -1.0, 1.0, k as u64);
            z.mapv_inplace(|v| if v >= 0.0 { 1e4 + v } else { -1e4 + v });
            let y = labels(65, k, 7 + k as u64);
            check_softmax(ctx, &z, &y, &format!("±1e4 K={k}"));
            // A row whose true class has probability e^-2e4 ≈ 0 has a loss of ≈ 2e4, not inf.
            let mut z = Array2::<f32>::zeros((1, k));
            z[[0, 0]] = -1e4;
            z[[0, k - 1]] = 1e4;
            let (_, stats) = ops::softmax(ctx, z.view(), &[0], cpu::Weights::none()).unwrap();
            assert!(
                (f64::from(stats[[0, 0]]) - 2e4).abs() < 1.0,
                "loss {} for a 2e4 logit gap",
                stats[[0, 0]]
            );
        }
    });
}

#[test]
fn the_softmax_of_a_training_step_writes_the_residual_of_its_probabilities() {
    on_every_gpu(|ctx| {
        for &b in &BATCHES {
            for &k in &CLASSES {
                let z = uniform(b, k, -20.0, 20.0, (b * 7 + k) as u64);
                let y = labels(b, k, (b * k) as u64);
                let (r, r_stats) =
                    ops::softmax_residual(ctx, z.view(), &y, cpu::Weights::none()).unwrap();
                let (s, stats) = ops::softmax(ctx, z.view(), &y, cpu::Weights::none()).unwrap();
                let what = format!("B={b} K={k}");
                // The same kernel's loss and hits, whichever it writes.
                assert_eq!(r_stats, stats, "{what}: row stats");
                for ((i, c), &v) in r.indexed_iter() {
                    if c as u32 != y[i] {
                        // S·1 − 0, times a weight of 1: S itself, bit for bit.
                        assert_eq!(v.to_bits(), s[[i, c]].to_bits(), "{what}: R[{i}, {c}]");
                    } else {
                        // S − 1: one rounding (or none, where the device fuses it with the scaling into one FMA).
                        let want = f64::from(s[[i, c]]) - 1.0;
                        assert!(
                            (f64::from(v) - want).abs() <= want.abs() * U + f64::MIN_POSITIVE,
                            "{what}: R[{i}, {c}] = {v}, S − 1 = {want}"
                        );
                    }
                }
                // And the f64 mirror's residual within the softmax's bound plus the subtraction's.
                let z64 = to64(&z);
                let (s_ref, _) = cpu::softmax(z64.view(), &y, cpu::Weights::none());
                let r_ref = cpu::residual(s_ref.view(), &y, cpu::Weights::none());
                let (s_tol, _) = tolerance::softmax(z64.view(), &y);
                let tol = s_tol + tolerance::residual(r_ref.view());
                assert_within(&format!("softmax R {what}"), &r, &r_ref, &tol);
            }
        }
    });
}

#[test]
fn grad_matches_cpu_when_batch_is_not_a_multiple_of_workgroup() {
    on_every_gpu(|ctx| {
        for (s, (&b, &d, &k)) in iproduct(&BATCHES, &FEATURES, &CLASSES).enumerate() {
            let x = uniform(b, d, -2.0, 2.0, s as u64);
            let mut r = probabilities(b, k, s as u64 + 1);
            let y = labels(b, k, s as u64 + 2);
            for (i, &c) in y.iter().enumerate() {
                r[[i, c as usize]] -= 1.0;
            }
            let (g, gb) = ops::grad(ctx, x.view(), r.view()).unwrap();
            let (g_ref, gb_ref) = cpu::grad(to64(&x).view(), to64(&r).view());
            // A sum of b products: b roundings of Σ|x||r|, doubled (the bound `validate` uses).
            let (tol, btol) = tolerance::grad(to64(&x).view(), to64(&r).view());
            assert_within(&format!("grad G B={b} D={d} K={k}"), &g, &g_ref, &tol);
            assert_within(&format!("grad g_b B={b} D={d} K={k}"), &gb, &gb_ref, &btol);
        }
    });
}

#[test]
fn update_matches_cpu() {
    on_every_gpu(|ctx| {
        for &d in &FEATURES {
            for &k in &CLASSES {
                let g = uniform(d, k, -1.0, 1.0, (d + k) as u64);
                let gb = Array1::from(uniform(1, k, -1.0, 1.0, 3).into_raw_vec_and_offset().0);
                let w = uniform(d, k, -1.0, 1.0, (d * k) as u64);
                let b = Array1::from(uniform(1, k, -1.0, 1.0, 4).into_raw_vec_and_offset().0);
                // l1 = 0.5: lr·l1 = 0.05 shrinks some weights to exactly zero and leaves others.
                let (lr, l2, l1, rows) = (0.1f32, 0.01f32, 0.5f32, 7u32);
                let (w_gpu, b_gpu) = ops::update(
                    ctx,
                    g.view(),
                    gb.view(),
                    w.view(),
                    b.view(),
                    lr,
                    l2,
                    l1,
                    rows,
                )
                .unwrap();
                let (mut w_ref, mut b_ref) = (to64(&w), b.mapv(f64::from));
                let (lr64, l264, n) = (f64::from(lr), f64::from(l2), f64::from(rows));
                cpu::update(
                    to64(&g).view(),
                    gb.mapv(f64::from).view(),
                    w_ref.view_mut(),
                    b_ref.view_mut(),
                    lr64,
                    l264,
                    f64::from(l1),
                    n,
                );
                // w − lr·(g/rows + l2·w): five operations, each one rounding relative to the larger operand (the
                // bound `validate` uses), and the shrink's subtraction, relative to lr·l1 at most.
                let tol = tolerance::update(to64(&w).view(), to64(&g).view(), lr64, n)
                    + lr64 * f64::from(l1) * 4.0 * U;
                if d * k >= 100 {
                    assert!(
                        w_gpu.iter().any(|&v| v == 0.0),
                        "D={d} K={k}: the shrink reaches zero somewhere"
                    );
                }
                assert_within(&format!("update W D={d} K={k}"), &w_gpu, &w_ref, &tol);
                let row = |a: &Array1<f32>| a.mapv(f64::from).insert_axis(ndarray::Axis(0));
                let btol = tolerance::update(row(&b).view(), row(&gb).view(), lr64, n)
                    .row(0)
                    .to_owned();
                assert_within(&format!("update b K={k}"), &b_gpu, &b_ref, &btol);
            }
        }
    });
}

#[test]
fn metrics_and_gather_match_cpu() {
    on_every_gpu(|ctx| {
        for &b in &BATCHES {
            let mut stats = uniform(b, 2, 0.0, 5.0, b as u64);
            stats
                .column_mut(1)
                .mapv_inplace(|v| if v > 2.5 { 1.0 } else { 0.0 });
            let (loss, hits) = ops::metrics(ctx, stats.view()).unwrap();
            let (loss_ref, hits_ref) = cpu::metrics(to64(&stats).view());
            assert!(
                (f64::from(loss) - loss_ref).abs() <= 2.0 * (b as f64 + 8.0) * U * loss_ref,
                "loss sum B={b}"
            );
            assert_eq!(
                f64::from(hits),
                hits_ref,
                "hit count B={b} is exact below 2^24"
            );
        }
        // Gather across several chunks, in a shuffled order, is an exact copy.
        let x = uniform(1000, 3, -1.0, 1.0, 5);
        let y = labels(1000, 7, 6);
        let mut perm: Vec<u32> = (0..1000).collect();
        softmax_wgpu::rng::SplitMix64::new(9).shuffle(&mut perm);
        let perm = &perm[..333];
        let (xb, yb) = ops::gather(ctx, perm, x.view(), &y, 128).unwrap();
        let (xr, yr) = cpu::gather::<f32>(perm, x.view(), &y);
        assert_eq!(xb, xr);
        assert_eq!(yb, yr);
    });
}

fn iproduct<'a>(
    a: &'a [usize],
    b: &'a [usize],
    c: &'a [usize],
) -> impl Iterator<Item = (&'a usize, &'a usize, &'a usize)> + 'a {
    a.iter()
        .flat_map(move |x| b.iter().flat_map(move |y| c.iter().map(move |z| (x, y, z))))
}

#[test]
fn ceiling_kernels_match_their_mirrors() {
    on_every_gpu(|ctx| {
        // 40,000 floats over 2 × 64 invocations, 3 passes: each sums 3 × 312 or 313 values in [-1, 1);
        // 2·(n + 2)·u·Σ|terms| bounds the difference of any two summation orders.
        let data: Vec<f32> = uniform(1, 40_000, -1.0, 1.0, 3).into_raw_vec_and_offset().0;
        let (got, seconds) = ops::ceiling_read(ctx, &data, 2, 3).unwrap();
        let want = cpu::ceiling_read(&data, 128, 3);
        assert_eq!(got.len(), want.len());
        assert!(seconds > 0.0);
        // The passes are summed: three times one pass's sums, to the same bound.
        let once = cpu::ceiling_read(&data, 128, 1);
        for (t, (g, w)) in got.iter().zip(&want).enumerate() {
            let tol = 2.0 * 944.0 * U * 944.0;
            assert!(
                (f64::from(*w) - 3.0 * f64::from(once[t])).abs() <= tol,
                "mirror, invocation {t}: {w} vs 3 × {}",
                once[t]
            );
            assert!(
                (f64::from(*g) - f64::from(*w)).abs() <= tol,
                "invocation {t}: {g} vs {w}"
            );
        }
        // 100 rounds of contracting FMAs (|m| < 1): fused or not, each round rounds once or twice, so the results
        // agree to a few hundred ULP of values near 8·seed/(1 − m) ≤ 8 000.
        let (got, _) = ops::ceiling_fma(ctx, 1, 100).unwrap();
        let want = cpu::ceiling_fma(64, 100);
        for (t, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                "invocation {t}: {g} vs {w}"
            );
        }
    });
}

#[test]
fn the_fused_forward_kernel_matches_its_mirror_and_the_separate_kernels() {
    on_every_gpu(|ctx| {
        for (s, &(b, d, k)) in [
            (1, 1, 2),
            (63, 784, 10),
            (65, 3, 16),
            (1000, 64, 7),
            (5, 20, 1),
        ]
        .iter()
        .enumerate()
        {
            let s = s as u64 * 5;
            let x = uniform(b, d, -2.0, 2.0, s);
            let w = uniform(d, k, -1.0, 1.0, s + 1);
            let bias = Array1::from(uniform(1, k, -1.0, 1.0, s + 2).into_raw_vec_and_offset().0);
            let y = labels(b, k, s + 3);
            let (r, stats) = ops::forward(
                ctx,
                x.view(),
                w.view(),
                bias.view(),
                &y,
                cpu::Weights::none(),
            )
            .unwrap();
            // The same arithmetic as logits → softmax (writing the residual) on the GPU, so the same values: compare
            // with the separate kernels exactly, and with the f64 mirror within the bounds of its parts.
            let z = ops::logits(ctx, x.view(), w.view(), bias.view()).unwrap();
            let (sep_r, sep_stats) =
                ops::softmax_residual(ctx, z.view(), &y, cpu::Weights::none()).unwrap();
            assert_eq!(r, sep_r, "R B={b} D={d} K={k}");
            assert_eq!(stats, sep_stats, "stats B={b} D={d} K={k}");
            let (x64, w64, b64) = (to64(&x), to64(&w), bias.mapv(f64::from));
            let (r_ref, stats_ref) =
                cpu::forward(x64.view(), w64.view(), b64.view(), &y, cpu::Weights::none());
            // The bound `validate` uses: the softmax's on the exact logits plus the logits' own carried through.
            let (r_tol, l_tol) = tolerance::forward(x64.view(), w64.view(), b64.view(), &y);
            assert_within(&format!("forward R B={b} D={d} K={k}"), &r, &r_ref, &r_tol);
            assert_within(
                &format!("forward loss B={b} D={d} K={k}"),
                &stats.column(0).to_owned(),
                &stats_ref.column(0).to_owned(),
                &l_tol,
            );
        }
    });
}

/// A batch drawn from a held set, for the kernels that read rows in place: `n` held rows of `d` features (labels of
/// `k` classes), a batch of `b` row indices (repeats allowed), W and b, and row and class weights that are powers of
/// two (a zero row included), so that weighting scales values and bounds exactly.
struct HeldCase {
    x: Array2<f32>,
    w: Array2<f32>,
    bias: Array1<f32>,
    y: Vec<u32>,
    perm: Vec<u32>,
    row_w: Vec<f32>,
    class_w: Vec<f32>,
}

impl HeldCase {
    fn new(s: u64, n: usize, d: usize, k: usize, b: usize) -> Self {
        HeldCase {
            x: uniform(n, d, -2.0, 2.0, s),
            w: uniform(d, k, -1.0, 1.0, s + 1),
            bias: Array1::from(uniform(1, k, -1.0, 1.0, s + 2).into_raw_vec_and_offset().0),
            y: labels(n, k, s + 3),
            perm: labels(b, n, s + 4),
            row_w: (0..b).map(|i| [0.5, 1.0, 2.0, 0.0][i % 4]).collect(),
            class_w: (0..k).map(|c| [1.0, 2.0, 0.5, 4.0][c % 4]).collect(),
        }
    }
}

#[test]
fn the_held_kernels_read_rows_in_place_bitwise_like_the_kernels_over_a_gathered_copy() {
    on_every_gpu(|ctx| {
        // (held rows, features, classes, batch rows, rows per chunk): one to four chunks, batches that repeat rows,
        // cross chunks, end mid-tile (rows not a multiple of 4) and features not a multiple of 4.
        for (s, &(n, d, k, b, chunk_rows)) in [
            (9, 5, 3, 7, 9),
            (300, 784, 10, 256, 120),
            (97, 13, 16, 61, 25),
            (50, 4, 1, 3, 17),
        ]
        .iter()
        .enumerate()
        {
            let HeldCase {
                x,
                w,
                bias,
                y,
                perm,
                row_w,
                class_w,
            } = HeldCase::new(s as u64 * 7 + 100, n, d, k, b);
            let weights = cpu::Weights {
                class: Some(&class_w),
                row: Some(&row_w),
            };
            let case = format!("N={n} D={d} K={k} B={b} chunk={chunk_rows}");
            let (r, stats) = ops::forward_held(
                ctx,
                x.view(),
                &y,
                &perm,
                w.view(),
                bias.view(),
                weights,
                chunk_rows,
            )
            .unwrap();
            // The held kernels read the same values as the gathered copy holds and do the same arithmetic: equal.
            let (xb, yb) = cpu::gather::<f32>(&perm, x.view(), &y);
            let (want_r, want_stats) =
                ops::forward(ctx, xb.view(), w.view(), bias.view(), &yb, weights).unwrap();
            assert_eq!(r, want_r, "R {case}");
            assert_eq!(stats, want_stats, "stats {case}");
            let (g, gb) = ops::grad_held(ctx, x.view(), &perm, r.view(), chunk_rows).unwrap();
            let (want_g, want_gb) = ops::grad(ctx, xb.view(), r.view()).unwrap();
            assert_eq!(g, want_g, "G {case}");
            assert_eq!(gb, want_gb, "g_b {case}");
            // And the mirrors, within the bounds `validate` uses for the kernels they stand in for.
            let (w64, b64) = (to64(&w), bias.mapv(f64::from));
            let (cw64, rw64): (Vec<f64>, Vec<f64>) = (
                class_w.iter().map(|&v| f64::from(v)).collect(),
                row_w.iter().map(|&v| f64::from(v)).collect(),
            );
            let w64s = cpu::Weights {
                class: Some(&cw64),
                row: Some(&rw64),
            };
            let (r_ref, _) = cpu::forward_held(x.view(), &y, &perm, w64.view(), b64.view(), w64s);
            let x64 = to64(&xb);
            let (r_tol, _) = tolerance::forward(x64.view(), w64.view(), b64.view(), &yb);
            // Row and class weights up to 2 × 4 scale R, and so its bound, exactly.
            let r_tol = r_tol.mapv(|t| t * 8.0);
            assert_within(&format!("forward_held R {case}"), &r, &r_ref, &r_tol);
            let (g_ref, _) = cpu::grad_held(x.view(), &perm, to64(&r).view());
            let (g_tol, _) = tolerance::grad(x64.view(), to64(&r).view());
            assert_within(&format!("grad_held G {case}"), &g, &g_ref, &g_tol);
        }
    });
}

#[test]
fn the_held_gradient_split_over_rows_is_bitwise_the_split_over_a_gathered_copy() {
    on_every_gpu(|ctx| {
        // (held rows, features, classes, batch rows, rows per chunk, most segments): one segment of one chunk; 10
        // units in 5 segments over 3 chunks, K past one class tile, rows repeated; K = 200 with a last short unit;
        // K = 1,000 and features past the staged shape's group of 64 (with the bias's quad in the second group).
        for (s, &(n, d, k, b, chunk_rows, most)) in [
            (100, 7, 3, 90, 100, 1024),
            (3000, 21, 40, 2500, 1000, 5),
            (700, 13, 200, 600, 300, 1024),
            (300, 66, 1000, 290, 120, 2),
        ]
        .iter()
        .enumerate()
        {
            let x = uniform(n, d, -1.0, 1.0, s as u64 * 2 + 950);
            let r = uniform(b, k, -0.5, 0.5, s as u64 * 2 + 951);
            let perm: Vec<u32> = (0..b).map(|i| ((i * 7919 + s) % n) as u32).collect();
            let case = format!("N={n} D={d} K={k} B={b} chunk={chunk_rows} segments ≤ {most}");
            let (g, gb) =
                ops::grad_held_split(ctx, x.view(), &perm, r.view(), chunk_rows, most).unwrap();
            // The same rows in the same segments, added in the same order: equal to the split over a copy.
            let labels = vec![0u32; n];
            let (xb, _) = cpu::gather::<f32>(&perm, x.view(), &labels);
            let (want_g, want_gb) = ops::grad_split(ctx, xb.view(), r.view(), most).unwrap();
            assert_eq!(g, want_g, "G {case}");
            assert_eq!(gb, want_gb, "g_b {case}");
            // The staged GPU shape: the same fma chains in the same row order, bitwise.
            let (gs, gbs) =
                ops::grad_held_staged(ctx, x.view(), &perm, r.view(), chunk_rows, most).unwrap();
            assert_eq!(gs, want_g, "staged G {case}");
            assert_eq!(gbs, want_gb, "staged g_b {case}");
            let (g_ref, _) = cpu::grad_held(x.view(), &perm, to64(&r).view());
            let (g_tol, _) = tolerance::grad(to64(&xb).view(), to64(&r).view());
            assert_within(&format!("split grad_held G {case}"), &g, &g_ref, &g_tol);
        }
    });
}

#[test]
fn the_logits_kernel_reads_held_rows_in_place_bitwise_like_over_a_gathered_copy() {
    on_every_gpu(|ctx| {
        // (held rows, features, classes, batch rows, rows per chunk): K past the fused kernels' 16 and 32 — one
        // class tile and a part of one (17), several (40), many (200, 1,000) — and for the staged shape's groups of
        // class tiles one tile (5), over one to four chunks, batches that repeat rows and end mid-tile (of 4 or 8
        // rows, and of the staged shape's 64), features past one staged block of 32 and ending inside one.
        for (s, &(n, d, k, b, chunk_rows)) in [
            (30, 7, 17, 29, 30),
            (300, 784, 40, 256, 120),
            (97, 13, 200, 130, 25),
            (50, 45, 5, 70, 50),
            (80, 33, 1000, 65, 30),
        ]
        .iter()
        .enumerate()
        {
            let HeldCase {
                x,
                w,
                bias,
                y,
                perm,
                ..
            } = HeldCase::new(s as u64 * 13 + 500, n, d, k, b);
            let case = format!("N={n} D={d} K={k} B={b} chunk={chunk_rows}");
            let (z, labels) = ops::logits_held(
                ctx,
                x.view(),
                &y,
                &perm,
                (w.view(), bias.view()),
                chunk_rows,
            )
            .unwrap();
            // The same values as the gathered copy holds, the same arithmetic: equal; and the gather's labels.
            let (xb, yb) = cpu::gather::<f32>(&perm, x.view(), &y);
            let want = ops::logits(ctx, xb.view(), w.view(), bias.view()).unwrap();
            assert_eq!(z, want, "Z {case}");
            assert_eq!(labels, yb, "labels {case}");
            // The staged GPU shape: the same fma chains, bitwise, and the same labels.
            let (zs, ls) = ops::logits_held_staged(
                ctx,
                x.view(),
                &y,
                &perm,
                (w.view(), bias.view()),
                chunk_rows,
            )
            .unwrap();
            assert_eq!(zs, want, "staged Z {case}");
            assert_eq!(ls, yb, "staged labels {case}");
            // And the mirror, within the bound `validate` uses for the logits.
            let (x64, w64, b64) = (to64(&xb), to64(&w), bias.mapv(f64::from));
            let want = cpu::logits(x64.view(), w64.view(), b64.view());
            let tol = tolerance::logits(x64.view(), w64.view(), b64.view());
            assert_within(&format!("logits_held Z {case}"), &z, &want, &tol);
        }
    });
}

#[test]
fn the_gradient_split_over_rows_matches_its_mirror_and_repeats_bitwise() {
    on_every_gpu(|ctx| {
        // (rows, features, classes, most segments): one segment; 4 units in 4; 12 units in 5 (3 to a segment, the
        // last short); K past one class tile and features not a multiple of 4.
        for (s, &(n, d, k, most)) in [(100, 7, 3, 1024), (1000, 13, 40, 1024), (3000, 21, 200, 5)]
            .iter()
            .enumerate()
        {
            let x = uniform(n, d, -1.0, 1.0, s as u64 * 2 + 900);
            let r = uniform(n, k, -0.5, 0.5, s as u64 * 2 + 901);
            let case = format!("N={n} D={d} K={k} segments ≤ {most}");
            let (gw, gb) = ops::grad_split(ctx, x.view(), r.view(), most).unwrap();
            let (x64, r64) = (to64(&x), to64(&r));
            let (g_ref, gb_ref) = cpu::grad(x64.view(), r64.view());
            let (g_tol, gb_tol) = tolerance::grad(x64.view(), r64.view());
            assert_within(&format!("split G {case}"), &gw, &g_ref, &g_tol);
            assert_within(
                &format!("split g_b {case}"),
                &gb.clone().insert_axis(ndarray::Axis(0)),
                &gb_ref.clone().insert_axis(ndarray::Axis(0)),
                &gb_tol.clone().insert_axis(ndarray::Axis(0)),
            );
            let again = ops::grad_split(ctx, x.view(), r.view(), most).unwrap();
            assert_eq!((gw, gb), again, "repeat {case}");
        }
    });
}

#[test]
fn the_fused_kernel_matches_its_mirror_over_tiles_segments_and_chunks() {
    on_every_gpu(|ctx| {
        // (held rows, features, classes, batch rows, rows per chunk): a partial tile; 4 tiles over 3 chunks; K = 32
        // over 4 chunks; K = 17 (a second group of 4 class groups); 20,000 features (W staged block by block,
        // invocation, few segments of 2 tiles each); batches that repeat held rows.
        for (s, &(n, d, k, b, chunk_rows)) in [
            (9, 5, 3, 7, 9),
            (300, 784, 10, 256, 120),
            (97, 13, 32, 130, 25),
            (70, 300, 17, 1000, 30),
            (40, 20_000, 32, 2000, 40),
            (50, 4, 2, 65, 17),
        ]
        .iter()
        .enumerate()
        {
            let shape = softmax_wgpu::Shape { d, k };
            if !softmax_wgpu::gpu::GpuBackend::runs_fused(ctx, shape) {
                println!(
                    "skipped on {}: it does not run the fused kernel",
                    ctx.describe()
                );
                return;
            }
            let HeldCase {
                x,
                w,
                bias,
                y,
                perm,
                row_w,
                class_w,
            } = HeldCase::new(s as u64 * 11 + 300, n, d, k, b);
            let weights = cpu::Weights {
                class: Some(&class_w),
                row: Some(&row_w),
            };
            let case = format!("N={n} D={d} K={k} B={b} chunk={chunk_rows}");
            let run = |team: Team| {
                ops::fused_held(
                    ctx,
                    x.view(),
                    &y,
                    &perm,
                    w.view(),
                    bias.view(),
                    weights,
                    chunk_rows,
                    team,
                )
                .unwrap()
            };
            let (w64, b64) = (to64(&w), bias.mapv(f64::from));
            let (cw64, rw64): (Vec<f64>, Vec<f64>) = (
                class_w.iter().map(|&v| f64::from(v)).collect(),
                row_w.iter().map(|&v| f64::from(v)).collect(),
            );
            let w64s = cpu::Weights {
                class: Some(&cw64),
                row: Some(&rw64),
            };
            let (g_ref, gb_ref, loss_ref, hits_ref) =
                cpu::fused(x.view(), &y, &perm, w64.view(), b64.view(), w64s);
            let (xb, yb) = cpu::gather::<f64>(&perm, x.view(), &y);
            let (r_ref, stats_ref) = cpu::forward(xb.view(), w64.view(), b64.view(), &yb, w64s);
            let (g_tol, gb_tol, loss_tol) = tolerance::fused(
                xb.view(),
                (w64.view(), b64.view()),
                &yb,
                (r_ref.view(), stats_ref.column(0)),
                8.0,
            );
            let check = |team: Team, (g, gb, loss, hits): &(Array2<f32>, Array1<f32>, f32, f32)| {
                let case = format!("{case}, {team}");
                assert_within(&format!("fused G {case}"), g, &g_ref, &g_tol);
                assert_within(
                    &format!("fused g_b {case}"),
                    &gb.clone().insert_axis(ndarray::Axis(0)),
                    &gb_ref.clone().insert_axis(ndarray::Axis(0)),
                    &gb_tol.clone().insert_axis(ndarray::Axis(0)),
                );
                assert!(
                    (f64::from(*loss) - loss_ref).abs() <= loss_tol,
                    "fused loss {case}: {loss} vs {loss_ref} ± {loss_tol}"
                );
                // Hits are counts: exact unless a row's two largest logits are within the logits' rounding.
                assert!(
                    (f64::from(*hits) - hits_ref).abs() <= 1.0,
                    "fused hits {case}: {hits} vs {hits_ref}"
                );
            };
            // The GPU shape as this device runs it (32 lanes a row where its subgroups hold them in order, else 8 where
            // a workgroup holds 512 invocations).
            let team = ops::team(ctx);
            let got = run(team);
            check(team, &got);
            // Bitwise reproducible: the same call again gives the same bits.
            assert_eq!(got, run(team), "repeat {case}, {}", team);
            // Where the device has subgroups, its lanes' exchange through workgroup memory (what devices without
            // them run) makes the same additions in the same order: the same bits.
            if team.subgroups {
                let shared = team.without_subgroups();
                assert_eq!(got, run(shared), "{case}: {} vs {shared}", team);
            }
            // The other teams — one invocation a row (the CPU adapters' shape), and in the first case 2 and 4 lanes
            // (devices with smaller workgroups; each team's pipeline costs llvmpipe seconds to compile) — add the
            // logits in other orders: each within the bounds.
            let others = if s == 0 { &[1, 2, 4][..] } else { &[1][..] };
            for &lanes in others.iter().filter(|&&l| l < team.lanes) {
                let other = Team { lanes, ..team };
                check(other, &run(other));
            }
            // A team of 32 lanes (tiles of 16 rows: a partial tile; 16 tiles over 3 chunks with W staged in 5
            // blocks) where the device's own team is narrower: through workgroup memory, within the bounds and
            // bitwise reproducible. (Each team is a pipeline llvmpipe compiles for minutes at K = 32; 16 lanes are
            // the same code with other constants.)
            let wide = if s <= 1 { &[32][..] } else { &[][..] };
            for &lanes in wide.iter().filter(|&&l| l > team.lanes) {
                let other = Team {
                    lanes,
                    subgroups: false,
                };
                let got = run(other);
                check(other, &got);
                assert_eq!(got, run(other), "repeat {case}, {other}");
            }
        }
    });
}

/// A sparse batch of `b` rows over `d` columns, about `density` of them non-zero (some rows and columns empty),
/// taken in a shuffled order from a larger held set.
fn sparse_batch(
    b: usize,
    d: usize,
    k: usize,
    density: f64,
    seed: u64,
) -> softmax_wgpu::data::SparseBatch {
    use softmax_wgpu::data::{SparseChunk, SparseRows};
    let n = b + 7;
    let x = uniform(n, d, -2.0, 2.0, seed);
    let keep = uniform(n, d, 0.0, 1.0, seed + 1);
    let mut dense = x.clone();
    dense.zip_mut_with(&keep, |v, &p| {
        if f64::from(p) >= density {
            *v = 0.0;
        }
    });
    let y = labels(n, k, seed + 2);
    let chunk = SparseChunk::from_dense(dense.view(), &y, 0);
    let rows = SparseRows::from_chunk("sparse", &chunk, k.max(2)).unwrap();
    let mut perm: Vec<u32> = (0..n as u32).rev().collect();
    perm.truncate(b);
    perm.rotate_left(b / 3);
    rows.batch(&perm)
}

#[test]
fn sparse_kernels_match_cpu_on_edge_shapes() {
    // Bounds: the dense ones for the same rows made dense. A row's logit sums its nnz ≤ d entries and a gradient
    // element its column's ≤ B entries, so the dense bounds (d and B roundings) hold for the sparse sums.
    on_every_gpu(|ctx| {
        let shapes = iproduct(
            &[1usize, 63, 65, 1000],
            &[1usize, 3, 784, 5000],
            &[2usize, 10, 100],
        );
        for (s, (&b, &d, &k)) in shapes.enumerate() {
            for density in [0.01, 0.3] {
                let seed = s as u64 * 7 + (density * 100.0) as u64;
                let batch = sparse_batch(b, d, k, density, seed);
                let dense = to64(&batch.to_dense());
                let w = uniform(d, k, -1.0, 1.0, seed + 3);
                let bias = Array1::from(
                    uniform(1, k, -1.0, 1.0, seed + 4)
                        .into_raw_vec_and_offset()
                        .0,
                );
                let what = format!("B={b} D={d} K={k} density {density}");
                let z = ops::sparse_logits(ctx, &batch, w.view(), bias.view()).unwrap();
                let z_ref =
                    cpu::sparse_logits(&batch, to64(&w).view(), bias.mapv(f64::from).view());
                // The sparse mirror equals the dense mirror on the same rows.
                let z_dense =
                    cpu::logits(dense.view(), to64(&w).view(), bias.mapv(f64::from).view());
                let tol =
                    tolerance::logits(dense.view(), to64(&w).view(), bias.mapv(f64::from).view());
                assert_within(&format!("sparse logits {what}"), &z, &z_ref, &tol);
                assert!(
                    (&z_ref - &z_dense).iter().all(|v| v.abs() < 1e-9),
                    "{what}: mirrors"
                );
                let r = uniform(b, k, -1.0, 1.0, seed + 5);
                let (g, gb) = ops::sparse_grad(ctx, &batch, r.view()).unwrap();
                let (g_ref, gb_ref) = cpu::sparse_grad(&batch, to64(&r).view());
                let (g_tol, gb_tol) = tolerance::grad(dense.view(), to64(&r).view());
                assert_within(&format!("sparse grad G {what}"), &g, &g_ref, &g_tol);
                assert_within(&format!("sparse grad g_b {what}"), &gb, &gb_ref, &gb_tol);
                let (g_dense, _) = cpu::grad(dense.view(), to64(&r).view());
                assert!(
                    (&g_ref - &g_dense).iter().all(|v| v.abs() < 1e-9),
                    "{what}: mirrors"
                );
            }
        }
    });
}

#[test]
fn sparse_update_matches_cpu_and_zeroes_what_it_consumed() {
    on_every_gpu(|ctx| {
        for (s, (&d, &k, _)) in
            iproduct(&[1usize, 3, 784], &[2usize, 10, 100], &[0usize]).enumerate()
        {
            let s = s as u64 * 5;
            let (g, w) = (uniform(d, k, -3.0, 3.0, s), uniform(d, k, -1.0, 1.0, s + 1));
            let gb = Array1::from(uniform(1, k, -3.0, 3.0, s + 2).into_raw_vec_and_offset().0);
            let b = Array1::from(uniform(1, k, -1.0, 1.0, s + 3).into_raw_vec_and_offset().0);
            let cols: Vec<u32> = (0..d as u32).filter(|j| j % 3 != 1).collect();
            for (l2, apply) in [(0.0f32, true), (0.01, true), (0.01, false)] {
                let ((gw, gbw), (gg, ggb)) = ops::sparse_update(
                    ctx,
                    &cols,
                    g.view(),
                    gb.view(),
                    w.view(),
                    b.view(),
                    (0.1, l2, 37),
                    apply,
                )
                .unwrap();
                let (mut g64, mut gb64, mut w64, mut b64) =
                    (to64(&g), gb.mapv(f64::from), to64(&w), b.mapv(f64::from));
                cpu::sparse_update(
                    &cols,
                    g64.view_mut(),
                    gb64.view_mut(),
                    w64.view_mut(),
                    b64.view_mut(),
                    0.1,
                    f64::from(l2),
                    37.0,
                    apply,
                );
                let what = format!("D={d} K={k} l2={l2} apply={apply}");
                let tol = tolerance::update(to64(&w).view(), to64(&g).view(), 0.1, 37.0);
                assert_within(&format!("sparse update W {what}"), &gw, &w64, &tol);
                let b_tol = tolerance::update(
                    b.mapv(f64::from).insert_axis(ndarray::Axis(0)).view(),
                    gb.mapv(f64::from).insert_axis(ndarray::Axis(0)).view(),
                    0.1,
                    37.0,
                )
                .row(0)
                .to_owned();
                assert_within(&format!("sparse update b {what}"), &gbw, &b64, &b_tol);
                // The consumed sums are zero, the others untouched, exactly.
                assert_eq!(gg, g64.mapv(|v| v as f32), "{what}: G");
                assert!(ggb.iter().all(|&v| v == 0.0), "{what}: g_b");
            }
        }
    });
}

#[test]
fn optimizer_kernels_match_their_mirror() {
    use softmax_wgpu::cpu::StepParams;
    on_every_gpu(|ctx| {
        for (s, (&d, &k, _)) in
            iproduct(&[1usize, 3, 784], &[2usize, 10, 100], &[0usize]).enumerate()
        {
            let s = s as u64 * 11;
            let (g, w) = (uniform(d, k, -3.0, 3.0, s), uniform(d, k, -1.0, 1.0, s + 1));
            let gb = Array1::from(uniform(1, k, -3.0, 3.0, s + 2).into_raw_vec_and_offset().0);
            let b = Array1::from(uniform(1, k, -1.0, 1.0, s + 3).into_raw_vec_and_offset().0);
            let n = d * k + k;
            let s1: Vec<f32> = uniform(1, n, -0.5, 0.5, s + 4).into_raw_vec_and_offset().0;
            let s2: Vec<f32> = uniform(1, n, 0.0, 0.5, s + 5).into_raw_vec_and_offset().0;
            for (adam, nesterov, wd) in [
                (false, false, 0.0),
                (false, true, 0.0),
                (true, false, 0.0),
                (true, false, 0.1),
            ] {
                let p = StepParams {
                    lr: 0.05f32,
                    l2: 0.01,
                    l1: 0.02,
                    rows: 7.0,
                    beta1: 0.9,
                    beta2: 0.99,
                    eps: 1e-6,
                    weight_decay: wd,
                    c1: 0.271,
                    c2: 0.0297,
                    nesterov,
                };
                let slots: Vec<&[f32]> = if adam { vec![&s1, &s2] } else { vec![&s1] };
                let ((wg, bg), sg) = ops::optimizer_step(
                    ctx,
                    adam,
                    g.view(),
                    gb.view(),
                    w.view(),
                    b.view(),
                    &slots,
                    &p,
                )
                .unwrap();
                let f = |v: f32| f64::from(v);
                let p64 = p.to_f64();
                let (mut w64, mut b64) = (to64(&w), b.mapv(f64::from));
                let (mut t1, mut t2): (Vec<f64>, Vec<f64>) = (
                    s1.iter().map(|&v| f(v)).collect(),
                    s2.iter().map(|&v| f(v)).collect(),
                );
                cpu::optimizer_step(
                    adam,
                    to64(&g).view(),
                    gb.mapv(f64::from).view(),
                    w64.view_mut(),
                    b64.view_mut(),
                    &mut t1,
                    &mut t2,
                    &p64,
                );
                let what = format!("D={d} K={k} adam={adam} nesterov={nesterov} wd={wd}");
                let s1_64: Vec<f64> = s1.iter().map(|&v| f(v)).collect();
                let tol = tolerance::optimizer(
                    adam,
                    to64(&w).view(),
                    to64(&g).view(),
                    (&s1_64, &t1, &t2),
                    &p64,
                );
                assert_within(&format!("W {what}"), &wg, &w64, &tol);
                let btol = (b.mapv(|v| f64::from(v).abs())
                    + (&b.mapv(f64::from) - &b64).mapv(f64::abs))
                    * (16.0 * U)
                    + 1e-30;
                assert_within(&format!("b {what}"), &bg, &b64, &btol);
                let s_tol = Array1::from(
                    t1.iter()
                        .map(|v| v.abs() * 8.0 * U + 4.0 * U)
                        .collect::<Vec<_>>(),
                );
                assert_within(
                    &format!("state {what}"),
                    &Array1::from(sg[0].clone()),
                    &Array1::from(t1.clone()),
                    &s_tol,
                );
            }
        }
    });
}

#[test]
fn the_tiled_products_give_bitwise_the_same_results_at_every_tile_size() {
    use softmax_wgpu::gpu::kernels::TILE_QUADS;
    on_every_gpu(|ctx| {
        // (held rows, features, classes, batch rows, rows per chunk): batches that end inside the first or the second
        // quad of an invocation (1, 5, 9, 70 rows), features that end inside either feature quad or right before
        // the bias's (3, 7, 12, 13), one class tile and a part of one (3, 10, 16), several (17, 40) over 1–3 chunks.
        for (s, &(n, d, k, b, chunk_rows)) in [
            (4, 3, 3, 1, 4),
            (11, 7, 10, 5, 4),
            (20, 12, 16, 9, 20),
            (90, 13, 17, 70, 40),
            (50, 8, 40, 33, 25),
        ]
        .iter()
        .enumerate()
        {
            let HeldCase {
                x,
                w,
                bias,
                y,
                perm,
                row_w,
                class_w,
            } = HeldCase::new(s as u64 * 17 + 700, n, d, k, b);
            let weights = cpu::Weights {
                class: Some(&class_w),
                row: Some(&row_w),
            };
            let (xb, yb) = cpu::gather::<f32>(&perm, x.view(), &y);
            let r = uniform(b, k, -0.5, 0.5, s as u64 + 710);
            let run = |quads| {
                ops::with_tile(quads, || {
                    let z = ops::logits(ctx, xb.view(), w.view(), bias.view()).unwrap();
                    let zh = ops::logits_held(
                        ctx,
                        x.view(),
                        &y,
                        &perm,
                        (w.view(), bias.view()),
                        chunk_rows,
                    )
                    .unwrap()
                    .0;
                    let g = ops::grad(ctx, xb.view(), r.view()).unwrap();
                    let gs = ops::grad_split(ctx, xb.view(), r.view(), 2).unwrap();
                    let gh = ops::grad_held(ctx, x.view(), &perm, r.view(), chunk_rows).unwrap();
                    let ghs = ops::grad_held_split(ctx, x.view(), &perm, r.view(), chunk_rows, 2)
                        .unwrap();
                    let f = (k <= 16).then(|| {
                        (
                            ops::forward(ctx, xb.view(), w.view(), bias.view(), &yb, weights)
                                .unwrap(),
                            ops::forward_held(
                                ctx,
                                x.view(),
                                &y,
                                &perm,
                                w.view(),
                                bias.view(),
                                weights,
                                chunk_rows,
                            )
                            .unwrap(),
                        )
                    });
                    (z, zh, g, gs, gh, ghs, f)
                })
            };
            let one = run(1);
            let case = format!("N={n} D={d} K={k} B={b} chunk={chunk_rows}");
            // Each tile adds the same products in the same order: equal, held or gathered, split or whole.
            for &quads in &TILE_QUADS[1..] {
                assert_eq!(run(quads), one, "TQ={quads} {case}");
            }
            assert_eq!(one.0, one.1, "held logits {case}");
            assert_eq!(one.2, one.4, "held gradient {case}");
            assert_eq!(one.3, one.5, "held split gradient {case}");
            // And the mirrors, within the bounds `validate` uses.
            let (x64, w64, b64) = (to64(&xb), to64(&w), bias.mapv(f64::from));
            let want = cpu::logits(x64.view(), w64.view(), b64.view());
            let tol = tolerance::logits(x64.view(), w64.view(), b64.view());
            assert_within(&format!("logits {case}"), &one.0, &want, &tol);
            let (g_ref, gb_ref) = cpu::grad(x64.view(), to64(&r).view());
            let (g_tol, gb_tol) = tolerance::grad(x64.view(), to64(&r).view());
            for (what, (g, gb)) in [("whole", &one.2), ("split", &one.3)] {
                assert_within(&format!("{what} G {case}"), g, &g_ref, &g_tol);
                assert_within(
                    &format!("{what} g_b {case}"),
                    &gb.clone().insert_axis(ndarray::Axis(0)),
                    &gb_ref.clone().insert_axis(ndarray::Axis(0)),
                    &gb_tol.clone().insert_axis(ndarray::Axis(0)),
                );
            }
            if let Some(((fr, fstats), held)) = &one.6 {
                assert_eq!((fr, fstats), (&held.0, &held.1), "held forward {case}");
                let (cw64, rw64): (Vec<f64>, Vec<f64>) = (
                    class_w.iter().map(|&v| f64::from(v)).collect(),
                    row_w.iter().map(|&v| f64::from(v)).collect(),
                );
                let w64s = cpu::Weights {
                    class: Some(&cw64),
                    row: Some(&rw64),
                };
                let (r_ref, _) = cpu::forward(x64.view(), w64.view(), b64.view(), &yb, w64s);
                let (r_tol, _) = tolerance::forward(x64.view(), w64.view(), b64.view(), &yb);
                // Row and class weights up to 2 × 4 scale R, and so its bound, exactly.
                let r_tol = r_tol.mapv(|t| t * 8.0);
                assert_within(&format!("forward R {case}"), fr, &r_ref, &r_tol);
            }
        }
    });
}

#[test]
fn reading_the_shared_operand_through_windows_in_quads_or_spread_changes_no_bit() {
    use softmax_wgpu::gpu::{GpuBackend, GpuContext, GpuOptions};
    use softmax_wgpu::train::Batch;
    use softmax_wgpu::{Backend, Shape};
    on_every_gpu(|ctx| {
        if !ctx.windowed() {
            eprintln!("skipped: {} reads no windows", ctx.describe());
            return;
        }
        let plain = GpuContext::with_windows(ctx.adapter.clone(), false).unwrap();
        assert!(!plain.windowed() && plain.spread_lanes().is_none());
        // Where the device spreads (lavapipe on Vulkan) the tiles take their classes from the subgroup instead of
        // in quads (SB): every case below then compares that against the plain walk.
        let subgroups_in_order = ctx.shuffles_in_order(ctx.info.subgroup_min_size);
        if ctx.info.subgroup_min_size == 8 && ctx.info.subgroup_max_size == 8 && subgroups_in_order
        {
            assert_eq!(ctx.spread_lanes(), Some(8), "{}", ctx.describe());
        }
        eprintln!(
            "{}: {}",
            ctx.describe(),
            match ctx.spread_lanes() {
                Some(l) => format!("the tiles spread their operand over subgroups of {l}"),
                None => "the tiles read their operand in quads (K a multiple of 4) or alone".into(),
            }
        );
        // (held rows, features, classes, batch rows, rows per chunk). A window holds 16,384 floats, a multiple of 8
        // rows of W or R (lavapipe's alignment): at K = 64 256 features or rows (3 logits windows at D = 600, 3
        // gradient windows at 600 rows over 2 chunks); at K = 48 336 (337 features: the last window one feature
        // long); at K = 32 512 (600 rows: 2 gradient windows, the rows read in place by the training backend); at
        // K = 10 1,632 (the fused forward pass reads W through one window). Where K is a multiple of 4 the tiles read
        // W and R in quads of classes (V4), unless the device spreads them (above): through the windows at K = 64,
        // 48, 36 (its last tile's quads past the 36th class clamped) and 32, from storage at K = 200 (no windows
        // past 64 classes; the last tile's two quads past class 200 clamped). Spread, every lane of a subgroup stays
        // to the end: the batches of 250, 300, 400 and 520 rows leave lanes past the last row quad, and D = 337, 90
        // and 40 lanes past the bias's feature quad.
        for (s, &(n, d, k, b, chunk_rows)) in [
            (700, 600, 64, 600, 350),
            (500, 337, 48, 400, 500),
            (700, 40, 32, 600, 700),
            (300, 200, 10, 250, 150),
            (600, 500, 36, 520, 300),
            (400, 90, 200, 300, 200),
        ]
        .iter()
        .enumerate()
        {
            let case = format!("N={n} D={d} K={k} B={b} chunk={chunk_rows}");
            let HeldCase {
                x,
                w,
                bias,
                y,
                perm,
                ..
            } = HeldCase::new(s as u64 * 5 + 1300, n, d, k, b);
            let r = uniform(b, k, -0.5, 0.5, s as u64 * 5 + 1304);
            let (xb, _) = cpu::gather::<f32>(&perm, x.view(), &y);
            for (what, on, off) in [
                (
                    "logits",
                    ops::logits(ctx, xb.view(), w.view(), bias.view()).unwrap(),
                    ops::logits(&plain, xb.view(), w.view(), bias.view()).unwrap(),
                ),
                (
                    "logits_held",
                    ops::logits_held(
                        ctx,
                        x.view(),
                        &y,
                        &perm,
                        (w.view(), bias.view()),
                        chunk_rows,
                    )
                    .unwrap()
                    .0,
                    ops::logits_held(
                        &plain,
                        x.view(),
                        &y,
                        &perm,
                        (w.view(), bias.view()),
                        chunk_rows,
                    )
                    .unwrap()
                    .0,
                ),
            ] {
                assert_eq!(on, off, "{what} {case}");
            }
            if k <= 16 {
                let (_, yb) = cpu::gather::<f32>(&perm, x.view(), &y);
                let none = cpu::Weights::none();
                let forward = |c: &GpuContext| {
                    let gathered =
                        ops::forward(c, xb.view(), w.view(), bias.view(), &yb, none).unwrap();
                    let held = ops::forward_held(
                        c,
                        x.view(),
                        &y,
                        &perm,
                        w.view(),
                        bias.view(),
                        none,
                        chunk_rows,
                    )
                    .unwrap();
                    (gathered, held)
                };
                assert_eq!(forward(ctx), forward(&plain), "forward {case}");
            }
            for (what, on, off) in [
                (
                    "grad",
                    ops::grad(ctx, xb.view(), r.view()).unwrap(),
                    ops::grad(&plain, xb.view(), r.view()).unwrap(),
                ),
                (
                    "grad_held",
                    ops::grad_held(ctx, x.view(), &perm, r.view(), chunk_rows).unwrap(),
                    ops::grad_held(&plain, x.view(), &perm, r.view(), chunk_rows).unwrap(),
                ),
            ] {
                assert_eq!(on.0, off.0, "{what} G {case}");
                assert_eq!(on.1, off.1, "{what} g_b {case}");
            }
            // A training backend adding a second batch to the sums it holds (the gradient's add mode, which the
            // windows carry through their own buffer): the same sums.
            let shape = Shape { d, k };
            let sums = |c: &GpuContext| {
                let mut g = GpuBackend::new(c, shape, &GpuOptions::default()).unwrap();
                for half in [0..n / 2, n / 2..n] {
                    let xs = x.slice(ndarray::s![half.clone(), ..]);
                    let chunk = softmax_wgpu::data::Chunk::new(
                        "rows",
                        xs,
                        &y[half.clone()],
                        k,
                        half.start as u64,
                    )
                    .unwrap();
                    g.accumulate(&Batch::host(chunk).unwrap()).unwrap();
                }
                g.take_gradient().unwrap()
            };
            let (on, off) = (sums(ctx), sums(&plain));
            assert_eq!(on.w, off.w, "accumulated G {case}");
            assert_eq!(on.b, off.b, "accumulated g_b {case}");
        }
    });
}
