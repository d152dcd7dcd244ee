//! A complete trainer built from the CPU mirrors, in f32 or f64, on the [`Backend`] seam.

use ndarray::{Array1, Array2};

use super::{
    cast, ensure_slots, gather, grad, logits, metrics, optimizer_step, residual, softmax,
    sparse_grad, sparse_logits, update, HostSet, HostSets, Real, StepParams,
};
use crate::data::SparseBatch;

/// A batch's rows: dense, widened to `T`, or sparse (f32 values, widened as they are used).
enum Rows<T> {
    Dense(Array2<T>),
    Sparse(SparseBatch),
}
use crate::data::RowSource;
use crate::error::{Error, Result};
use crate::train::{
    Backend, Batch, BatchRows, Gradient, Held, OptimizerState, Params, Shape, Sums, Update,
};

/// The reference trainer. Holds the rows it was given in f32 (shared, not copied, when the source already has them
/// in memory) and widens each batch to `T` as it computes.
#[derive(Debug)]
pub struct CpuBackend<T: Real> {
    shape: Shape,
    held: HostSets,
    w: Array2<T>,
    b: Array1<T>,
    /// Gradient sums since the last update, and the rows they sum (0: empty).
    g: Array2<T>,
    gb: Array1<T>,
    g_rows: u64,
    sums: Sums,
    optimizer: OptimizerState,
    /// The optimizer's state slots in `T`, each flat over W then b (`optimizer` keeps the step count).
    slots: Vec<Vec<T>>,
    /// Class weights, when set.
    cw: Option<Vec<T>>,
}

impl<T: Real> CpuBackend<T> {
    /// A zero-initialised model of `shape`.
    pub fn new(shape: Shape) -> Self {
        CpuBackend {
            shape,
            held: HostSets::default(),
            w: Array2::zeros((shape.d, shape.k)),
            b: Array1::zeros(shape.k),
            g: Array2::zeros((shape.d, shape.k)),
            gb: Array1::zeros(shape.k),
            g_rows: 0,
            sums: Sums::default(),
            optimizer: OptimizerState::default(),
            slots: Vec::new(),
            cw: None,
        }
    }

    /// [`CpuBackend::new`] after checking that the weights and gradient sums (2·d·k values of `T`) fit this
    /// machine's available memory, so that a huge `d × k` is an error rather than an aborted allocation.
    pub fn try_new(shape: Shape) -> Result<Self> {
        let bytes = crate::error::checked_product(
            &format!("a model of {} features × {} classes", shape.d, shape.k),
            &[
                shape.d as u64,
                shape.k as u64,
                2 * std::mem::size_of::<T>() as u64,
            ],
        )?;
        crate::memory::check(
            &format!("a model of {} features × {} classes", shape.d, shape.k),
            bytes,
        )?;
        Ok(Self::new(shape))
    }

    /// The weights in the backend's own precision.
    pub fn weights(&self) -> (&Array2<T>, &Array1<T>) {
        (&self.w, &self.b)
    }

    fn to_f64(v: T) -> f64 {
        v.to_f64().unwrap_or(f64::NAN)
    }

    fn from_f64(v: f64) -> T {
        T::from_f64(v).unwrap_or_else(T::nan)
    }

    /// The batch's rows: dense in precision `T`, or sparse.
    fn rows_of(&self, batch: &Batch<'_>) -> Result<(Rows<T>, Vec<u32>)> {
        self.shape.check_batch(batch)?;
        match batch.rows() {
            BatchRows::Held { set, rows } => match self.held.get_set(*set)? {
                HostSet::Dense(held) => {
                    let (x, y) = gather(rows, held.x(), held.y());
                    Ok((Rows::Dense(x), y))
                }
                HostSet::Sparse(held) => {
                    let b = held.batch(rows);
                    let y = b.y.clone();
                    Ok((Rows::Sparse(b), y))
                }
            },
            BatchRows::Host(chunk) => Ok((Rows::Dense(cast(chunk.x())), chunk.y().to_vec())),
        }
    }

    /// The batch's sample weights in `T`, when it has them.
    fn row_weights(batch: &Batch<'_>) -> Option<Vec<T>> {
        batch
            .weights()
            .map(|w| w.iter().map(|&v| Self::from_f64(f64::from(v))).collect())
    }

    /// The class weights and the batch's row weights.
    fn loss_weights<'w>(&'w self, sw: Option<&'w [T]>) -> crate::cpu::Weights<'w, T> {
        crate::cpu::Weights {
            class: self.cw.as_deref(),
            row: sw,
        }
    }

    /// Forward pass: the softmax, the per-row stats, and the sums added to the running ones.
    fn forward_rows(&mut self, xb: &Rows<T>, yb: &[u32], sw: Option<&[T]>) -> Array2<T> {
        let z = match xb {
            Rows::Dense(x) => logits(x.view(), self.w.view(), self.b.view()),
            Rows::Sparse(x) => sparse_logits(x, self.w.view(), self.b.view()),
        };
        let (s, stats) = softmax(z.view(), yb, self.loss_weights(sw));
        let (loss, hits) = metrics(stats.view());
        self.sums
            .add(Self::to_f64(loss), Self::to_f64(hits), yb.len());
        s
    }
}

