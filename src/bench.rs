//! What `softmax-wgpu bench` measures: whole training epochs through the seam, on seeded synthetic data held by the
//! device, timed after a warm-up epoch with the device's work finished before the clock stops (the epoch's loss sums
//! are read back). Figures are derived from the shape: an epoch is 4·N·D·K floating-point operations (the forward
//! and the backward product) and reads X (N·D·4 bytes) at least once.

use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::train::{Backend, Batch, Held, Optimizer, Update};

/// A problem to time: N rows of D features in K classes, in batches of `batch` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Case {
    /// Rows.
    pub n: usize,
    /// Features.
    pub d: usize,
    /// Classes.
    pub k: usize,
    /// Rows per step (at most n: larger is full batch).
    pub batch: usize,
    /// The non-zeros of X, when it is sparse (CSR).
    pub nnz: Option<u64>,
}

impl Case {
    /// Floating-point operations of one epoch: 2·N·D·K for Z = X·W and as many for Xᵀ·R; for sparse X, 2·nnz·K each.
    pub fn flops(&self) -> f64 {
        match self.nnz {
            Some(nnz) => 4.0 * nnz as f64 * self.k as f64,
            None => 4.0 * self.n as f64 * self.d as f64 * self.k as f64,
        }
    }

    /// Bytes of X: N·D·4, or for sparse X its non-zeros' values and column indices (8 bytes each).
    pub fn x_bytes(&self) -> u64 {
        match self.nnz {
            Some(nnz) => nnz * 8,
            None => self.n as u64 * self.d as u64 * 4,
        }
    }

    /// Steps in an epoch.
    pub fn steps(&self) -> usize {
        self.n.div_ceil(self.batch.min(self.n).max(1))
    }
}

/// Timings of one device on one case.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// Wall seconds of each timed epoch.
    pub epoch_seconds: Vec<f64>,
    /// The fastest epoch.
    pub best: f64,
    /// The median epoch.
    pub median: f64,
    /// Rows per second at the median.
    pub samples_per_sec: f64,
    /// GFLOP/s at the median (4·N·D·K per epoch).
    pub gflops: f64,
    /// GB/s of X read once per epoch, at the median.
    pub x_gb_per_sec: f64,
}

impl Timing {
    /// Figures of `case` from the epochs' wall seconds.
    pub fn of(case: &Case, epoch_seconds: Vec<f64>) -> Result<Self> {
        if epoch_seconds.is_empty() {
            return Err(Error::Internal("no epoch was timed".into()));
        }
        let mut sorted = epoch_seconds.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2].max(1e-12);
        Ok(Timing {
            best: sorted[0],
            median,
            samples_per_sec: case.n as f64 / median,
            gflops: case.flops() / median / 1e9,
            x_gb_per_sec: case.x_bytes() as f64 / median / 1e9,
            epoch_seconds,
        })
    }
}

/// One epoch of plain SGD (lr 0.01, the data's order) over the held set, its sums read back at the end.
pub fn run_epoch(backend: &mut dyn Backend, set: Held, batch: usize) -> Result<()> {
    let update = Update {
        optimizer: Optimizer::Sgd,
        lr: 0.01,
        l2: 0.0,
        l1: 0.0,
    };
    let batch = batch.min(set.len()).max(1);
    let order = set.order(0, 0, false);
    for rows in order.chunks(batch) {
        backend.accumulate(&Batch::held(set, rows)?)?;
        backend.update(&update)?;
    }
    let sums = backend.take_sums()?;
    if !sums.mean_loss().is_finite() {
        return Err(Error::Internal(format!(
            "bench epoch diverged on {}",
            backend.device()
        )));
    }
    Ok(())
}

/// Runs one warm-up epoch and then `epochs` timed epochs of plain SGD (lr 0.01, the data's order) over the held set,
/// and returns each timed epoch's wall seconds. The epoch's sums are read back before its clock stops.
pub fn time_epochs(
    backend: &mut dyn Backend,
    set: Held,
    batch: usize,
    epochs: usize,
) -> Result<Vec<f64>> {
    let mut seconds = Vec::with_capacity(epochs);
    for e in 0..=epochs {
        let start = Instant::now();
        run_epoch(backend, set, batch)?;
        let t = start.elapsed().as_secs_f64();
        if e > 0 {
            seconds.push(t);
        }
    }
    Ok(seconds)
}

/// What an adapter can do at best, measured by two small kernels.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ceilings {
    /// Streaming read of one large buffer, GB/s.
    pub read_gb_per_sec: f64,
    /// Independent vec4 FMAs, GFLOP/s.
    pub fma_gflops: f64,
}

