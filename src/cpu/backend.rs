//! A complete trainer built from the CPU mirrors, in f32 or f64.

use ndarray::{Array1, Array2, ArrayView2};

use super::{cast, gather, logits, metrics, softmax, step, Real};
use crate::error::Result;
use crate::train::{Backend, Params, Sums};

/// The reference trainer. Holds the training rows (and optionally held-out rows) in precision `T`.
#[derive(Debug)]
pub struct CpuBackend<T: Real> {
    x: Array2<T>,
    y: Vec<u32>,
    held_out: Option<(Array2<T>, Vec<u32>)>,
    w: Array2<T>,
    b: Array1<T>,
}

impl<T: Real> CpuBackend<T> {
    /// A zero-initialised model of `k` classes over the rows of `x`.
    pub fn new(
        x: ArrayView2<f32>,
        y: &[u32],
        k: usize,
        held_out: Option<(ArrayView2<f32>, &[u32])>,
    ) -> Self {
        let d = x.ncols();
        CpuBackend {
            x: cast(x),
            y: y.to_vec(),
            held_out: held_out.map(|(x, y)| (cast(x), y.to_vec())),
            w: Array2::zeros((d, k)),
            b: Array1::zeros(k),
        }
    }

    /// The weights in the backend's own precision.
    pub fn weights(&self) -> (&Array2<T>, &Array1<T>) {
        (&self.w, &self.b)
    }

    fn to_f64(v: T) -> f64 {
        v.to_f64().unwrap_or(f64::NAN)
    }
}

impl<T: Real> Backend for CpuBackend<T> {
    fn device(&self) -> String {
        format!("cpu ({})", std::any::type_name::<T>())
    }

    fn train_epoch(
        &mut self,
        order: &[u32],
        batch_size: usize,
        lr: f32,
        l2: f32,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Sums> {
        let lr = T::from_f32(lr).expect("f32 converts");
        let l2 = T::from_f32(l2).expect("f32 converts");
        let mut sums = Sums::default();
        for batch in order.chunks(batch_size) {
            let (xb, yb) = gather(batch, self.x.view(), &self.y);
            let (loss, hits) = step(xb.view(), &yb, &mut self.w, &mut self.b, lr, l2);
            sums.add(Self::to_f64(loss), Self::to_f64(hits), batch.len());
            progress(batch.len());
        }
        Ok(sums)
    }

    fn evaluate(&mut self) -> Result<Option<Sums>> {
        let Some((x, y)) = &self.held_out else {
            return Ok(None);
        };
        let mut sums = Sums::default();
        // Blocks of rows keep the temporaries small on large held-out sets.
        for start in (0..y.len()).step_by(4096) {
            let end = (start + 4096).min(y.len());
            let xb = x.slice(ndarray::s![start..end, ..]);
            let z = logits(xb, self.w.view(), self.b.view());
            let (_, stats) = softmax(z.view(), &y[start..end]);
            let (loss, hits) = metrics(stats.view());
            sums.add(Self::to_f64(loss), Self::to_f64(hits), end - start);
        }
        Ok(Some(sums))
    }

    fn params(&mut self) -> Result<Params> {
        Ok(Params {
            w: self.w.mapv(|v| v.to_f32().unwrap_or(f32::NAN)),
            b: self.b.mapv(|v| v.to_f32().unwrap_or(f32::NAN)),
        })
    }
}
