//! The CPU reference path: one function per shader, with the shader's name and its binding order, in ndarray,
//! generic over `f32` and `f64`. These are the definitions the GPU kernels are tested against, and
//! [`CpuBackend`] is a complete trainer built from them (`--device cpu`, and the `--check-every` shadow).

mod backend;
mod fast;
mod simd;
mod sparse;

pub use backend::CpuBackend;
pub use fast::{FastCpu, BLOCK, LANES};
pub use sparse::SparseCpu;

use std::sync::Arc;

use crate::data::{HostRows, RowSource, SparseBatch, SparseRows};
use crate::error::{Error, Result};
pub(crate) use crate::optim::ensure_slots;
pub use crate::optim::StepParams;
pub use crate::params::{Real, Weights};
use crate::train::{Held, Shape};

/// A held set: dense rows, or sparse ones (CSR).
#[derive(Debug, Clone)]
pub(crate) enum HostSet {
    Dense(Arc<HostRows>),
    Sparse(Arc<SparseRows>),
}

impl HostSet {
    fn len(&self) -> usize {
        match self {
            HostSet::Dense(r) => r.len(),
            HostSet::Sparse(r) => r.len(),
        }
    }
}

/// The row sets a CPU backend holds: host rows (shared with their source when it has them in memory), each
/// addressed by the [`Held`] handle [`HostSets::hold`] gave for it.
#[derive(Debug, Default)]
pub(crate) struct HostSets(Vec<Option<HostSet>>);

impl HostSets {
    /// Holds every row of `source`, which must have `shape`, in the first free slot: sparse sources as CSR.
    pub(crate) fn hold(&mut self, shape: Shape, source: &mut dyn RowSource) -> Result<Held> {
        shape.check_source(source)?;
        let rows = if source.is_sparse() {
            HostSet::Sparse(SparseRows::read(source)?)
        } else {
            HostSet::Dense(HostRows::read(source)?)
        };
        let n = rows.len();
        let id = match self.0.iter().position(Option::is_none) {
            Some(free) => {
                self.0[free] = Some(rows);
                free
            }
            None => {
                self.0.push(Some(rows));
                self.0.len() - 1
            }
        };
        Ok(Held::new(id, n))
    }

    /// Drops a held set; its slot is reused.
    pub(crate) fn release(&mut self, set: Held) -> Result<()> {
        self.get_set(set)?;
        self.0[set.id()] = None;
        Ok(())
    }

    /// A set this backend holds.
    pub(crate) fn get_set(&self, set: Held) -> Result<&HostSet> {
        self.0
            .get(set.id())
            .and_then(Option::as_ref)
            .filter(|h| h.len() == set.len())
            .ok_or_else(|| Error::Internal(format!("held set {} is not this backend's", set.id())))
    }

    /// The rows of a dense set this backend holds.
    pub(crate) fn get(&self, set: Held) -> Result<&HostRows> {
        match self.get_set(set)? {
            HostSet::Dense(rows) => Ok(rows),
            HostSet::Sparse(rows) => Err(Error::param(
                "--device",
                "the sparse CPU trainer (--device cpu picks it for sparse data), the reference or a GPU",
                format!("the dense CPU trainer with the sparse rows of {}", rows.name()),
            )),
        }
    }
}

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, Zip};

/// Mirror of `logits.wgsl`: Z = X·W + b. `x` is [rows, d], `w` is [d, k], `b` is [k].
pub fn logits<T: Real>(x: ArrayView2<T>, w: ArrayView2<T>, b: ArrayView1<T>) -> Array2<T> {
    x.dot(&w) + b
}

/// Mirror of `softmax.wgsl`: S = softmax(Z) row-wise (row maximum subtracted first), and per row the pair
/// (cross-entropy −log S_y computed as logsumexp(z) − z_y, times the row's weight when there are weights;
/// 1 if argmax z == y else 0). Ties go to the first maximum.
pub fn softmax<T: Real>(
    z: ArrayView2<T>,
    y: &[u32],
    weights: Weights<T>,
) -> (Array2<T>, Array2<T>) {
    let (rows, k) = z.dim();
    let mut s = Array2::<T>::zeros((rows, k));
    let mut stats = Array2::<T>::zeros((rows, 2));
    for (i, zr) in z.outer_iter().enumerate() {
        let mut m = zr[0];
        let mut arg = 0usize;
        for (c, &v) in zr.iter().enumerate().skip(1) {
            if v > m {
                m = v;
                arg = c;
            }
        }
        let mut sum = T::zero();
        for (c, &v) in zr.iter().enumerate() {
            let e = (v - m).exp();
            s[[i, c]] = e;
            sum = sum + e;
        }
        let inv = T::one() / sum;
        s.row_mut(i).mapv_inplace(|e| e * inv);
        let label = y[i] as usize;
        let loss = (m + sum.ln()) - zr[label];
        stats[[i, 0]] = weights.of(i, label).map_or(loss, |w| loss * w);
        stats[[i, 1]] = if arg == label { T::one() } else { T::zero() };
    }
    (s, stats)
}

