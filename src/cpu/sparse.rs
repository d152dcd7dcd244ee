//! The fast sparse CPU trainer (`--device cpu`, f32, on LIBSVM and other sparse data): the step of the reference
//! [`super::CpuBackend`] over CSR rows, costing O(non-zeros · K) a step rather than O(D · K).
//!
//! * **Forward**: each row's logits z = b + Σ_e x_e · W[j_e, :], an AXPY of K floats per non-zero (W is [D, K]
//!   row-major, so a feature's weights are contiguous), then the residual in place; rows in blocks of [`ROWS`] on
//!   rayon's pool, each block's loss and hits added in block order.
//! * **Gradient**: G[j, :] += x_e · R[i, :] per non-zero, in row order. A batch with few non-zeros per feature (a
//!   minibatch) is summed on one lane straight into G, and the features it touched are listed; a batch with many (the
//!   full-batch objective L-BFGS calls) is cut into up to [`LANES`] ranges of rows, each summed into its own dense
//!   partial, and the partials are added in lane order. How many lanes depends on the batch only (its non-zeros and
//!   D), never on the thread count, so the sums are bitwise the same for any number of threads.
//! * **Update**: plain SGD without L1 touches only the listed features: W is held as `scale · V`, and the L2 decay
//!   every weight takes, W ← (1 − α·λ)·W, is one multiplication of `scale`; a touched feature's row then takes
//!   V[j, :] −= α/(B · scale) · G[j, :] (Bottou's and scikit-learn's `SGDClassifier` trick). Momentum, Adam and L1 move
//!   every weight each step, so they run densely (after `scale` is folded into V), as on the reference.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2};
use rayon::prelude::*;

use super::fast::residual_rows;
use super::simd::{AddInto, UpdateOp};
use super::{HostSet, HostSets};
use crate::data::{RowSource, SparseChunk, SparseRows};
use crate::error::{Error, Result};
use crate::train::{
    Backend, Batch, BatchRows, Gradient, Held, Optimizer, OptimizerState, Params, Shape, Sums,
    Update,
};

/// Rows per forward block.
pub const ROWS: usize = 256;
/// Most gradient lanes.
pub const LANES: usize = 16;
/// A batch gets one gradient lane per this many non-zeros per feature (D · this many non-zeros), so that a lane's
/// dense partial (D · K values cleared, then added) costs at most 1/16 of its products.
const NNZ_PER_FEATURE_PER_LANE: usize = 16;
/// At most this many bytes of dense partials, whatever the shape.
const PARTIAL_BYTES: usize = 256 << 20;
/// Below this `scale`, it is folded back into V (a dense pass) so that V's values stay far from f32's range limits.
const MIN_SCALE: f32 = 1e-6;

/// The fast sparse f32 CPU trainer. See the module documentation.
#[derive(Debug)]
pub struct SparseCpu {
    shape: Shape,
    arch: pulp::Arch,
    held: HostSets,
    /// W = scale · V, V [d, k] row-major.
    v: Vec<f32>,
    scale: f32,
    b: Vec<f32>,
    /// Gradient sums G [d, k] and g_b since the last update; the rows they sum (0: none).
    g: Vec<f32>,
    gb: Vec<f32>,
    g_rows: u64,
    /// The features whose rows of G may hold sums (each once, `marked` says which), unless `all`.
    touched: Vec<u32>,
    marked: Vec<bool>,
    all: bool,
    /// The lanes' dense partials of G for batches with many non-zeros, made on first use.
    partials: Vec<Vec<f32>>,
    /// The batch's logits, then residuals, [rows, k].
    z: Vec<f32>,
    sums: Sums,
    optimizer: OptimizerState,
    /// The optimizer's state slots, flat over W ([d, k] row-major) then b: the exported layout.
    slots: Vec<Vec<f32>>,
    /// Class weights, when set.
    cw: Option<Vec<f32>>,
}

impl SparseCpu {
    /// A zero model of `shape`, after checking that W, V's gradient and its marks fit in memory.
    pub fn new(shape: Shape) -> Result<Self> {
        let what = format!("a model of {} features × {} classes", shape.d, shape.k);
        let bytes = crate::error::checked_product(&what, &[shape.d as u64, shape.k as u64, 8])?;
        crate::memory::check(&what, bytes)?;
        let Shape { d, k } = shape;
        Ok(SparseCpu {
            shape,
            arch: pulp::Arch::new(),
            held: HostSets::default(),
            v: vec![0.0; d * k],
            scale: 1.0,
            b: vec![0.0; k],
            g: vec![0.0; d * k],
            gb: vec![0.0; k],
            g_rows: 0,
            touched: Vec::new(),
            marked: vec![false; d],
            all: false,
            partials: Vec::new(),
            z: Vec::new(),
            sums: Sums::default(),
            optimizer: OptimizerState::default(),
            slots: Vec::new(),
            cw: None,
        })
    }

