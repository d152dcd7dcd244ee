//! The fast CPU trainer (`--device cpu`, f32): the same step as the reference [`super::CpuBackend`], organised for
//! speed. A batch is cut into blocks of [`BLOCK`] rows; each block's rows are multiplied by W (Z = X·W + b), turned
//! into the residual R = softmax(Z) − onehot(y) in place, and multiplied back (Gᵀ += Rᵀ·X) while they are still in
//! cache, so X is read from memory once per step. A block's rows are read where they lie when they follow each other
//! in memory (a host chunk, or held rows in order) and copied into the lane's tile otherwise (a shuffled batch).
//! Blocks are dealt to a fixed number of lanes ([`LANES`], or fewer for small batches: a function of the batch size
//! only) that run in parallel on rayon's pool; each lane sums its blocks in order and the lanes are added in lane
//! order, so the result is bitwise the same whatever the number of threads.
//!
//! Both products are faer's matrix product, on one thread each (`Par::Seq`): packed, cache-blocked and
//! register-tiled, with kernels for AVX-512, AVX2 + FMA and NEON chosen at run time. Measured against the hand-written
//! kernels this module had for the tall-skinny shape (two rows × a class group of vector accumulators along D), on
//! this machine's two cores, alternating runs: an epoch of 60,000 × 784 × 10 took 0.90–0.93× the time at batch
//! 256 and 4,096 and 0.88× at full batch, 200,000 × 256 × 32 at batch 4,096 0.80×, 20,000 × 784 × 200 at batch
//! 1,024 about 0.7×, and no shape tried (down to 8 features and 2 classes) was slower. matrixmultiply (ndarray's
//! product) ran these products at 0.75–0.85× faer's speed, without AVX-512. faer's product adds each element's
//! terms in an order fixed by the shapes and the machine, never by timing, so a run is bitwise reproducible on a
//! given machine; the softmax's exponentials are [`exp`], plain arithmetic the compiler vectorises.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rayon::prelude::*;

use super::simd::{add_into, AddInto, UpdateOp};
use super::HostSets;
use crate::data::{HostRows, RowSource};
use crate::error::{Error, Result};
use crate::train::{
    Backend, Batch, BatchRows, Gradient, Held, OptimizerState, Params, Shape, Sums, Update,
};

/// Rows per block: enough for the products' packing of W to pay (faer ran 1,024 × 784 · 784 × 200 at 0.93× its
/// 512-row speed with 64-row blocks, 0.98× with 128), few enough that a block of 784 features (392 KiB) stays in L2
/// between the two products and small batches still fill several lanes.
pub const BLOCK: usize = 128;
/// Most lanes: enough for the cores of a large machine; each holds one D × K partial gradient.
pub const LANES: usize = 16;

/// One lane's scratch and partial sums.
#[derive(Debug)]
struct Lane {
    /// A block's rows copied together, [BLOCK, d], when they do not follow each other in memory.
    xb: Vec<f32>,
    /// Logits, then residuals, [BLOCK, k].
    z: Vec<f32>,
    /// Partial Gᵀ, [k, d].
    gt: Vec<f32>,
    gb: Vec<f32>,
    /// The labels of the block's rows.
    y: Vec<u32>,
    loss: f64,
    hits: f64,
}

impl Lane {
    fn new(shape: Shape) -> Self {
        let Shape { d, k } = shape;
        Lane {
            xb: vec![0.0; BLOCK * d],
            z: vec![0.0; BLOCK * k],
            gt: vec![0.0; k * d],
            gb: vec![0.0; k],
            y: vec![0; BLOCK],
            loss: 0.0,
            hits: 0.0,
        }
    }
}

/// Where a batch's rows are: a held set by index, or consecutive host rows.
#[derive(Clone, Copy)]
enum Rows<'a> {
    Held(&'a HostRows, &'a [u32]),
    Host(ArrayView2<'a, f32>, &'a [u32]),
}