/// Mirror of what `softmax.wgsl` writes in a training step (`TRAIN` = 1), after [`softmax`]: R = S − onehot(y), each
/// row times its weight (class weight of its y times its sample weight) when there are weights: ∂/∂z of the
/// weighted cross-entropy.
pub fn residual<T: Real>(s: ArrayView2<T>, y: &[u32], weights: Weights<T>) -> Array2<T> {
    let mut r = s.to_owned();
    for (i, &label) in y.iter().enumerate() {
        let label = label as usize;
        r[[i, label]] = r[[i, label]] - T::one();
        if let Some(w) = weights.of(i, label) {
            r.row_mut(i).mapv_inplace(|v| v * w);
        }
    }
    r
}

/// Mirror of `grad.wgsl`: the gradient sums G = Xᵀ·R and g_b = colsum(R) over the batch's rows (divided by the row
/// count in [`update`], so that sums from several batches or processes can be added first).
pub fn grad<T: Real>(x: ArrayView2<T>, r: ArrayView2<T>) -> (Array2<T>, Array1<T>) {
    (x.t().dot(&r), r.sum_axis(Axis(0)))
}

/// Mirror of `sparse_logits.wgsl`: Z = X·W + b for a sparse batch, each element b_c + Σ x_ij·W_jc over the row's
/// entries in their order.
pub fn sparse_logits<T: Real>(x: &SparseBatch, w: ArrayView2<T>, b: ArrayView1<T>) -> Array2<T> {
    let k = w.ncols();
    let mut z = Array2::<T>::zeros((x.len(), k));
    for (i, span) in x.offsets.windows(2).enumerate() {
        for c in 0..k {
            let mut acc = T::zero();
            for e in span[0] as usize..span[1] as usize {
                let v = T::from_f32(x.values[e]).expect("f32 converts to every Real");
                acc = acc + v * w[[x.indices[e] as usize, c]];
            }
            z[[i, c]] = b[c] + acc;
        }
    }
    z
}

/// Mirror of `sparse_grad.wgsl`: the gradient sums G = Xᵀ·R, each element summed over its column's entries in
/// ascending batch row (the batch's transposed layout), and g_b = colsum(R) in row order; the kernel adds them to
/// what G and g_b hold (zeros outside the step so far).
pub fn sparse_grad<T: Real>(x: &SparseBatch, r: ArrayView2<T>) -> (Array2<T>, Array1<T>) {
    let k = r.ncols();
    let mut g = Array2::<T>::zeros((x.d, k));
    for j in 0..x.d {
        let (lo, hi) = (x.col_ptr[j] as usize, x.col_ptr[j + 1] as usize);
        if lo == hi {
            continue;
        }
        for c in 0..k {
            let mut acc = T::zero();
            for e in lo..hi {
                let v = T::from_f32(x.col_vals[e]).expect("f32 converts to every Real");
                acc = acc + v * r[[x.col_rows[e] as usize, c]];
            }
            g[[j, c]] = acc;
        }
    }
    let mut gb = Array1::<T>::zeros(k);
    for row in r.outer_iter() {
        gb.zip_mut_with(&row, |a, &v| *a = *a + v);
    }
    (g, gb)
}

/// Mirror of `update.wgsl`: W ← W − lr·(G/rows + l2·W), then the L1 proximal step W ← sign(W)·max(|W| − lr·l1, 0);
/// b ← b − lr·g_b/rows, where G, g_b are gradient sums over `rows` rows.
#[allow(clippy::too_many_arguments)] // the shader's bindings and step parameters, in its order
pub fn update<T: Real>(
    g: ArrayView2<T>,
    gb: ArrayView1<T>,
    mut w: ArrayViewMut2<T>,
    mut b: ArrayViewMut1<T>,
    lr: T,
    l2: T,
    l1: T,
    rows: T,
) {
    let t = lr * l1;
    Zip::from(&mut w).and(&g).for_each(|w, &g| {
        let v = *w - lr * (g / rows + l2 * *w);
        *w = shrink(v, t);
    });
    Zip::from(&mut b)
        .and(&gb)
        .for_each(|b, &g| *b = *b - lr * (g / rows));
}

/// The proximal step of the L1 penalty on one weight after its gradient step: shrink towards 0 by `t` = α·λ₁, and
/// stop at 0. Every path applies this expression (the WGSL update kernels spell it out identically).
#[inline]
pub fn shrink<T: Real>(w: T, t: T) -> T {
    if t > T::zero() {
        w.signum() * (w.abs() - t).max(T::zero())
    } else {
        w
    }
}

