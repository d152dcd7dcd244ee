//! Workgroup widths chosen for this adapter and shape class: from the disk cache, or by timing the candidates.

use crate::error::Result;
use crate::gpu::kernels::Tuned;
use crate::train::{Batch, BatchRows};

use super::plan::Dispatch;
use super::{widths, GpuBackend, Op, Rows};

impl GpuBackend<'_> {
    /// The workgroup width each tuned kernel uses now.
    pub fn tuning(&self) -> Vec<(String, u32)> {
        widths(&self.tuned)
    }

    /// The widths chosen for batches of `rows` rows of the training set, once such a batch has run with autotune on.
    pub fn tuning_for(&self, rows: usize) -> Option<Vec<(String, u32)>> {
        let on = if self.trains_in_place() {
            Rows::Held(0)
        } else {
            Rows::Host
        };
        let key = self.tune_key(rows.min(self.max_batch), on);
        self.tuned_for.get(&key).map(|tuned| widths(tuned))
    }

    /// The rows autotune times a batch's kernels on: its held set where that is read in place (the held kernels
    /// run), else the batch buffers (the gathered batch's kernels run).
    pub(super) fn tune_rows(&self, batch: &Batch<'_>) -> Rows {
        match batch.rows() {
            BatchRows::Held { set, .. } if self.reads_in_place(*set) => Rows::Held(set.id()),
            _ => Rows::Host,
        }
    }

    /// The cache key of a shape class: the adapter, the shape rounded up to powers of two, and whether the held
    /// kernels are the ones timed.
    fn tune_key(&self, rows: usize, on: Rows) -> String {
        let in_place = matches!(on, Rows::Held(_));
        crate::gpu::tune::key(self.ctx, self.shape.d, self.shape.k, rows, in_place)
    }

    /// Tunes the widths for batches of `rows` rows read from `on` (once per shape class): from the disk cache, or by
    /// timing the candidates on the kernels the batch's accumulate runs. Only called with no gradient sums pending:
    /// timing the gradient kernel overwrites them.
    pub(super) fn autotune_for(&mut self, rows: usize, on: Rows) -> Result<()> {
        use crate::gpu::tune;
        let key = self.tune_key(rows, on);
        if let Some(t) = self.tuned_for.get(&key) {
            self.tuned = t.clone();
            return Ok(());
        }
        let widths = match tune::cached(&key, tune::tuned_kernels(self.shape.k)) {
            Some(w) => w,
            None => {
                self.ensure_capacity(rows)?;
                self.flush()?;
                self.ctx.wait()?;
                let candidates = tune::candidates(self.ctx);
                let mut widths = std::collections::BTreeMap::new();
                for &kernel in tune::tuned_kernels(self.shape.k) {
                    let of = (self.shape.k, self.quads());
                    let best = tune::fastest(self.ctx, kernel, of, &candidates, |t| {
                        self.time_dispatches(t, rows, on)
                    })?;
                    widths.insert(kernel.name().to_string(), best);
                }
                tune::store(&key, &widths);
                widths
            }
        };
        self.tuned = tune::tuned_kernels(self.shape.k)
            .iter()
            .map(|&k| Tuned::new(self.ctx, k, widths[k.name()], self.shape.k, self.quads()))
            .collect();
        self.tuned_for.insert(key, self.tuned.clone());
        Ok(())
    }

    /// Wall seconds of 4 rounds of the dispatches an accumulate of `rows` rows read from `on` runs at the tuned
    /// kernel `t.kernel`'s width, at the candidate width `t` (over whatever the buffers hold; held rows are read
    /// through perm entries 0, 1, … written for the timing).
    pub(super) fn time_dispatches(&self, t: &Tuned, rows: usize, on: Rows) -> Result<f64> {
        let ctx = self.ctx;
        let uniform = self.uniform(rows, 0, 0, 0);
        self.steps.write(ctx, &[uniform]);
        if let Rows::Held(h) = on {
            let n = self.held[h].rows.max(1) as u32;
            let perm: Vec<u32> = (0..rows as u32).map(|i| i % n).collect();
            ctx.queue
                .write_buffer(&self.batch.perm, 0, bytemuck::cast_slice(&perm));
        }
        let planned: Vec<Dispatch> = self
            .plan(&Op::Accumulate { rows: on, uniform })
            .into_iter()
            .filter(|p| p.tuned_as() == t.kernel)
            .collect();
        let start = std::time::Instant::now();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for _ in 0..4 {
                for p in &planned {
                    self.dispatch_with(&mut pass, self.steps.offset(0), p, Some(t));
                }
            }
        }
        ctx.queue.submit([encoder.finish()]);
        ctx.wait()?;
        Ok(start.elapsed().as_secs_f64())
    }
}