impl<'a> Rows<'a> {
    fn len(&self) -> usize {
        match self {
            Rows::Held(_, idx) => idx.len(),
            Rows::Host(_, y) => y.len(),
        }
    }

    /// Rows `start..end` of the batch as one row-major slice, when they follow each other in memory.
    fn consecutive(&self, start: usize, end: usize) -> Option<&'a [f32]> {
        let (x, first) = match *self {
            Rows::Held(h, idx) => {
                let at = &idx[start..end];
                let p = *at.first()? as usize;
                if at.iter().enumerate().any(|(i, &q)| q as usize != p + i) {
                    return None;
                }
                (h.x(), p)
            }
            Rows::Host(x, _) => (x, start),
        };
        x.slice_move(ndarray::s![first..first + (end - start), ..])
            .to_slice()
    }

    /// Row `r` of the batch and its label.
    #[inline(always)]
    fn row(&self, r: usize) -> (ndarray::ArrayView1<'a, f32>, u32) {
        match *self {
            Rows::Held(h, idx) => {
                let p = idx[r] as usize;
                (h.x().index_axis_move(Axis(0), p), h.y()[p])
            }
            Rows::Host(x, labels) => (x.index_axis_move(Axis(0), r), labels[r]),
        }
    }
}

/// The fast f32 CPU trainer. See the module documentation.
#[derive(Debug)]
pub struct FastCpu {
    shape: Shape,
    arch: pulp::Arch,
    held: HostSets,
    /// Wᵀ, [k, d].
    wt: Vec<f32>,
    b: Vec<f32>,
    /// Gradient sums Gᵀ, [k, d], and g_b.
    gt: Vec<f32>,
    gb: Vec<f32>,
    g_rows: u64,
    lanes: Vec<Lane>,
    sums: Sums,
    optimizer: OptimizerState,
    /// The optimizer's state slots, flat over W ([d, k] row-major) then b: the exported layout.
    slots: Vec<Vec<f32>>,
    /// Class weights, when set.
    cw: Option<Vec<f32>>,
}

impl FastCpu {
    /// A zero model of `shape`, after checking that its buffers (W, G and the lanes' partials) fit in memory.
    pub fn new(shape: Shape) -> Result<Self> {
        let what = format!(
            "a model of {} features × {} classes and its {LANES} partial gradients",
            shape.d, shape.k
        );
        let bytes = crate::error::checked_product(
            &what,
            &[
                shape.d as u64 + BLOCK as u64,
                shape.k as u64,
                4 * (LANES as u64 + 3),
            ],
        )?;
        crate::memory::check(&what, bytes)?;
        map_product_scratch();
        let Shape { d, k } = shape;
        Ok(FastCpu {
            shape,
            arch: pulp::Arch::new(),
            held: HostSets::default(),
            wt: vec![0.0; k * d],
            b: vec![0.0; k],
            gt: vec![0.0; k * d],
            gb: vec![0.0; k],
            g_rows: 0,
            lanes: (0..LANES).map(|_| Lane::new(shape)).collect(),
            sums: Sums::default(),
            optimizer: OptimizerState::default(),
            slots: Vec::new(),
            cw: None,
        })
    }

