//! The fast CPU trainer (`--device cpu`, f32): the same step as the reference [`super::CpuBackend`], organised for
//! speed. A batch is cut into blocks of [`BLOCK`] rows; each block is gathered into a contiguous tile, multiplied by
//! W (Z = X·W + b), turned into the residual R = softmax(Z) − onehot(y) in place, and multiplied back (G += Xᵀ·R)
//! while the tile is still in cache, so X is read from memory once per step. Blocks are dealt to a fixed number of
//! lanes ([`LANES`], or fewer for small batches: a function of the batch size only) that run in parallel on rayon's
//! pool; each lane sums its blocks in order and the lanes are added in lane order, so the result is bitwise the same
//! whatever the number of threads. The products are ndarray's `general_mat_mul` (matrixmultiply, with runtime
//! AVX2/FMA dispatch), written into reused buffers: nothing is allocated per step.

use std::sync::Arc;

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array1, Array2, ArrayView2, Axis, Zip};
use rayon::prelude::*;

use crate::data::{HostRows, RowSource};
use crate::error::{Error, Result};
use crate::train::{
    Backend, Batch, BatchRows, Gradient, Held, OptimizerState, Params, Shape, Sums, Update,
};

/// Rows per block: a tile of 64 rows of X stays in L2 between the forward and the backward product.
pub const BLOCK: usize = 64;
/// Most lanes: enough for the cores of a large machine; each holds one D × K partial gradient.
pub const LANES: usize = 16;

/// One lane's scratch and partial sums.
#[derive(Debug)]
struct Lane {
    xb: Array2<f32>,
    z: Array2<f32>,
    g: Array2<f32>,
    gb: Array1<f32>,
    loss: f64,
    hits: f64,
}

