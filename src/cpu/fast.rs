//! The fast CPU trainer (`--device cpu`, f32): the same step as the reference [`super::CpuBackend`], organised for
//! speed. A batch is cut into blocks of [`BLOCK`] rows; each block's rows are multiplied by W (Z = X·W + b), turned
//! into the residual R = softmax(Z) − onehot(y) in place, and multiplied back (G += Xᵀ·R) while they are still in
//! cache, so X is read from memory once per step. Rows whose length is a whole number of vectors (D a multiple of
//! 16: 64, 256, 784 …) are read where they lie, shuffled or not; others are copied into a zero-padded tile. Blocks are dealt to a fixed number of
//! lanes ([`LANES`], or fewer for small batches: a function of the batch size only) that run in parallel on rayon's
//! pool; each lane sums its blocks in order and the lanes are added in lane order, so the result is bitwise the same
//! whatever the number of threads.
//!
//! The products are written for the tall-skinny shape (K ≪ D ≪ B) rather than handed to a general GEMM, which
//! packs both operands on every call and pads K = 10 to its 8- or 16-wide register tile (ndarray's matrixmultiply
//! did the same epoch in 38–50 ms where these kernels take 28–35 ms, measured side by side). W and G are kept
//! transposed (K × D, rows padded with zeros to a multiple of 8), so both products run along D in 8-float lanes:
//!
//! * forward: two rows × a group of up to 8 classes of vector accumulators, z = Σ_lanes, reduced in a fixed order;
//! * backward: rank-1 updates Gᵀ[c] += Σ_q r[q, c]·x[q] over four rows at a time, element by element.
//!
//! The kernels are written with pulp's portable vector types and compiled for the machine's best instruction set
//! (AVX2 + FMA where present, scalar elsewhere) by its runtime dispatch, which keeps this crate free of `unsafe`.
//! Every addition has a fixed place in a fixed order, so a run is bitwise reproducible on a given machine.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rayon::prelude::*;

use super::HostSets;
use crate::data::{HostRows, RowSource};
use crate::error::{Error, Result};
use crate::train::{
    Backend, Batch, BatchRows, Gradient, Held, OptimizerState, Params, Shape, Sums, Update,
};

/// Rows per block: a tile of 64 rows of X stays in L2 between the forward and the backward product.
pub const BLOCK: usize = 64;
/// Most lanes: enough for the cores of a large machine; each holds one D × K partial gradient.
pub const LANES: usize = 16;

/// Rows of W and X are padded with zeros to a multiple of this many floats: whole vectors of every width pulp
/// dispatches to (8 with AVX2, 16 with AVX-512), so no kernel has a tail along D.
const L: usize = 16;

/// The padded sizes the kernels work on: `dp` = d rounded up to [`L`], `kp` = k rounded up to the class group `cb`.
#[derive(Debug, Clone, Copy)]
struct Dims {
    d: usize,
    k: usize,
    dp: usize,
    kp: usize,
    cb: usize,
}

impl Dims {
    fn of(shape: Shape) -> Self {
        // Classes per forward group: two rows × `cb` accumulators plus the operands must fit the 16 vector registers
        // of AVX2, so at most 6; all of them when k ≤ 6, else the group of 4..=6 that pads k least (the larger on a
        // tie): k = 10 → 5, k = 32 → 4, k = 100 → 5.
        let cb = if shape.k <= 6 {
            shape.k
        } else {
            (4..=6)
                .rev()
                .min_by_key(|&c| shape.k.next_multiple_of(c) - shape.k)
                .unwrap_or(4)
        };
        Dims {
            d: shape.d,
            k: shape.k,
            dp: shape.d.next_multiple_of(L),
            kp: shape.k.next_multiple_of(cb),
            cb,
        }
    }
}

/// One lane's scratch and partial sums.
#[derive(Debug)]
struct Lane {
    /// Gathered rows, [BLOCK, dp]; the padding columns stay zero.
    xb: Vec<f32>,
    /// Logits, then residuals, [BLOCK, k].
    z: Vec<f32>,
    /// The residuals with classes padded by zeros to `kp`, [BLOCK, kp], for the gradient's class groups.
    rp: Vec<f32>,
    /// Partial Gᵀ, [kp, dp].
    gt: Vec<f32>,
    gb: Vec<f32>,
    loss: f64,
    hits: f64,
}