    /// A momentum or Adam step, element by element (the same expressions as the reference's, in f32).
    fn optimize(&mut self, u: &Update, rows: f32) -> Result<()> {
        let Shape { d, k } = self.shape;
        let (p, adam) = crate::cpu::StepParams::of(u, rows, self.optimizer.steps + 1)?
            .ok_or_else(|| Error::Internal("plain SGD has no optimizer state".into()))?;
        crate::cpu::ensure_slots(&mut self.slots, u.optimizer.slots().len(), d * k + k, 0.0)?;
        let (s1, rest) = self.slots.split_at_mut(1);
        let s2: &mut [f32] = rest.first_mut().map_or(&mut [], |v| v.as_mut_slice());
        // Wᵀ and Gᵀ are [k, d]: their [d, k] views, for the mirror of the update kernels, whose order of operations
        // (W by j then c, then b) is the one this trainer's state needs.
        let as_view = |e: ndarray::ShapeError| Error::Internal(e.to_string());
        let g = ArrayView2::from_shape((k, d), &self.gt[..])
            .map_err(as_view)?
            .reversed_axes();
        let w = ndarray::ArrayViewMut2::from_shape((k, d), &mut self.wt[..])
            .map_err(as_view)?
            .reversed_axes();
        crate::cpu::optimizer_step(
            adam,
            g,
            ndarray::ArrayView1::from(&self.gb[..]),
            w,
            ndarray::ArrayViewMut1::from(&mut self.b[..]),
            &mut s1[0],
            s2,
            &p,
        );
        Ok(())
    }

    /// Forward pass over the batch (and, with `grad`, the gradient sums), lane by lane; then the lanes' sums are
    /// added in lane order.
    fn pass(&mut self, batch: &Batch<'_>, grad: bool) -> Result<()> {
        let FastCpu {
            shape,
            arch,
            held,
            wt,
            b,
            gt,
            gb,
            g_rows,
            lanes,
            sums,
            cw,
            ..
        } = self;
        let arch = *arch;
        let rows = rows_of(held, *shape, batch)?;
        let n = rows.len();
        let blocks = n.div_ceil(BLOCK);
        let used = blocks.min(LANES);
        let model = Model {
            wt,
            b,
            shape: *shape,
            cw: cw.as_deref(),
            sw: batch.weights(),
        };
        lanes[..used]
            .par_iter_mut()
            .enumerate()
            .for_each(|(l, lane)| {
                arch.dispatch(LaneOp {
                    lane,
                    rows,
                    model: &model,
                    at: (l, used, blocks),
                    grad,
                })
            });
        let (mut loss, mut hits) = (0.0, 0.0);
        let fresh = *g_rows == 0;
        for (l, lane) in lanes[..used].iter().enumerate() {
            if grad {
                if l == 0 && fresh {
                    gt.copy_from_slice(&lane.gt);
                    gb.copy_from_slice(&lane.gb);
                } else {
                    arch.dispatch(AddInto(gt, &lane.gt));
                    add_into(gb, &lane.gb);
                }
            }
            loss += lane.loss;
            hits += lane.hits;
        }
        sums.add(loss, hits, n);
        if grad {
            *g_rows += n as u64;
        }
        Ok(())
    }
}

/// Runs one small product on every rayon worker and on this thread, the threads that multiply: faer's x86 kernels
/// map their per-thread packing scratch (two last-level caches, [`crate::memory::product_scratch_bytes`]) on a
/// thread's first product. Mapped now, while the run has taken little, it is in place before the memory budget is
/// measured instead of being the allocation that meets a `ulimit -d` or `-v` in the middle of a run (an abort).
fn map_product_scratch() {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        // 32³ is above faer's threshold for its small-matrix kernels, so the packing kernels run.
        let one = || {
            let a = [0.0f32; 32 * 32];
            let mut c = [0.0f32; 32 * 32];
            let a = MatRef::from_row_major_slice(&a, 32, 32);
            matmul(
                MatMut::from_row_major_slice_mut(&mut c, 32, 32),
                Accum::Replace,
                a,
                a,
                1.0,
                Par::Seq,
            );
        };
        rayon::broadcast(|_| one());
        one();
        crate::memory::scratch_mapped();
    });
}

/// The weights a lane reads.
struct Model<'a> {
    /// Wᵀ, [k, d].
    wt: &'a [f32],
    b: &'a [f32],
    shape: Shape,
    /// Class weights, when set.
    cw: Option<&'a [f32]>,
    /// The batch's row weights, in its order, when it has them.
    sw: Option<&'a [f32]>,
}