/// One parameter's step: `grad` is its mean gradient (with λ·w added for W), `s1` / `s2` its state; returns the new
/// value before the L1 shrink. The same expressions as `update_momentum.wgsl` and `update_adam.wgsl`.
pub(crate) fn optimize<T: Real>(
    adam: bool,
    grad: T,
    w: T,
    s1: &mut T,
    s2: &mut T,
    p: &StepParams<T>,
    decay: bool,
) -> T {
    if adam {
        let one = T::one();
        *s1 = p.beta1 * *s1 + (one - p.beta1) * grad;
        *s2 = p.beta2 * *s2 + (one - p.beta2) * grad * grad;
        let m = *s1 / p.c1;
        let v = *s2 / p.c2;
        let wd = if decay { p.weight_decay * w } else { T::zero() };
        w - p.lr * (m / (v.sqrt() + p.eps) + wd)
    } else {
        *s1 = p.beta1 * *s1 + grad;
        let step = if p.nesterov {
            grad + p.beta1 * *s1
        } else {
            *s1
        };
        w - p.lr * step
    }
}

/// Mirror of `update_momentum.wgsl` (`adam` false) and `update_adam.wgsl` (`adam` true): one step from gradient
/// sums over `p.rows` rows, the state slots `s1` (velocity, or first moment) and `s2` (second moment) flat over W
/// then b, then the L1 shrink of W. The bias takes no penalty and no decay.
#[allow(clippy::too_many_arguments)] // the shader's bindings, in its order
pub fn optimizer_step<T: Real>(
    adam: bool,
    g: ArrayView2<T>,
    gb: ArrayView1<T>,
    mut w: ArrayViewMut2<T>,
    mut b: ArrayViewMut1<T>,
    s1: &mut [T],
    s2: &mut [T],
    p: &StepParams<T>,
) {
    let (d, k) = w.dim();
    let t = p.lr * p.l1;
    let mut unused = T::zero();
    for j in 0..d {
        for c in 0..k {
            let e = j * k + c;
            let grad = g[[j, c]] / p.rows + p.l2 * w[[j, c]];
            let s2e = if adam { &mut s2[e] } else { &mut unused };
            let v = optimize(adam, grad, w[[j, c]], &mut s1[e], s2e, p, true);
            w[[j, c]] = shrink(v, t);
        }
    }
    for c in 0..k {
        let e = d * k + c;
        let s2e = if adam { &mut s2[e] } else { &mut unused };
        b[c] = optimize(adam, gb[c] / p.rows, b[c], &mut s1[e], s2e, p, false);
    }
}

/// Mirror of `sparse_update.wgsl`: the update of [`update`] over the columns `cols` of W (and b), with the sums it
/// consumed (those columns of G, and g_b) set to zero; with `apply` false only the zeroing (after a dense update).
#[allow(clippy::too_many_arguments)] // the shader's bindings and step parameters, in its order
pub fn sparse_update<T: Real>(
    cols: &[u32],
    mut g: ArrayViewMut2<T>,
    mut gb: ArrayViewMut1<T>,
    mut w: ArrayViewMut2<T>,
    mut b: ArrayViewMut1<T>,
    lr: T,
    l2: T,
    rows: T,
    apply: bool,
) {
    for &j in cols {
        let j = j as usize;
        if apply {
            for c in 0..w.ncols() {
                w[[j, c]] = w[[j, c]] - lr * (g[[j, c]] / rows + l2 * w[[j, c]]);
            }
        }
        g.row_mut(j).fill(T::zero());
    }
    if apply {
        Zip::from(&mut b)
            .and(&gb)
            .for_each(|b, &g| *b = *b - lr * (g / rows));
    }
    gb.fill(T::zero());
}

/// Mirror of `forward.wgsl` (K ≤ 16): logits, softmax and residual composed, as the GPU does them in one pass:
/// the residual R = softmax(X·W + b) − onehot(y) and the per-row (loss, hit) pairs.
pub fn forward<T: Real>(
    x: ArrayView2<T>,
    w: ArrayView2<T>,
    b: ArrayView1<T>,
    y: &[u32],
    weights: Weights<T>,
) -> (Array2<T>, Array2<T>) {
    let z = logits(x, w, b);
    let (s, stats) = softmax(z.view(), y, weights);
    (residual(s.view(), y, weights), stats)
}

/// Mirror of `metrics.wgsl`: the batch's (Σ loss, Σ correct) from softmax's per-row pairs.
pub fn metrics<T: Real>(stats: ArrayView2<T>) -> (T, T) {
    let sums = stats.sum_axis(Axis(0));
    (sums[0], sums[1])
}