impl Lane {
    fn new(shape: Shape) -> Self {
        Lane {
            xb: Array2::zeros((BLOCK, shape.d)),
            z: Array2::zeros((BLOCK, shape.k)),
            g: Array2::zeros((shape.d, shape.k)),
            gb: Array1::zeros(shape.k),
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

impl Rows<'_> {
    fn len(&self) -> usize {
        match self {
            Rows::Held(_, idx) => idx.len(),
            Rows::Host(_, y) => y.len(),
        }
    }

    /// Copies rows `start..end` of the batch into `xb` and returns their labels' source and offsets.
    fn gather(&self, start: usize, end: usize, xb: &mut Array2<f32>, y: &mut [u32; BLOCK]) {
        for (i, r) in (start..end).enumerate() {
            match *self {
                Rows::Held(h, idx) => {
                    let p = idx[r] as usize;
                    xb.row_mut(i).assign(&h.x().row(p));
                    y[i] = h.y()[p];
                }
                Rows::Host(x, labels) => {
                    xb.row_mut(i).assign(&x.row(r));
                    y[i] = labels[r];
                }
            }
        }
    }
}

/// The fast f32 CPU trainer. See the module documentation.
#[derive(Debug)]
pub struct FastCpu {
    shape: Shape,
    held: Vec<Arc<HostRows>>,
    w: Array2<f32>,
    b: Array1<f32>,
    g: Array2<f32>,
    gb: Array1<f32>,
    g_rows: u64,
    lanes: Vec<Lane>,
    sums: Sums,
    optimizer: OptimizerState,
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
        crate::data::check_host_memory(&what, bytes)?;
        Ok(FastCpu {
            shape,
            held: Vec::new(),
            w: Array2::zeros((shape.d, shape.k)),
            b: Array1::zeros(shape.k),
            g: Array2::zeros((shape.d, shape.k)),
            gb: Array1::zeros(shape.k),
            g_rows: 0,
            lanes: (0..LANES).map(|_| Lane::new(shape)).collect(),
            sums: Sums::default(),
            optimizer: OptimizerState::default(),
        })
    }

    /// Forward pass over the batch (and, with `grad`, the gradient sums), lane by lane; then the lanes' sums are
    /// added in lane order.
    fn pass(&mut self, batch: &Batch<'_>, grad: bool) -> Result<()> {
        let FastCpu {
            shape,
            held,
            w,
            b,
            g,
            gb,
            g_rows,
            lanes,
            sums,
            ..
        } = self;
        let rows = rows_of(held, *shape, batch)?;
        let n = rows.len();
        let blocks = n.div_ceil(BLOCK);
        let used = blocks.min(LANES);
        let (wv, bv) = (w.view(), b.view());
        lanes[..used]
            .par_iter_mut()
            .enumerate()
            .for_each(|(l, lane)| run_lane(lane, rows, wv, bv, (l, used, blocks), grad));
        let (mut loss, mut hits) = (0.0, 0.0);
        for (l, lane) in lanes[..used].iter().enumerate() {
            if grad {
                if l == 0 && *g_rows == 0 {
                    g.assign(&lane.g);
                    gb.assign(&lane.gb);
                } else {
                    *g += &lane.g;
                    *gb += &lane.gb;
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

/// Where the rows of `batch` are.
fn rows_of<'a>(held: &'a [Arc<HostRows>], shape: Shape, batch: &'a Batch<'_>) -> Result<Rows<'a>> {
    match batch.rows() {
        BatchRows::Held { set, rows } => {
            let h = held
                .get(set.id())
                .filter(|h| h.len() == set.len())
                .ok_or_else(|| {
                    Error::Internal(format!("held set {} is not this backend's", set.id()))
                })?;
            Ok(Rows::Held(h, rows))
        }
        BatchRows::Host(chunk) => {
            if chunk.x().ncols() != shape.d {
                return Err(Error::shape("batch features", shape.d, chunk.x().ncols()));
            }
            Ok(Rows::Host(chunk.x(), chunk.y()))
        }
    }
}

/// One lane: blocks `l, l + used, l + 2·used, …` of the batch, in order.
fn run_lane(
    lane: &mut Lane,
    rows: Rows<'_>,
    w: ArrayView2<f32>,
    b: ndarray::ArrayView1<f32>,
    (l, used, blocks): (usize, usize, usize),
    grad: bool,
) {
    let n = rows.len();
    lane.g.fill(0.0);
    lane.gb.fill(0.0);
    lane.loss = 0.0;
    lane.hits = 0.0;
    let mut y = [0u32; BLOCK];
    for blk in (l..blocks).step_by(used) {
        let (start, end) = (blk * BLOCK, ((blk + 1) * BLOCK).min(n));
        let m = end - start;
        rows.gather(start, end, &mut lane.xb, &mut y);
        let xb = lane.xb.slice(s![..m, ..]);
        let mut z = lane.z.slice_mut(s![..m, ..]);
        z.assign(&b.broadcast((m, b.len())).expect("b is [k]"));
        general_mat_mul(1.0, &xb, &w, 1.0, &mut z);
        let (loss, hits) = residual_rows(z.view_mut(), &y[..m]);
        lane.loss += loss;
        lane.hits += hits;
        if grad {
            general_mat_mul(1.0, &xb.t(), &z, 1.0, &mut lane.g);
            lane.gb += &z.sum_axis(Axis(0));
        }
    }
}

/// Replaces each row of logits by its residual softmax(z) − onehot(y) (max subtracted first) and returns the block's
/// Σ loss (logsumexp − z_y) and Σ hits (argmax = y, first maximum on ties), as the reference mirrors compute them.
fn residual_rows(mut z: ndarray::ArrayViewMut2<f32>, y: &[u32]) -> (f64, f64) {
    let (mut loss, mut hits) = (0.0f64, 0.0f64);
    for (mut row, &label) in z.outer_iter_mut().zip(y) {
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
        loss += f64::from((m + sum.ln()) - zy);
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
        crate::config::MAX_BATCH
    }

    fn hold(&mut self, source: &mut dyn RowSource) -> Result<Held> {
        self.shape.check_source(source)?;
        let rows = HostRows::read(source)?;
        let held = Held::new(self.held.len(), rows.len());
        self.held.push(rows);
        Ok(held)
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
        let (lr, l2) = (u.lr, u.l2);
        Zip::from(&mut self.w)
            .and(&self.g)
            .for_each(|w, &g| *w -= lr * (g / rows + l2 * *w));
        Zip::from(&mut self.b)
            .and(&self.gb)
            .for_each(|b, &g| *b -= lr * (g / rows));
        self.g_rows = 0;
        self.optimizer.steps += 1;
        Ok(())
    }

    fn take_gradient(&mut self) -> Result<Gradient> {
        let rows = std::mem::take(&mut self.g_rows);
        if rows == 0 {
            return Ok(Gradient {
                w: Array2::zeros((self.shape.d, self.shape.k)),
                b: Array1::zeros(self.shape.k),
                rows: 0,
            });
        }
        Ok(Gradient {
            w: self.g.mapv(f64::from),
            b: self.gb.mapv(f64::from),
            rows,
        })
    }

    fn set_gradient(&mut self, g: &Gradient) -> Result<()> {
        if g.w.dim() != (self.shape.d, self.shape.k) || g.b.len() != self.shape.k {
            return Err(Error::shape(
                "gradient",
                format!("{:?}", (self.shape.d, self.shape.k)),
                format!("{:?}", g.w.dim()),
            ));
        }
        self.g = g.w.mapv(|v| v as f32);
        self.gb = g.b.mapv(|v| v as f32);
        self.g_rows = g.rows;
        Ok(())
    }

    fn take_sums(&mut self) -> Result<Sums> {
        Ok(std::mem::take(&mut self.sums))
    }

    fn params(&mut self) -> Result<Params> {
        Ok(Params {
            w: self.w.clone(),
            b: self.b.clone(),
        })
    }

    fn set_params(&mut self, p: &Params) -> Result<()> {
        p.check(self.shape)?;
        self.w.assign(&p.w);
        self.b.assign(&p.b);
        Ok(())
    }

    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        Ok(self.optimizer.clone())
    }

    fn set_optimizer_state(&mut self, s: &OptimizerState) -> Result<()> {
        if !s.tensors.is_empty() {
            return Err(Error::shape(
                "SGD optimizer state tensors",
                0,
                s.tensors.len(),
            ));
        }
        self.optimizer = s.clone();
        Ok(())
    }
}