    /// Gradient lanes for a batch of `nnz` non-zeros: a function of the batch and the shape only.
    fn lanes_for(&self, nnz: usize) -> usize {
        let Shape { d, k } = self.shape;
        let by_work = nnz / (d.max(1) * NNZ_PER_FEATURE_PER_LANE);
        let by_memory = PARTIAL_BYTES / (d * k * 4).max(1);
        by_work.min(by_memory).clamp(1, LANES)
    }

    /// V ← scale · V, scale ← 1.
    fn fold_scale(&mut self) {
        if self.scale != 1.0 {
            let s = self.scale;
            self.arch.dispatch(Scale(&mut self.v, s));
            self.scale = 1.0;
        }
    }

    /// Clears the sums of G (the touched rows, or all of it) and g_b.
    fn clear_gradient(&mut self) {
        let k = self.shape.k;
        if self.all {
            self.g.fill(0.0);
            self.marked.fill(false);
            self.all = false;
        } else {
            for &j in &self.touched {
                self.g[j as usize * k..][..k].fill(0.0);
                self.marked[j as usize] = false;
            }
        }
        self.touched.clear();
        self.gb.fill(0.0);
    }

    /// Forward pass over the batch and, with `grad`, the gradient sums.
    fn pass(&mut self, batch: &Batch<'_>, grad: bool) -> Result<()> {
        self.shape.check_batch(batch)?;
        let owned;
        let (rows, idx): (&SparseRows, Option<&[u32]>) = match batch.rows() {
            BatchRows::Held { set, rows } => match self.held.get_set(*set)? {
                HostSet::Sparse(s) => (s.as_ref(), Some(rows)),
                HostSet::Dense(h) => {
                    let (x, y) = super::gather::<f32>(rows, h.x(), h.y());
                    owned = self.as_sparse(x.view(), &y)?;
                    (&owned, None)
                }
            },
            BatchRows::Host(chunk) => {
                owned = self.as_sparse(chunk.x(), chunk.y())?;
                (&owned, None)
            }
        };
        let n = idx.map_or(rows.len(), <[u32]>::len);
        let at = |i: usize| idx.map_or(i, |p| p[i] as usize);
        let y: Vec<u32> = (0..n).map(|i| rows.y()[at(i)]).collect();
        let Shape { d, k } = self.shape;
        self.z.resize(n * k, 0.0);
        let sw = batch.weights();
        let model = Model {
            v: &self.v,
            scale: self.scale,
            b: &self.b,
            k,
            cw: self.cw.as_deref(),
        };
        let arch = self.arch;
        let blocks: Vec<(f64, f64)> = self
            .z
            .par_chunks_mut(ROWS * k)
            .enumerate()
            .map(|(blk, z)| {
                let (first, here) = (blk * ROWS, z.len() / k);
                arch.dispatch(ForwardOp {
                    z,
                    rows,
                    at: &at,
                    first,
                    y: &y[first..first + here],
                    sw: sw.map(|w| &w[first..first + here]),
                    m: &model,
                })
            })
            .collect();
        let (loss, hits) = blocks
            .iter()
            .fold((0.0, 0.0), |(l, h), (bl, bh)| (l + bl, h + bh));
        self.sums.add(loss, hits, n);
        if !grad {
            return Ok(());
        }
        for r in self.z.chunks_exact(k) {
            r.iter().zip(self.gb.iter_mut()).for_each(|(v, g)| *g += *v);
        }
        let nnz: usize = (0..n).map(|i| rows.row(at(i)).0.len()).sum();
        let lanes = self.lanes_for(nnz);
        if lanes == 1 {
            let SparseCpu {
                g,
                z,
                touched,
                marked,
                all,
                ..
            } = self;
            arch.dispatch(ScatterOp {
                g,
                z,
                rows,
                at: &at,
                range: 0..n,
                k,
                marks: (!*all).then_some((touched, marked)),
            });
        } else {
            if self.partials.len() < lanes {
                let what = format!("{lanes} partial gradients of {d} × {k}");
                crate::memory::check(&what, (lanes * d * k * 4) as u64)?;
                self.partials.resize_with(lanes, || vec![0.0; d * k]);
            }
            let z = &self.z;
            self.partials[..lanes]
                .par_iter_mut()
                .enumerate()
                .for_each(|(l, part)| {
                    part.fill(0.0);
                    arch.dispatch(ScatterOp {
                        g: part,
                        z,
                        rows,
                        at: &at,
                        range: l * n / lanes..(l + 1) * n / lanes,
                        k,
                        marks: None,
                    });
                });
            let partials = &self.partials[..lanes];
            self.g
                .par_chunks_mut(1 << 14)
                .enumerate()
                .for_each(|(c, g)| {
                    let at = c << 14;
                    for p in partials {
                        arch.dispatch(AddInto(g, &p[at..at + g.len()]));
                    }
                });
            self.all = true;
        }
        self.g_rows += n as u64;
        Ok(())
    }