impl Lane {
    fn new(dims: Dims) -> Self {
        Lane {
            xb: vec![0.0; BLOCK * dims.dp],
            z: vec![0.0; BLOCK * dims.k],
            gt: vec![0.0; dims.kp * dims.dp],
            gb: vec![0.0; dims.k],
            rp: vec![0.0; BLOCK * dims.kp],
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
    dims: Dims,
    arch: pulp::Arch,
    held: HostSets,
    /// Wᵀ, [kp, dp], zero outside [k, d].
    wt: Vec<f32>,
    b: Vec<f32>,
    /// Gradient sums Gᵀ, [kp, dp], and g_b.
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
        let dims = Dims::of(shape);
        Ok(FastCpu {
            shape,
            dims,
            arch: pulp::Arch::new(),
            held: HostSets::default(),
            wt: vec![0.0; dims.kp * dims.dp],
            b: vec![0.0; shape.k],
            gt: vec![0.0; dims.kp * dims.dp],
            gb: vec![0.0; shape.k],
            g_rows: 0,
            lanes: (0..LANES).map(|_| Lane::new(dims)).collect(),
            sums: Sums::default(),
            optimizer: OptimizerState::default(),
            slots: Vec::new(),
            cw: None,
        })
    }

    /// A momentum or Adam step, element by element (the same expressions as the reference's, in f32).
    fn optimize(&mut self, u: &Update, rows: f32) -> Result<()> {
        let Dims { d, k, kp, dp, .. } = self.dims;
        let (p, adam) = crate::cpu::StepParams::of(u, rows, self.optimizer.steps + 1)?
            .ok_or_else(|| Error::Internal("plain SGD has no optimizer state".into()))?;
        crate::cpu::ensure_slots(&mut self.slots, u.optimizer.slots().len(), d * k + k, 0.0)?;
        let (s1, rest) = self.slots.split_at_mut(1);
        let s2: &mut [f32] = rest.first_mut().map_or(&mut [], |v| v.as_mut_slice());
        // Wᵀ and Gᵀ are [kp, dp], padded: their [d, k] views, for the mirror of the update kernels, whose order of
        // operations (W by j then c, then b) is the one this trainer's state needs.
        let as_view = |e: ndarray::ShapeError| Error::Internal(e.to_string());
        let g = ArrayView2::from_shape((kp, dp), &self.gt[..])
            .map_err(as_view)?
            .slice_move(ndarray::s![..k, ..d])
            .reversed_axes();
        let w = ndarray::ArrayViewMut2::from_shape((kp, dp), &mut self.wt[..])
            .map_err(as_view)?
            .slice_move(ndarray::s![..k, ..d])
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
            dims,
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
        let (dims, arch) = (*dims, *arch);
        let rows = rows_of(held, *shape, batch)?;
        let n = rows.len();
        let blocks = n.div_ceil(BLOCK);
        let used = blocks.min(LANES);
        let model = Model {
            wt,
            b,
            dims,
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

/// The weights a lane reads.
struct Model<'a> {
    wt: &'a [f32],
    b: &'a [f32],
    dims: Dims,
    /// Class weights, when set.
    cw: Option<&'a [f32]>,
    /// The batch's row weights, in its order, when it has them.
    sw: Option<&'a [f32]>,
}

#[inline(always)]
fn add_into(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += *s;
    }
}

// The operations compiled for the machine's instruction set. pulp inlines `with_simd` into a function with the
// target features enabled, so everything it calls must be `#[inline(always)]` (a closure would not be: its call
// shim stays outside, and `mul_add` there becomes a library call).

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
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let LaneOp {
            lane,
            rows,
            model: m,
            at,
            grad,
        } = self;
        // The class group is a const parameter of both products: chosen here once for the lane.
        match m.dims.cb {
            1 => run_lane::<S, 1>(simd, lane, rows, m, at, grad),
            2 => run_lane::<S, 2>(simd, lane, rows, m, at, grad),
            3 => run_lane::<S, 3>(simd, lane, rows, m, at, grad),
            4 => run_lane::<S, 4>(simd, lane, rows, m, at, grad),
            5 => run_lane::<S, 5>(simd, lane, rows, m, at, grad),
            6 => run_lane::<S, 6>(simd, lane, rows, m, at, grad),
            7 => run_lane::<S, 7>(simd, lane, rows, m, at, grad),
            _ => run_lane::<S, 8>(simd, lane, rows, m, at, grad),
        }
    }
}

/// dst += src.
struct AddInto<'a>(&'a mut [f32], &'a [f32]);

impl pulp::WithSimd for AddInto<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        add_into(self.0, self.1)
    }
}

/// W ← W − lr·(G/rows + l2·W) then the L1 proximal step, b ← b − lr·g_b/rows; the padding of Wᵀ and Gᵀ is zero
/// and stays zero.
struct UpdateOp<'a> {
    wt: &'a mut [f32],
    gt: &'a [f32],
    b: &'a mut [f32],
    gb: &'a [f32],
    lr: f32,
    l2: f32,
    l1: f32,
    rows: f32,
}