impl<T: Real> Backend for CpuBackend<T> {
    fn device(&self) -> String {
        format!("cpu ({})", std::any::type_name::<T>())
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
        let (xb, yb) = self.rows_of(batch)?;
        let sw = Self::row_weights(batch);
        let s = self.forward_rows(&xb, &yb, sw.as_deref());
        let r = residual(s.view(), &yb, self.loss_weights(sw.as_deref()));
        let (g, gb) = match &xb {
            Rows::Dense(x) => grad(x.view(), r.view()),
            Rows::Sparse(x) => sparse_grad(x, r.view()),
        };
        if self.g_rows == 0 {
            self.g = g;
            self.gb = gb;
        } else {
            self.g.zip_mut_with(&g, |a, &b| *a = *a + b);
            self.gb.zip_mut_with(&gb, |a, &b| *a = *a + b);
        }
        self.g_rows += yb.len() as u64;
        Ok(())
    }

    fn forward(&mut self, batch: &Batch<'_>) -> Result<()> {
        let (xb, yb) = self.rows_of(batch)?;
        let sw = Self::row_weights(batch);
        self.forward_rows(&xb, &yb, sw.as_deref());
        Ok(())
    }

    fn update(&mut self, u: &Update) -> Result<()> {
        if self.g_rows == 0 {
            return Err(Error::Internal(
                "update without accumulated gradient sums".into(),
            ));
        }
        let lr = Self::from_f64(f64::from(u.lr));
        let l2 = Self::from_f64(f64::from(u.l2));
        let l1 = Self::from_f64(f64::from(u.l1));
        let rows = Self::from_f64(self.g_rows as f64);
        let t = self.optimizer.steps + 1;
        if let Some((p32, adam)) = StepParams::of(u, 0.0, t)? {
            let p = StepParams {
                rows,
                ..p32.map(|v| Self::from_f64(f64::from(v)))
            };
            let n = self.shape.d * self.shape.k + self.shape.k;
            ensure_slots(&mut self.slots, u.optimizer.slots().len(), n, T::zero())?;
            let (s1, rest) = self.slots.split_at_mut(1);
            let mut none = Vec::new();
            let s2 = rest.first_mut().unwrap_or(&mut none);
            optimizer_step(
                adam,
                self.g.view(),
                self.gb.view(),
                self.w.view_mut(),
                self.b.view_mut(),
                &mut s1[0],
                s2,
                &p,
            );
            self.g_rows = 0;
            self.optimizer.steps += 1;
            return Ok(());
        }
        update(
            self.g.view(),
            self.gb.view(),
            self.w.view_mut(),
            self.b.view_mut(),
            lr,
            l2,
            l1,
            rows,
        );
        self.g_rows = 0;
        self.optimizer.steps += 1;
        Ok(())
    }

    fn take_gradient(&mut self) -> Result<Gradient> {
        let rows = std::mem::take(&mut self.g_rows);
        if rows == 0 {
            return Ok(Gradient::zeros(self.shape));
        }
        Ok(Gradient {
            w: self.g.mapv(Self::to_f64),
            b: self.gb.mapv(Self::to_f64),
            rows,
        })
    }

    fn set_gradient(&mut self, g: &Gradient) -> Result<()> {
        g.check(self.shape)?;
        self.g = g.w.mapv(Self::from_f64);
        self.gb = g.b.mapv(Self::from_f64);
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
        Ok(Params {
            w: self.w.mapv(|v| v.to_f32().unwrap_or(f32::NAN)),
            b: self.b.mapv(|v| v.to_f32().unwrap_or(f32::NAN)),
        })
    }

    fn set_params(&mut self, p: &Params) -> Result<()> {
        p.check(self.shape)?;
        self.w = cast(p.w.view());
        self.b = p.b.mapv(|v| T::from_f32(v).unwrap_or_else(T::nan));
        Ok(())
    }

    fn set_class_weights(&mut self, weights: Option<&[f32]>) -> Result<()> {
        if let Some(w) = weights {
            crate::train::check_class_weights(self.shape, w)?;
        }
        self.cw = weights.map(|w| w.iter().map(|&v| Self::from_f64(f64::from(v))).collect());
        Ok(())
    }

    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        let slots: Vec<Vec<f32>> = self
            .slots
            .iter()
            .map(|s| s.iter().map(|&x| Self::to_f64(x) as f32).collect())
            .collect();
        Ok(crate::train::state_of(self.optimizer.steps, &slots))
    }

    fn set_optimizer_state(&mut self, s: &OptimizerState) -> Result<()> {
        s.check(self.shape)?;
        self.optimizer = OptimizerState {
            steps: s.steps,
            tensors: Vec::new(),
        };
        self.slots = s
            .tensors
            .iter()
            .map(|(_, _, v)| v.iter().map(|&x| Self::from_f64(f64::from(x))).collect())
            .collect();
        Ok(())
    }
}