    /// Dense rows as a sparse set (host batches, and dense sets held by this backend).
    fn as_sparse(&self, x: ArrayView2<f32>, y: &[u32]) -> Result<SparseRows> {
        SparseRows::from_chunk("rows", &SparseChunk::from_dense(x, y, 0), self.shape.k)
    }

    /// W and G as [d, k] views, for the dense update (scale folded into V first).
    fn dense_update(&mut self, u: &Update, rows: f32) -> Result<()> {
        self.fold_scale();
        let Shape { d, k } = self.shape;
        let as_view = |e: ndarray::ShapeError| Error::Internal(e.to_string());
        match crate::cpu::StepParams::of(u, rows, self.optimizer.steps + 1)? {
            None => self.arch.dispatch(UpdateOp {
                w: &mut self.v,
                g: &self.g,
                b: &mut self.b,
                gb: &self.gb,
                lr: u.lr,
                l2: u.l2,
                l1: u.l1,
                rows,
            }),
            Some((p, adam)) => {
                crate::cpu::ensure_slots(
                    &mut self.slots,
                    u.optimizer.slots().len(),
                    d * k + k,
                    0.0,
                )?;
                let (s1, rest) = self.slots.split_at_mut(1);
                let s2: &mut [f32] = rest.first_mut().map_or(&mut [], |v| v.as_mut_slice());
                crate::cpu::optimizer_step(
                    adam,
                    ArrayView2::from_shape((d, k), &self.g[..]).map_err(as_view)?,
                    ArrayView1::from(&self.gb[..]),
                    ArrayViewMut2::from_shape((d, k), &mut self.v[..]).map_err(as_view)?,
                    ArrayViewMut1::from(&mut self.b[..]),
                    &mut s1[0],
                    s2,
                    &p,
                );
            }
        }
        Ok(())
    }
}

/// What the forward pass reads.
struct Model<'a> {
    v: &'a [f32],
    scale: f32,
    b: &'a [f32],
    k: usize,
    cw: Option<&'a [f32]>,
}

// The operations compiled for the machine's instruction set by pulp's dispatch; what they call is inlined.

/// One block of rows: logits, then residuals in place; returns the block's (Σ loss, Σ hits).
struct ForwardOp<'a, F: Fn(usize) -> usize> {
    z: &'a mut [f32],
    rows: &'a SparseRows,
    at: &'a F,
    first: usize,
    y: &'a [u32],
    sw: Option<&'a [f32]>,
    m: &'a Model<'a>,
}

impl<F: Fn(usize) -> usize> pulp::WithSimd for ForwardOp<'_, F> {
    type Output = (f64, f64);

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> (f64, f64) {
        let ForwardOp {
            z,
            rows,
            at,
            first,
            y,
            sw,
            m,
        } = self;
        let k = m.k;
        for (i, zr) in z.chunks_exact_mut(k).enumerate() {
            zr.fill(0.0);
            let (cols, vals) = rows.row(at(first + i));
            for (&j, &x) in cols.iter().zip(vals) {
                let w = &m.v[j as usize * k..][..k];
                for (a, w) in zr.iter_mut().zip(w) {
                    *a += x * *w;
                }
            }
            for (a, b) in zr.iter_mut().zip(m.b) {
                *a = b + m.scale * *a;
            }
        }
        let rows_here = y.len();
        let zview = ndarray::ArrayViewMut2::from_shape((rows_here, k), z).expect("rows × k logits");
        residual_rows(zview, y, m.cw, sw)
    }
}