impl pulp::WithSimd for UpdateOp<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let (lr, l2, rows) = (self.lr, self.l2, self.rows);
        let t = lr * self.l1;
        for (w, &g) in self.wt.iter_mut().zip(self.gt) {
            *w = crate::cpu::shrink(*w - lr * (g / rows + l2 * *w), t);
        }
        for (b, &g) in self.b.iter_mut().zip(self.gb) {
            *b -= lr * (g / rows);
        }
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

/// One lane: blocks `l, l + used, l + 2·used, …` of the batch, in order.
#[inline(always)]
fn run_lane<S: pulp::Simd, const CB: usize>(
    simd: S,
    lane: &mut Lane,
    rows: Rows<'_>,
    m: &Model<'_>,
    (l, used, blocks): (usize, usize, usize),
    grad: bool,
) {
    let (n, dims) = (rows.len(), m.dims);
    // Gᵀ is not cleared: the lane's first block starts its sums from zero instead (`first`), and writes all of it.
    lane.gb.fill(0.0);
    lane.loss = 0.0;
    lane.hits = 0.0;
    let mut y = [0u32; BLOCK];
    // Rows already a whole number of vectors wide are read where they lie; others are copied into the padded tile.
    let direct = dims.dp == dims.d;
    for blk in (l..blocks).step_by(used) {
        let (start, end) = (blk * BLOCK, ((blk + 1) * BLOCK).min(n));
        let rows_here = end - start;
        let mut refs: [Option<&[f32]>; BLOCK] = [None; BLOCK];
        for (i, r) in (start..end).enumerate() {
            let (row, label) = rows.row(r);
            y[i] = label;
            match row.to_slice().filter(|_| direct) {
                Some(slice) => refs[i] = Some(slice),
                None => {
                    let dst = &mut lane.xb[i * dims.dp..i * dims.dp + dims.d];
                    dst.iter_mut().zip(row.iter()).for_each(|(d, s)| *d = *s);
                }
            }
        }
        let xb = &lane.xb;
        let tile: [&[f32]; BLOCK] =
            std::array::from_fn(|i| refs[i].unwrap_or_else(|| &xb[i * dims.dp..(i + 1) * dims.dp]));
        let xb = &tile[..rows_here];
        let z = &mut lane.z[..rows_here * dims.k];
        logits::<S, CB>(simd, xb, m, z);
        let zview =
            ndarray::ArrayViewMut2::from_shape((rows_here, dims.k), z).expect("rows × k logits");
        let (loss, hits) =
            residual_rows(zview, &y[..rows_here], m.cw, m.sw.map(|w| &w[start..end]));
        lane.loss += loss;
        lane.hits += hits;
        if grad {
            let sums = (
                &mut lane.gt[..],
                &mut lane.gb[..],
                &mut lane.rp[..],
                blk == l,
            );
            grad_sums::<S, CB>(simd, xb, z, dims, sums);
        }
    }
}

/// z[i, c] = Σ_d x[i, d]·Wᵀ[c, d] + b[c] for a tile: two rows and `CB` classes at a time, each an accumulator of
/// the machine's vector width, reduced in pulp's fixed order. The class group is the outer loop, so its rows of Wᵀ
/// (`CB` × D floats: 15.7 KiB for 5 × 784) stay in L1 while the tile's rows stream past from L2; with the row pair
/// outside, all of Wᵀ (31 KiB for K = 10) and the two rows competed for a 32 KiB L1 on every pair.
#[inline(always)]
fn logits<S: pulp::Simd, const CB: usize>(simd: S, xb: &[&[f32]], m: &Model<'_>, z: &mut [f32]) {
    let Dims { dp, k, kp, .. } = m.dims;
    let rows = xb.len();
    for c0 in (0..kp).step_by(CB) {
        let mut i = 0;
        while i < rows {
            // Two rows at a time; a last odd row is paired with itself and the copy discarded.
            let i1 = (i + 1).min(rows - 1);
            let (x0, _) = S::as_simd_f32s(&xb[i][..dp]);
            let (x1, _) = S::as_simd_f32s(&xb[i1][..dp]);
            let n = x0.len();
            let x1 = &x1[..n];
            let w: [&[S::f32s]; CB] =
                std::array::from_fn(|cc| &S::as_simd_f32s(&m.wt[(c0 + cc) * dp..][..dp]).0[..n]);
            let mut a0 = [simd.splat_f32s(0.0); CB];
            let mut a1 = [simd.splat_f32s(0.0); CB];
            for d in 0..n {
                let (p, q) = (x0[d], x1[d]);
                for cc in 0..CB {
                    a0[cc] = simd.mul_add_f32s(p, w[cc][d], a0[cc]);
                    a1[cc] = simd.mul_add_f32s(q, w[cc][d], a1[cc]);
                }
            }
            for cc in 0..CB {
                let c = c0 + cc;
                if c < k {
                    z[i * k + c] = simd.reduce_sum_f32s(a0[cc]) + m.b[c];
                    if i1 != i {
                        z[i1 * k + c] = simd.reduce_sum_f32s(a1[cc]) + m.b[c];
                    }
                }
            }
            i += 2;
        }
    }
}