/// Mirror of `gather.wgsl` (all chunks at once): the rows `perm` of X and y, converted to the precision `T`.
pub fn gather<T: Real>(perm: &[u32], x: ArrayView2<f32>, y: &[u32]) -> (Array2<T>, Vec<u32>) {
    let d = x.ncols();
    let mut xb = Vec::with_capacity(perm.len() * d);
    for &p in perm {
        xb.extend(
            x.row(p as usize)
                .iter()
                .map(|&v| T::from_f32(v).expect("f32 converts to every Real")),
        );
    }
    let yb = perm.iter().map(|&i| y[i as usize]).collect();
    (
        Array2::from_shape_vec((perm.len(), d), xb).expect("rows × d values"),
        yb,
    )
}

/// Mirror of `forward_held.wgsl`: [`forward`] over the rows of the held set `x` (labels `y`) that `perm` names, in
/// its order.
pub fn forward_held<T: Real>(
    x: ArrayView2<f32>,
    y: &[u32],
    perm: &[u32],
    w: ArrayView2<T>,
    b: ArrayView1<T>,
    weights: Weights<T>,
) -> (Array2<T>, Array2<T>) {
    let (xb, yb) = gather::<T>(perm, x, y);
    forward(xb.view(), w, b, &yb, weights)
}

/// Mirror of `grad_held.wgsl`: [`grad`] over the rows of the held set `x` that `perm` names, in its order.
pub fn grad_held<T: Real>(
    x: ArrayView2<f32>,
    perm: &[u32],
    r: ArrayView2<T>,
) -> (Array2<T>, Array1<T>) {
    let (xb, _) = gather::<T>(perm, x, &vec![0; x.nrows()]);
    grad(xb.view(), r)
}

/// Mirror of `fused_held.wgsl` followed by `reduce.wgsl`: over the rows of the held set `x` (labels `y`) that `perm`
/// names, the forward pass and the gradient sums — G = Xᵀ·R, g_b = colsum(R) — with the batch's summed loss and
/// hits. The GPU adds the rows' terms by tiles and segments in a fixed order; this adds them in row order (the
/// bounds of `numerics` cover either).
pub fn fused<T: Real>(
    x: ArrayView2<f32>,
    y: &[u32],
    perm: &[u32],
    w: ArrayView2<T>,
    b: ArrayView1<T>,
    weights: Weights<T>,
) -> (Array2<T>, Array1<T>, T, T) {
    let (xb, yb) = gather::<T>(perm, x, y);
    let (r, stats) = forward(xb.view(), w, b, &yb, weights);
    let (g, gb) = grad(xb.view(), r.view());
    let (loss, hits) = metrics(stats.view());
    (g, gb, loss, hits)
}

/// Mirror of `ceiling_read.wgsl`: with `invocations` invocations, invocation t sums the floats t, t + invocations, …
/// of `data` into four accumulators taken in turn (the rounds of four, then the rest into the first), `passes`
/// times over, and gives (a0 + a1) + (a2 + a3).
pub fn ceiling_read(data: &[f32], invocations: usize, passes: u32) -> Vec<f32> {
    let n = data.len();
    let total = invocations.max(1);
    (0..invocations)
        .map(|t| {
            let mut acc = [0.0f32; 4];
            for _ in 0..passes {
                let mut i = t;
                while i + 3 * total < n {
                    for (q, a) in acc.iter_mut().enumerate() {
                        *a += data[i + q * total];
                    }
                    i += 4 * total;
                }
                while i < n {
                    acc[0] += data[i];
                    i += total;
                }
            }
            (acc[0] + acc[1]) + (acc[2] + acc[3])
        })
        .collect()
}

/// Mirror of `ceiling_fma.wgsl`: invocation t's result after `rounds` rounds.
pub fn ceiling_fma(invocations: usize, rounds: u32) -> Vec<f32> {
    let m = [0.999f32, 0.998, 0.997, 0.996];
    (0..invocations)
        .map(|t| {
            let seed = (t % 7) as f32 * 1e-3;
            let mut a: [[f32; 4]; 8] = std::array::from_fn(|q| [seed + q as f32; 4]);
            for _ in 0..rounds {
                for chain in a.iter_mut() {
                    for (v, mm) in chain.iter_mut().zip(m) {
                        *v = v.mul_add(mm, seed);
                    }
                }
            }
            let add =
                |x: [f32; 4], y: [f32; 4]| -> [f32; 4] { std::array::from_fn(|l| x[l] + y[l]) };
            let s = add(
                add(add(a[0], a[1]), add(a[2], a[3])),
                add(add(a[4], a[5]), add(a[6], a[7])),
            );
            (s[0] + s[1]) + (s[2] + s[3])
        })
        .collect()
}

/// Converts an f32 array to the reference precision.
pub fn cast<T: Real>(a: ArrayView2<f32>) -> Array2<T> {
    a.mapv(|v| T::from_f32(v).expect("f32 converts to every Real"))
}
