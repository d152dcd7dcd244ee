//! Workgroup widths chosen for this adapter and shape class: from the disk cache, or by timing the candidates.

use crate::error::Result;
use crate::gpu::kernels::{Dims, Kernel, Tuned};

use super::{widths, GpuBackend};

impl GpuBackend<'_> {
    /// The workgroup width each tuned kernel uses now.
    pub fn tuning(&self) -> Vec<(String, u32)> {
        widths(&self.tuned)
    }

    /// The widths chosen for batches of `rows` rows, once such a batch has run with autotune on.
    pub fn tuning_for(&self, rows: usize) -> Option<Vec<(String, u32)>> {
        let key = crate::gpu::tune::key(
            self.ctx,
            self.shape.d,
            self.shape.k,
            rows.min(self.max_batch),
        );
        self.tuned_for.get(&key).map(|tuned| widths(tuned))
    }

    /// Tunes the widths for batches of `rows` rows (once per shape class): from the disk cache, or by timing the
    /// candidates on the batch buffers. Only called with no gradient sums pending: timing the gradient kernel
    /// overwrites them.
    pub(super) fn autotune_for(&mut self, rows: usize) -> Result<()> {
        use crate::gpu::tune;
        let key = tune::key(self.ctx, self.shape.d, self.shape.k, rows);
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
                    let best = tune::fastest(self.ctx, kernel, self.shape.k, &candidates, |t| {
                        self.time_dispatches(t, rows)
                    })?;
                    widths.insert(kernel.name().to_string(), best);
                }
                tune::store(&key, &widths);
                widths
            }
        };
        self.tuned = tune::tuned_kernels(self.shape.k)
            .iter()
            .map(|&k| Tuned::new(self.ctx, k, widths[k.name()], self.shape.k))
            .collect();
        self.tuned_for.insert(key, self.tuned.clone());
        Ok(())
    }

    /// Wall seconds of 4 dispatches of a tuned kernel over a batch of `rows` rows (whatever the buffers hold).
    pub(super) fn time_dispatches(&self, t: &Tuned, rows: usize) -> Result<f64> {
        let ctx = self.ctx;
        let uniform = self.uniform(rows, 0, 0, 0);
        self.steps.write(ctx, &[uniform]);
        let group = match t.kernel {
            Kernel::Logits => &self.batch.logits,
            Kernel::Forward => &self.batch.forward,
            _ => &self.batch.grad,
        };
        let dims = Dims {
            rows: rows as u32,
            d: self.shape.d as u32,
            k: self.shape.k as u32,
        };
        let start = std::time::Instant::now();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for _ in 0..4 {
                t.kernel.record_with(
                    ctx,
                    (&t.pipeline, &t.constants),
                    &mut pass,
                    (&self.steps.bind_group, self.steps.offset(0)),
                    group,
                    dims,
                );
            }
        }
        ctx.queue.submit([encoder.finish()]);
        ctx.wait()?;
        Ok(start.elapsed().as_secs_f64())
    }
}
