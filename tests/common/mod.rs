//! Shared test helpers: every GPU adapter (or a skip), seeded data, and tolerance checks.
#![allow(dead_code)]

use ndarray::{Array2, Dimension, Zip};
use softmax_wgpu::gpu::{adapters, GpuContext};
use softmax_wgpu::rng::SplitMix64;

/// f32 unit roundoff, 2⁻²⁴.
pub const U: f64 = 5.960_464_477_539_063e-8;

/// One open context per adapter wgpu finds. With none: an empty list and a line saying the GPU tests were skipped,
/// or a failure when SOFTMAX_WGPU_REQUIRE_GPU=1.
pub fn gpus() -> Vec<GpuContext> {
    let found: Vec<GpuContext> = adapters(wgpu::Backends::all())
        .into_iter()
        .filter_map(|a| match GpuContext::new(a) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("adapter unusable: {e}");
                None
            }
        })
        .collect();
    if found.is_empty() {
        if std::env::var("SOFTMAX_WGPU_REQUIRE_GPU").is_ok_and(|v| v == "1") {
            panic!("SOFTMAX_WGPU_REQUIRE_GPU=1 but wgpu found no usable adapter");
        }
        eprintln!(
            "skipped: no GPU adapter found (set SOFTMAX_WGPU_REQUIRE_GPU=1 to make this a failure)"
        );
    }
    found
}

/// Runs `body` on every adapter, naming the adapter in any failure.
pub fn on_every_gpu(mut body: impl FnMut(&GpuContext)) {
    for ctx in gpus() {
        eprintln!("adapter: {}", ctx.describe());
        body(&ctx);
    }
}

/// A backend maker, as the tests' bodies take it.
pub type Make<'m, 'c> =
    &'m mut dyn FnMut(softmax_wgpu::Shape) -> Box<dyn softmax_wgpu::Backend + 'c>;

/// One kind of backend a property runs on. [`per_backend!`] makes one test of each kind from a property written
/// once (candle's `test_device!`): a failure on one backend does not hide the others, and one kind runs on its own
/// (`cargo test NAME::gpu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backends {
    /// The f32 reference.
    CpuF32,
    /// The f64 reference.
    CpuF64,
    /// The fast f32 CPU trainer.
    FastCpu,
    /// Every adapter wgpu finds (or a skip, or a failure under SOFTMAX_WGPU_REQUIRE_GPU=1).
    Gpu,
    /// All of the above, in one test.
    All,
}

impl Backends {
    /// Runs `body` with the name and a maker of each backend of this kind.
    pub fn each(self, mut body: impl for<'c> FnMut(&str, Make<'_, 'c>)) {
        use softmax_wgpu::cpu::{CpuBackend, FastCpu};
        use softmax_wgpu::gpu::{GpuBackend, GpuOptions};
        let all = self == Backends::All;
        if all || self == Backends::CpuF32 {
            body("cpu f32", &mut |s| Box::new(CpuBackend::<f32>::new(s)));
        }
        if all || self == Backends::CpuF64 {
            body("cpu f64", &mut |s| Box::new(CpuBackend::<f64>::new(s)));
        }
        if all || self == Backends::FastCpu {
            body("fast cpu", &mut |s| Box::new(FastCpu::new(s).unwrap()));
        }
        if all || self == Backends::Gpu {
            for ctx in gpus() {
                let name = ctx.describe();
                body(&name, &mut |s| {
                    Box::new(GpuBackend::new(&ctx, s, &GpuOptions::default()).unwrap())
                });
            }
        }
    }
}

/// Tests of the property `fn $name(on: Backends)`, one per kind of backend: `$name::cpu_f32`, `$name::cpu_f64`,
/// `$name::fast_cpu`, `$name::gpu`.
#[macro_export]
macro_rules! per_backend {
    ($name:ident) => {
        mod $name {
            use super::common::Backends;
            #[test]
            fn cpu_f32() {
                super::$name(Backends::CpuF32)
            }
            #[test]
            fn cpu_f64() {
                super::$name(Backends::CpuF64)
            }
            #[test]
            fn fast_cpu() {
                super::$name(Backends::FastCpu)
            }
            #[test]
            fn gpu() {
                super::$name(Backends::Gpu)
            }
        }
    };
}

