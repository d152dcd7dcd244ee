//! The op queue: recording the queued ops into one compute pass, submitting it, and reading values back.

use crate::error::Result;
use crate::gpu::buffers::read;
use crate::gpu::kernels::StepUniform;

use super::{GpuBackend, Op};

#[derive(Debug, Clone, Copy)]
pub(super) enum Buffer2 {
    Weights,
    Gradient,
}

impl GpuBackend<'_> {
    /// Records the queued ops into one pass and submits it; keeps at most two submissions in flight.
    pub(super) fn flush(&mut self) -> Result<()> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let ctx = self.ctx;
        if !self.perm_data.is_empty() {
            ctx.queue
                .write_buffer(&self.batch.perm, 0, bytemuck::cast_slice(&self.perm_data));
        }
        if !self.sw_data.is_empty() {
            ctx.queue
                .write_buffer(&self.batch.sw, 0, bytemuck::cast_slice(&self.sw_data));
        }
        let uniforms: Vec<StepUniform> = self.ops.iter().map(Op::uniform).collect();
        self.steps.write(ctx, &uniforms);
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("steps"),
            });
        let mut log: Vec<&'static str> = Vec::new();
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("steps"),
                timestamp_writes: None,
            });
            let set = self.profiler.as_ref().map(|p| &p.set);
            if let Some(set) = set {
                pass.write_timestamp(set, 0);
            }
            for (i, op) in self.ops.iter().enumerate() {
                self.record(&mut pass, self.steps.offset(i), op, set, &mut log);
            }
        }
        if let Some(p) = &self.profiler {
            encoder.resolve_query_set(&p.set, 0..log.len() as u32 + 1, &p.resolve, 0);
        }
        let index = ctx.queue.submit([encoder.finish()]);
        self.ops.clear();
        self.perm_data.clear();
        self.sw_data.clear();
        if let Some(previous) = self.in_flight.replace(index) {
            ctx.wait_for(previous)?;
        }
        if self.profiler.is_some() {
            self.account(&log)?;
        }
        Ok(())
    }

    /// Submits what is queued and adds the loss slots, in order, to the host's sums.
    pub(super) fn drain_sums(&mut self) -> Result<()> {
        self.flush()?;
        if self.slot_rows.is_empty() {
            return Ok(());
        }
        let raw = read::<f32>(self.ctx, &self.model.sums, 0, 2 * self.slot_rows.len())?;
        for (pair, &rows) in raw.chunks_exact(2).zip(&self.slot_rows) {
            self.host_sums
                .add(f64::from(pair[0]), f64::from(pair[1]), rows);
        }
        self.slot_rows.clear();
        Ok(())
    }

    pub(super) fn read_matrix(&mut self, buffer: Buffer2) -> Result<(Vec<f32>, Vec<f32>)> {
        self.flush()?;
        let (d, k) = (self.shape.d, self.shape.k);
        let (a, b) = match buffer {
            Buffer2::Weights => (&self.model.w, &self.model.b),
            Buffer2::Gradient => (&self.model.g, &self.model.gb),
        };
        Ok((
            read::<f32>(self.ctx, a, 0, d * k)?,
            read::<f32>(self.ctx, b, 0, k)?,
        ))
    }

    pub(super) fn write_matrix(&mut self, buffer: Buffer2, w: &[f32], b: &[f32]) -> Result<()> {
        // Queued ops must run before the host's write lands.
        self.flush()?;
        let (wb, bb) = match buffer {
            Buffer2::Weights => (&self.model.w, &self.model.b),
            Buffer2::Gradient => (&self.model.g, &self.model.gb),
        };
        self.ctx.queue.write_buffer(wb, 0, bytemuck::cast_slice(w));
        self.ctx.queue.write_buffer(bb, 0, bytemuck::cast_slice(b));
        Ok(())
    }
}