/// Measures the ceilings of `ctx`'s adapter: a read of up to 256 MiB (within its binding limit; more than four times
/// the last-level cache of the cards we know, an H200's 60 MB L2 the largest) by 4,096 workgroups — enough loads in
/// flight to cover a card's memory latency — repeated until the dispatch takes ≥ 20 ms, so that submitting and
/// waiting do not count; and FMA rounds of 2,048 workgroups scaled until the dispatch takes ≥ 50 ms; the better of
/// two runs each.
pub fn ceilings(ctx: &crate::gpu::GpuContext) -> Result<Ceilings> {
    use crate::gpu::ops;
    let bytes = ctx
        .limits
        .max_storage_buffer_binding_size
        .clamp(1 << 20, 256 << 20);
    let data = vec![1.0f32; (bytes / 4) as usize / 4 * 4];
    let groups = 4096;
    let mut passes = 1u32;
    let mut read = ops::ceiling_read(ctx, &data, groups, passes)?.1;
    while read < 0.02 && passes < (1 << 12) {
        passes *= 4;
        read = ops::ceiling_read(ctx, &data, groups, passes)?.1;
    }
    read = read.min(ops::ceiling_read(ctx, &data, groups, passes)?.1);
    // 2,048 workgroups of 64: enough warps on each of a large card's multiprocessors to issue an FMA every cycle
    // (256 filled an H200's 132 to under half: 31 TFLOP/s where its fp32 datasheet says about 67).
    let fma_groups = 2048u32;
    let mut rounds = 256u32;
    let mut fma = ops::ceiling_fma(ctx, fma_groups, rounds)?.1;
    while fma < 0.05 && rounds < (1 << 22) {
        rounds *= 4;
        fma = ops::ceiling_fma(ctx, fma_groups, rounds)?.1;
    }
    fma = fma.min(ops::ceiling_fma(ctx, fma_groups, rounds)?.1);
    let flops = f64::from(fma_groups) * 64.0 * f64::from(rounds) * 64.0;
    Ok(Ceilings {
        read_gb_per_sec: (data.len() * 4) as f64 * f64::from(passes) / read.max(1e-12) / 1e9,
        fma_gflops: flops / fma.max(1e-12) / 1e9,
    })
}

/// What the CPU path can do at best on this machine with rayon's threads: a streaming read of 256 MiB (more than
/// any cache) summed in parallel, and faer's product of two 1,024 × 1,024 matrices split over the threads; the
/// better of three runs each.
pub fn cpu_ceilings() -> Ceilings {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, Mat, Par};
    use rayon::prelude::*;
    let data = vec![1.0f32; 64 << 20];
    let mut read = f64::INFINITY;
    for _ in 0..3 {
        let start = std::time::Instant::now();
        // Sixteen running sums per chunk: independent additions that vectorise and keep the loads in flight.
        let total: f32 = data
            .par_chunks(1 << 16)
            .map(|c| {
                let mut acc = [0.0f32; 16];
                for v in c.chunks_exact(16) {
                    for (a, x) in acc.iter_mut().zip(v) {
                        *a += *x;
                    }
                }
                acc.iter().sum::<f32>()
            })
            .sum();
        read = read.min(start.elapsed().as_secs_f64());
        std::hint::black_box(total);
    }
    let n = 1024;
    let a = Mat::<f32>::from_fn(n, n, |i, j| ((i * 7 + j * 3) % 13) as f32);
    let b = Mat::<f32>::from_fn(n, n, |i, j| ((i * 5 + j) % 11) as f32);
    let mut c = Mat::<f32>::zeros(n, n);
    let threads = rayon::current_num_threads();
    let mut fma = f64::INFINITY;
    for _ in 0..3 {
        let start = std::time::Instant::now();
        matmul(
            c.as_mut(),
            Accum::Replace,
            a.as_ref(),
            b.as_ref(),
            1.0,
            Par::rayon(threads),
        );
        fma = fma.min(start.elapsed().as_secs_f64());
    }
    std::hint::black_box(&c);
    Ceilings {
        read_gb_per_sec: (data.len() * 4) as f64 / read.max(1e-12) / 1e9,
        fma_gflops: 2.0 * (n * n * n) as f64 / fma.max(1e-12) / 1e9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::FastCpu;
    use crate::train::Shape;

    #[test]
    fn figures_follow_from_the_shape_and_the_median() {
        let case = Case {
            n: 1000,
            d: 10,
            k: 5,
            batch: 100,
            nnz: None,
        };
        let t = Timing::of(&case, vec![0.3, 0.1, 0.2]).unwrap();
        assert_eq!((t.best, t.median), (0.1, 0.2));
        assert!((t.samples_per_sec - 5000.0).abs() < 1e-9);
        assert!((t.gflops - 4.0 * 1000.0 * 10.0 * 5.0 / 0.2 / 1e9).abs() < 1e-12);
        assert_eq!(case.steps(), 10);
        assert!(Timing::of(&case, vec![]).is_err());
    }

    #[test]
    fn epochs_are_timed_after_a_warm_up() {
        let data = crate::data::synthetic(300, 8, 3, 1).unwrap();
        let mut source = data.into_source().unwrap();
        let mut cpu = FastCpu::new(Shape { d: 8, k: 3 }).unwrap();
        let set = cpu.hold(&mut source).unwrap();
        let s = time_epochs(&mut cpu, set, 64, 2).unwrap();
        assert_eq!(s.len(), 2);
        // One warm-up and two timed epochs of 5 steps each.
        assert_eq!(cpu.optimizer_state().unwrap().steps, 15);
    }
}