/// G[j, :] += x · R[i, :] for the non-zeros of the batch rows `range`, in row order; with `marks`, the features
/// met for the first time are listed.
struct ScatterOp<'a, F: Fn(usize) -> usize> {
    g: &'a mut [f32],
    z: &'a [f32],
    rows: &'a SparseRows,
    at: &'a F,
    range: std::ops::Range<usize>,
    k: usize,
    marks: Option<(&'a mut Vec<u32>, &'a mut Vec<bool>)>,
}

impl<F: Fn(usize) -> usize> pulp::WithSimd for ScatterOp<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let ScatterOp {
            g,
            z,
            rows,
            at,
            range,
            k,
            mut marks,
        } = self;
        for i in range {
            let r = &z[i * k..][..k];
            let (cols, vals) = rows.row(at(i));
            for (&j, &x) in cols.iter().zip(vals) {
                let j = j as usize;
                for (a, r) in g[j * k..][..k].iter_mut().zip(r) {
                    *a += x * *r;
                }
                if let Some((list, marked)) = marks.as_mut() {
                    if !marked[j] {
                        marked[j] = true;
                        list.push(j as u32);
                    }
                }
            }
        }
    }
}

/// v ← s · v.
struct Scale<'a>(&'a mut [f32], f32);

impl pulp::WithSimd for Scale<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let s = self.1;
        for v in self.0.iter_mut() {
            *v *= s;
        }
    }
}

impl Backend for SparseCpu {
    fn device(&self) -> String {
        format!("cpu (f32 sparse, {} threads)", rayon::current_num_threads())
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
        let decay = 1.0 - u.lr * u.l2;
        if u.optimizer == Optimizer::Sgd && u.l1 == 0.0 && decay >= 0.5 {
            // W' = decay·W − α/B·G: the decay goes into scale, and a touched row of V takes the gradient term over
            // the new scale.
            self.scale *= decay;
            if self.scale < MIN_SCALE {
                self.fold_scale();
            }
            let step = u.lr / (rows * self.scale);
            let k = self.shape.k;
            let touched = (!self.all).then_some(&self.touched[..]);
            self.arch.dispatch(Axpy {
                y: &mut self.v,
                x: &self.g,
                a: -step,
                rows: touched.map(|r| (r, k)),
            });
            for (b, &g) in self.b.iter_mut().zip(&self.gb) {
                *b -= u.lr * (g / rows);
            }
        } else {
            self.all = true;
            self.dense_update(u, rows)?;
        }
        self.clear_gradient();
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
        let out = Gradient {
            w: Array2::from_shape_fn((d, k), |(j, c)| f64::from(self.g[j * k + c])),
            b: self.gb.iter().map(|&v| f64::from(v)).collect(),
            rows,
        };
        self.clear_gradient();
        Ok(out)
    }

    fn set_gradient(&mut self, g: &Gradient) -> Result<()> {
        g.check(self.shape)?;
        self.g = g.w.iter().map(|&v| v as f32).collect();
        self.gb = g.b.iter().map(|&v| v as f32).collect();
        self.g_rows = g.rows;
        self.all = true;
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
        let s = self.scale;
        Ok(Params {
            w: Array2::from_shape_fn((d, k), |(j, c)| s * self.v[j * k + c]),
            b: Array1::from(self.b.clone()),
        })
    }

    fn set_params(&mut self, p: &Params) -> Result<()> {
        p.check(self.shape)?;
        self.v = p.w.iter().copied().collect();
        self.scale = 1.0;
        self.b = p.b.to_vec();
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

/// y += a · x, over every element or over the rows `rows` (row indices and length) only.
struct Axpy<'a> {
    y: &'a mut [f32],
    x: &'a [f32],
    a: f32,
    rows: Option<(&'a [u32], usize)>,
}

impl pulp::WithSimd for Axpy<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let Axpy { y, x, a, rows } = self;
        match rows {
            None => {
                for (y, x) in y.iter_mut().zip(x) {
                    *y += a * *x;
                }
            }
            Some((rows, k)) => {
                for &j in rows {
                    let at = j as usize * k;
                    for (y, x) in y[at..at + k].iter_mut().zip(&x[at..at + k]) {
                        *y += a * *x;
                    }
                }
            }
        }
    }
}