/// Gᵀ[c] += Σ_i r[i, c]·x[i] and g_b[c] += Σ_i r[i, c] over a tile, register-blocked like the forward product: a
/// tile of `CB` classes × two vectors of features is loaded from Gᵀ into accumulators, takes the term of every row
/// of the block, and is stored once. So each vector of X is loaded once per class group (not once per class) and Gᵀ
/// once per block (not once per four rows). Each element is still summed from its old value in row order, as before.
/// `rp` is scratch for the block's residuals with classes padded to `kp` by zeros. With `first` (the lane's first
/// block) the sums start from zero instead of from Gᵀ, which then need not be cleared: fma(r, x, +0.0) is what adding
/// to a cleared Gᵀ gave, bit for bit.
#[inline(always)]
fn grad_sums<S: pulp::Simd, const CB: usize>(
    simd: S,
    xb: &[&[f32]],
    r: &[f32],
    dims: Dims,
    (gt, gb, rp, first): (&mut [f32], &mut [f32], &mut [f32], bool),
) {
    let Dims { dp, k, kp, .. } = dims;
    let rows = xb.len();
    if rows == 0 {
        return;
    }
    for (dst, src) in rp.chunks_exact_mut(kp).zip(r.chunks_exact(k)) {
        dst[..k].copy_from_slice(src);
        dst[k..].fill(0.0);
    }
    let rp = &rp[..rows * kp];
    let xs: [&[S::f32s]; BLOCK] = std::array::from_fn(|i| {
        xb.get(i)
            .map_or(&[][..], |row| S::as_simd_f32s(&row[..dp]).0)
    });
    let xs = &xs[..rows];
    let n = xs[0].len();
    for c0 in (0..kp).step_by(CB) {
        let mut d = 0;
        while d < n {
            // Two vectors of features, or the last one alone.
            let two = d + 1 < n;
            let e1 = if two { d + 1 } else { d };
            let mut a0 = [simd.splat_f32s(0.0); CB];
            let mut a1 = [simd.splat_f32s(0.0); CB];
            if !first {
                for cc in 0..CB {
                    let g = S::as_simd_f32s(&gt[(c0 + cc) * dp..][..dp]).0;
                    (a0[cc], a1[cc]) = (g[d], g[e1]);
                }
            }
            for (x, rr) in xs.iter().zip(rp.chunks_exact(kp)) {
                let x0 = x[d];
                let x1 = x[e1];
                let rr = &rr[c0..c0 + CB];
                for cc in 0..CB {
                    let rc = simd.splat_f32s(rr[cc]);
                    a0[cc] = simd.mul_add_f32s(rc, x0, a0[cc]);
                    a1[cc] = simd.mul_add_f32s(rc, x1, a1[cc]);
                }
            }
            for cc in 0..CB {
                let g = S::as_mut_simd_f32s(&mut gt[(c0 + cc) * dp..][..dp]).0;
                g[d] = a0[cc];
                if two {
                    g[d + 1] = a1[cc];
                }
            }
            d += 2;
        }
    }
    for i in 0..rows {
        add_into(gb, &r[i * k..(i + 1) * k]);
    }
}

/// Replaces each row of logits by its residual softmax(z) − onehot(y) (max subtracted first; times the class weight of
/// y when there are class weights) and returns the block's Σ loss (logsumexp − z_y, weighted likewise) and Σ hits
/// (argmax = y, first maximum on ties), as the reference mirrors compute them.
fn residual_rows(
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
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = (*v - m).exp();
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
            wt: &mut self.wt,
            gt: &self.gt,
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
        let Dims { d, k, dp, .. } = self.dims;
        if rows == 0 {
            return Ok(Gradient::zeros(self.shape));
        }
        Ok(Gradient {
            w: Array2::from_shape_fn((d, k), |(j, c)| f64::from(self.gt[c * dp + j])),
            b: self.gb.iter().map(|&v| f64::from(v)).collect(),
            rows,
        })
    }

    fn set_gradient(&mut self, g: &Gradient) -> Result<()> {
        let dp = self.dims.dp;
        g.check(self.shape)?;
        for ((j, c), &v) in g.w.indexed_iter() {
            self.gt[c * dp + j] = v as f32;
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
        let Dims { d, k, dp, .. } = self.dims;
        Ok(Params {
            w: Array2::from_shape_fn((d, k), |(j, c)| self.wt[c * dp + j]),
            b: Array1::from(self.b.clone()),
        })
    }

    fn set_params(&mut self, p: &Params) -> Result<()> {
        p.check(self.shape)?;
        let dp = self.dims.dp;
        for ((j, c), &v) in p.w.indexed_iter() {
            self.wt[c * dp + j] = v;
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