/// Runs `body` on the CPU path (the f32 and f64 reference and the fast f32 trainer) and on every adapter.
pub fn on_every_backend(body: impl for<'c> FnMut(&str, Make<'_, 'c>)) {
    Backends::All.each(body)
}

/// Uniform values in [lo, hi) as f32.
pub fn uniform(rows: usize, cols: usize, lo: f64, hi: f64, seed: u64) -> Array2<f32> {
    let mut g = SplitMix64::new(seed);
    Array2::from_shape_simple_fn((rows, cols), || (lo + (hi - lo) * g.next_f64()) as f32)
}

/// Class indices below k.
pub fn labels(rows: usize, k: usize, seed: u64) -> Vec<u32> {
    let mut g = SplitMix64::new(seed);
    (0..rows).map(|_| g.below(k as u64) as u32).collect()
}

/// Each row a probability distribution over k classes (as softmax would give).
pub fn probabilities(rows: usize, k: usize, seed: u64) -> Array2<f32> {
    let mut p = uniform(rows, k, 0.01, 1.0, seed);
    for mut r in p.outer_iter_mut() {
        let s: f32 = r.sum();
        r.mapv_inplace(|v| v / s);
    }
    p
}

pub fn to64<D: Dimension>(a: &ndarray::Array<f32, D>) -> ndarray::Array<f64, D> {
    a.mapv(f64::from)
}

/// Asserts |got − want| ≤ tol element-wise; the message names the worst element and its ratio to the tolerance.
pub fn assert_within<D: Dimension>(
    what: &str,
    got: &ndarray::Array<f32, D>,
    want: &ndarray::Array<f64, D>,
    tol: &ndarray::Array<f64, D>,
) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let mut worst = (0.0f64, 0usize);
    let mut i = 0usize;
    Zip::from(got).and(want).and(tol).for_each(|&g, &w, &t| {
        let g = f64::from(g);
        let ratio = if g.is_finite() {
            (g - w).abs() / t.max(f64::MIN_POSITIVE)
        } else {
            f64::INFINITY
        };
        if ratio > worst.0 || ratio.is_nan() {
            worst = (if ratio.is_nan() { f64::INFINITY } else { ratio }, i);
        }
        i += 1;
    });
    let (g, w, t) = (
        got.iter().nth(worst.1).copied().unwrap_or(0.0),
        want.iter().nth(worst.1).copied().unwrap_or(0.0),
        tol.iter().nth(worst.1).copied().unwrap_or(0.0),
    );
    assert!(
        worst.0 <= 1.0,
        "{what}: element {} is {g}, expected {w} ± {t:e} ({:.2}× the tolerance)",
        worst.1,
        worst.0
    );
}

/// Asserts two trainings of one problem by kernels that add the same terms in different orders (the one-pass
/// kernel's tiles and segments, the two-kernel path's rows) ended at the same weights up to f32 rounding: every
/// weight within 1e-4 of the other, relative to the largest weight (at least 1). Each gradient sum of n terms may
/// differ by about n·2⁻²⁴ of its terms' magnitude between orders (≈ 2·10⁻⁴ at the 3,000 rows used here, of the
/// sum's terms, which the learning rate and the batch mean scale down); a wrong row, label or weight moves weights
/// by orders of magnitude more.
pub fn assert_same_run(what: &str, a: &softmax_wgpu::Params, b: &softmax_wgpu::Params) {
    let scale =
        a.w.iter()
            .chain(a.b.iter())
            .fold(1.0f32, |m, v| m.max(v.abs()));
    let worst =
        a.w.iter()
            .zip(b.w.iter())
            .chain(a.b.iter().zip(b.b.iter()))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-4 * scale,
        "{what}: weights differ by {worst:e} (scale {scale})"
    );
}