// The operations compiled for the machine's instruction set. pulp inlines `with_simd` into a function with the
// target features enabled, so everything it calls must be `#[inline(always)]` (a closure would not be: its call
// shim stays outside, and `mul_add` there becomes a library call). faer's products dispatch on their own.

/// One lane's blocks.
struct LaneOp<'a, 'b> {
    lane: &'a mut Lane,
    rows: Rows<'b>,
    model: &'a Model<'b>,
    at: (usize, usize, usize),
    grad: bool,
}

impl pulp::WithSimd for LaneOp<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        run_lane(self.lane, self.rows, self.model, self.at, self.grad)
    }
}

/// Where the rows of `batch` are.
fn rows_of<'a>(held: &'a HostSets, shape: Shape, batch: &'a Batch<'_>) -> Result<Rows<'a>> {
    shape.check_batch(batch)?;
    Ok(match batch.rows() {
        BatchRows::Held { set, rows } => Rows::Held(held.get(*set)?, rows),
        BatchRows::Host(chunk) => Rows::Host(chunk.x(), chunk.y()),
    })
}

/// One lane: blocks `l, l + used, l + 2·used, …` of the batch, in order. Per block: Z = X_b·W, plus b; the residual
/// in place (with the block's loss and hits); Gᵀ += Rᵀ·X_b and g_b += Σ_rows R. Gᵀ is not cleared: the lane's first
/// block replaces it instead of adding to it.
#[inline(always)]
fn run_lane(
    lane: &mut Lane,
    rows: Rows<'_>,
    m: &Model<'_>,
    (l, used, blocks): (usize, usize, usize),
    grad: bool,
) {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};
    let n = rows.len();
    let Shape { d, k } = m.shape;
    lane.gb.fill(0.0);
    lane.loss = 0.0;
    lane.hits = 0.0;
    let w = MatRef::from_row_major_slice(m.wt, k, d).transpose();
    for blk in (l..blocks).step_by(used) {
        let (start, end) = (blk * BLOCK, ((blk + 1) * BLOCK).min(n));
        let mr = end - start;
        for (i, r) in (start..end).enumerate() {
            lane.y[i] = rows.row(r).1;
        }
        let xm = match rows.consecutive(start, end) {
            Some(x) => MatRef::from_row_major_slice(x, mr, d),
            None => {
                // A memcpy a row: an element-wise loop here compiled to one scalar store a float (a third of a
                // shuffled epoch at 60,000 × 784 × 10, batch 256).
                for (dst, r) in lane.xb.chunks_exact_mut(d).zip(start..end) {
                    let row = rows.row(r).0;
                    match row.as_slice() {
                        Some(src) => dst.copy_from_slice(src),
                        None => dst.iter_mut().zip(row.iter()).for_each(|(a, s)| *a = *s),
                    }
                }
                MatRef::from_row_major_slice(&lane.xb[..mr * d], mr, d)
            }
        };
        let z = &mut lane.z[..mr * k];
        let zm = MatMut::from_row_major_slice_mut(&mut *z, mr, k);
        matmul(zm, Accum::Replace, xm, w, 1.0f32, Par::Seq);
        for row in z.chunks_exact_mut(k) {
            row.iter_mut().zip(m.b).for_each(|(v, b)| *v += *b);
        }
        let zview = ndarray::ArrayViewMut2::from_shape((mr, k), &mut *z).expect("rows × k logits");
        let sw = m.sw.map(|w| &w[start..end]);
        let (loss, hits) = residual_rows(zview, &lane.y[..mr], m.cw, sw);
        lane.loss += loss;
        lane.hits += hits;
        if grad {
            let acc = if blk == l { Accum::Replace } else { Accum::Add };
            let g = MatMut::from_row_major_slice_mut(&mut lane.gt[..], k, d);
            matmul(
                g,
                acc,
                MatRef::from_row_major_slice(&*z, mr, k).transpose(),
                xm,
                1.0f32,
                Par::Seq,
            );
            for row in z.chunks_exact(k) {
                add_into(&mut lane.gb, row);
            }
        }
    }
}

