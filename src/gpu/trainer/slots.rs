//! The optimizer's state on the device: its slot buffers and the bind group of its update kernel.

use crate::error::{Error, Result};
use crate::gpu::buffers::{storage_init, storage_zeroed};
use crate::gpu::kernels::Kernel;

use super::GpuBackend;

impl GpuBackend<'_> {
    /// Makes the optimizer's `count` state buffers (zeros, or `values`) and its kernel's bind group, unless they
    /// exist already with that count.
    pub(super) fn ensure_slots(&mut self, count: usize, values: Option<&[&[f32]]>) -> Result<()> {
        match &self.opt_slots {
            Some((buffers, _)) if buffers.len() == count => return Ok(()),
            Some((buffers, _)) => {
                return Err(Error::Internal(format!(
                    "optimizer state of {} slots given to an optimizer with {count}",
                    buffers.len()
                )))
            }
            None => {}
        }
        let ctx = self.ctx;
        let n = (self.shape.d * self.shape.k + self.shape.k) as u64;
        let buffers: Vec<wgpu::Buffer> = (0..count)
            .map(|i| match values {
                Some(v) => storage_init(ctx, "optimizer state", v[i]),
                None => storage_zeroed(ctx, "optimizer state", n * 4),
            })
            .collect();
        let m = &self.model;
        let group = if count == 1 {
            ctx.kernels.bind(
                &ctx.device,
                Kernel::UpdateMomentum,
                &[&m.g, &m.gb, &m.w, &m.b, &buffers[0]],
            )
        } else {
            ctx.kernels.bind(
                &ctx.device,
                Kernel::UpdateAdam,
                &[&m.g, &m.gb, &m.w, &m.b, &buffers[0], &buffers[1]],
            )
        };
        self.opt_slots = Some((buffers, group));
        Ok(())
    }
}