/// e^x for x ≤ 0 (a logit minus its row's maximum), within 2 ulp of `f32::exp` (tested), from plain multiplications
/// and additions that vectorise: x = n·ln 2 + r with n = round(x·log₂e) and |r| ≤ ln 2 / 2 (ln 2 in two parts, as
/// Cephes' expf), e^r by Cephes' degree-6 polynomial, times 2ⁿ built from its exponent bits. Below −87.3 (e^x under
/// f32's least normal) it returns 0; softmax terms that small change no sum they are added to.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2²³: adding and subtracting it rounds to the nearest integer (ties to even) for |t| < 2²².
    const ROUND: f32 = 12_582_912.0;
    // Comparisons that let a NaN through (`max` would turn it into −87.3), so a diverged model still shows NaN.
    let t = if x < -87.3 { -87.3 } else { x };
    let big = t * LOG2E + ROUND;
    let n = big - ROUND;
    // n as an integer, from the bits of `big` (whose low mantissa bits hold it): no float-to-int conversion.
    let ni = (big.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = (t - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201e-1, 0.5 in f32
    let e = (p * r) * r + r + 1.0;
    // 2ⁿ for n in −126..=0; at the clamp n = −126 and the product is about 1e-38, flushed to 0 just below.
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    if x < -87.3 {
        0.0
    } else {
        e * scale
    }
}

/// Replaces each row of logits by its residual softmax(z) − onehot(y) (max subtracted first; times the class weight of
/// y when there are class weights) and returns the block's Σ loss (logsumexp − z_y, weighted likewise) and Σ hits
/// (argmax = y, first maximum on ties), as the reference mirrors compute them.
#[inline(always)]
pub(crate) fn residual_rows(
    mut z: ndarray::ArrayViewMut2<f32>,
    y: &[u32],
    cw: Option<&[f32]>,
    sw: Option<&[f32]>,
) -> (f64, f64) {
    let (mut loss, mut hits) = (0.0f64, 0.0f64);
    let weights = crate::cpu::Weights { class: cw, row: sw };
    for (i, (mut row, &label)) in z.outer_iter_mut().zip(y).enumerate() {
        let row = row.as_slice_mut().expect("rows of a standard-layout block");
        let (mut m, mut arg) = (row[0], 0usize);
        for (c, &v) in row.iter().enumerate().skip(1) {
            if v > m {
                m = v;
                arg = c;
            }
        }
        let zy = row[label as usize];
        // The exponentials first (a loop without a carried sum, which the compiler vectorises), then their sum in
        // class order.
        for v in row.iter_mut() {
            *v = exp(*v - m);
        }
        let mut sum = 0.0f32;
        for v in row.iter() {
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
        row[label as usize] -= 1.0;
        let l = (m + sum.ln()) - zy;
        match weights.of(i, label as usize) {
            Some(w) => {
                row.iter_mut().for_each(|v| *v *= w);
                loss += f64::from(l * w);
            }
            None => loss += f64::from(l),
        }
        hits += f64::from(u8::from(arg == label as usize));
    }
    (loss, hits)
}

impl Backend for FastCpu {
    fn device(&self) -> String {
        format!("cpu (f32, {} threads)", rayon::current_num_threads())
    }

    fn shape(&self) -> Shape {
        self.shape
    }

    fn max_batch(&self) -> usize {
        crate::limits::MAX_BATCH
    }

    fn hold(&mut self, source: &mut dyn RowSource) -> Result<Held> {
        self.held.hold(self.shape, source)
    }

    fn release(&mut self, set: Held) -> Result<()> {
        self.held.release(set)
    }

    fn accumulate(&mut self, batch: &Batch<'_>) -> Result<()> {
        self.pass(batch, true)
    }

    fn forward(&mut self, batch: &Batch<'_>) -> Result<()> {
        self.pass(batch, false)
    }

    fn update(&mut self, u: &Update) -> Result<()> {
        if self.g_rows == 0 {
            return Err(Error::Internal(
                "update without accumulated gradient sums".into(),
            ));
        }
        let rows = self.g_rows as f32;
        if u.optimizer != crate::train::Optimizer::Sgd {
            self.optimize(u, rows)?;
            self.g_rows = 0;
            self.optimizer.steps += 1;
            return Ok(());
        }
        let (lr, l2) = (u.lr, u.l2);
        self.arch.dispatch(UpdateOp {
            w: &mut self.wt,
            g: &self.gt,
            b: &mut self.b,
            gb: &self.gb,
            lr,
            l2,
            l1: u.l1,
            rows,
        });
        self.g_rows = 0;
        self.optimizer.steps += 1;
        Ok(())
    }

    fn take_gradient(&mut self) -> Result<Gradient> {
        let rows = std::mem::take(&mut self.g_rows);
        let Shape { d, k } = self.shape;
        if rows == 0 {
            return Ok(Gradient::zeros(self.shape));
        }
        Ok(Gradient {
            w: Array2::from_shape_fn((d, k), |(j, c)| f64::from(self.gt[c * d + j])),
            b: self.gb.iter().map(|&v| f64::from(v)).collect(),
            rows,
        })
    }

    fn set_gradient(&mut self, g: &Gradient) -> Result<()> {
        let d = self.shape.d;
        g.check(self.shape)?;
        for ((j, c), &v) in g.w.indexed_iter() {
            self.gt[c * d + j] = v as f32;
        }
        self.gb = g.b.iter().map(|&v| v as f32).collect();
        self.g_rows = g.rows;
        Ok(())
    }

    fn take_sums(&mut self) -> Result<Sums> {
        Ok(std::mem::take(&mut self.sums))
    }

    fn set_sums(&mut self, sums: Sums) -> Result<()> {
        self.sums = sums;
        Ok(())
    }

    fn params(&mut self) -> Result<Params> {
        let Shape { d, k } = self.shape;
        Ok(Params {
            w: Array2::from_shape_fn((d, k), |(j, c)| self.wt[c * d + j]),
            b: Array1::from(self.b.clone()),
        })
    }

    fn set_params(&mut self, p: &Params) -> Result<()> {
        p.check(self.shape)?;
        let d = self.shape.d;
        for ((j, c), &v) in p.w.indexed_iter() {
            self.wt[c * d + j] = v;
        }
        self.b
            .copy_from_slice(p.b.as_slice().unwrap_or(&p.b.to_vec()));
        Ok(())
    }

    fn set_class_weights(&mut self, weights: Option<&[f32]>) -> Result<()> {
        if let Some(w) = weights {
            crate::train::check_class_weights(self.shape, w)?;
        }
        self.cw = weights.map(<[f32]>::to_vec);
        Ok(())
    }

    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        Ok(crate::train::state_of(self.optimizer.steps, &self.slots))
    }

    fn set_optimizer_state(&mut self, s: &OptimizerState) -> Result<()> {
        s.check(self.shape)?;
        self.optimizer.steps = s.steps;
        self.slots = s.tensors.iter().map(|(_, _, v)| v.clone()).collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::exp;

    /// Distance in units in the last place between two positive floats.
    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_library_exp_where_softmax_uses_it() {
        // Every 97th float of [−87.3, 0] (about 11 million values), and the edges.
        let (lo, hi) = (0f32.to_bits(), 87.3f32.to_bits());
        let mut worst = (0, 0.0f32);
        for bits in (lo..=hi).step_by(97).chain([hi, 1, 0]) {
            let x = f32::from_bits(bits | 0x8000_0000);
            let u = ulps(exp(x), x.exp());
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(worst.0 <= 2, "{} ulp at x = {:e}", worst.0, worst.1);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert_eq!(exp(-88.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
    }
}
