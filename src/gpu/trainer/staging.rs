//! The batch and model buffers, and staging a batch for the queue: its perm entries (held rows), its rows (host
//! batches), its row weights, its uniform and its loss slot.

use crate::error::{Error, Result};
use crate::gpu::buffers::{storage_init, storage_windowed_zeroed, storage_zeroed};
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{window_sums_bytes, Kernel, StepUniform, WEIGHTED_ROWS};
use crate::params::Shape;
use crate::train::{Batch, BatchRows};

use super::{GpuBackend, Rows, OPS_PER_SUBMIT, SUM_SLOTS};

/// The per-batch buffers and the bind groups that use them.
#[derive(Debug)]
pub(super) struct BatchBuffers {
    pub(super) capacity: usize,
    pub(super) perm_capacity: usize,
    pub(super) perm: wgpu::Buffer,
    /// Sample weights of the queued batches' rows, a ring as `perm` is (same capacity).
    pub(super) sw: wgpu::Buffer,
    /// The batch's X row-major (the gradient reads it) and feature-major (the logits kernel reads it).
    pub(super) x: wgpu::Buffer,
    pub(super) xt: wgpu::Buffer,
    pub(super) y: wgpu::Buffer,
    /// Logits, residuals and per-row loss / hit (the sparse and held kernels' bind groups name them).
    pub(super) z: wgpu::Buffer,
    pub(super) r: wgpu::Buffer,
    pub(super) row_stats: wgpu::Buffer,
    pub(super) logits: wgpu::BindGroup,
    /// The fused forward pass (K ≤ 16).
    pub(super) forward: wgpu::BindGroup,
    /// The softmax writing S (evaluation) and, in a training step, writing the residual R (softmax.wgsl's TRAIN).
    pub(super) softmax: wgpu::BindGroup,
    pub(super) softmax_train: wgpu::BindGroup,
    pub(super) grad: wgpu::BindGroup,
    /// grad.wgsl split over rows, writing the per-segment partials, when the backend splits the gradient.
    pub(super) grad_split: Option<wgpu::BindGroup>,
    pub(super) metrics: wgpu::BindGroup,
}

/// The buffers that live as long as the model: weights, gradient sums, loss slots.
#[derive(Debug)]
pub(super) struct ModelBuffers {
    pub(super) w: wgpu::Buffer,
    pub(super) b: wgpu::Buffer,
    pub(super) g: wgpu::Buffer,
    pub(super) gb: wgpu::Buffer,
    pub(super) sums: wgpu::Buffer,
    /// Class weights, K of them (ones without class weights).
    pub(super) cw: wgpu::Buffer,
    /// Where the gradient kernels carry their sums between windows ([`window_sums_bytes`]).
    pub(super) window_sums: wgpu::Buffer,
    pub(super) update: wgpu::BindGroup,
}

impl GpuBackend<'_> {
    pub(super) fn model_buffers(ctx: &GpuContext, shape: Shape) -> ModelBuffers {
        let dk = (shape.d * shape.k) as u64 * 4;
        let k = shape.k as u64 * 4;
        let w = storage_windowed_zeroed(ctx, "w", dk);
        let b = storage_zeroed(ctx, "b", k);
        let g = storage_zeroed(ctx, "g", dk);
        let gb = storage_zeroed(ctx, "gb", k);
        let window_sums = storage_zeroed(
            ctx,
            "window sums",
            window_sums_bytes(shape.d as u32, shape.k as u32),
        );
        let sums = storage_zeroed(ctx, "sums", SUM_SLOTS as u64 * 8);
        let cw = storage_init(ctx, "class weights", &vec![1.0f32; shape.k]);
        let update = ctx
            .kernels
            .bind(&ctx.device, Kernel::Update, &[&g, &gb, &w, &b]);
        ModelBuffers {
            w,
            b,
            g,
            gb,
            sums,
            cw,
            window_sums,
            update,
        }
    }

    /// Batch buffers of `capacity` rows and the bind groups that use them.
    pub(super) fn batch_buffers(
        ctx: &GpuContext,
        shape: Shape,
        m: &ModelBuffers,
        capacity: usize,
        sparse: bool,
        partials: Option<&wgpu::Buffer>,
    ) -> BatchBuffers {
        let (d, k) = (shape.d as u64, shape.k as u64);
        let rows = capacity as u64;
        // Sparse training never has a dense X on the device.
        let x_bytes = if sparse { 4 } else { rows * d * 4 };
        let x = storage_zeroed(ctx, "batch x", x_bytes);
        let xt = storage_zeroed(ctx, "batch x feature-major", x_bytes);
        let y = storage_zeroed(ctx, "batch y", rows * 4);
        let (z, s, r) = (
            storage_zeroed(ctx, "z", rows * k * 4),
            storage_zeroed(ctx, "s", rows * k * 4),
            storage_windowed_zeroed(ctx, "r", rows * k * 4),
        );
        let row_stats = storage_zeroed(ctx, "row stats", rows * 8);
        // Room for the rows of many queued steps; a full ring is submitted before it is reused.
        let perm_capacity = (capacity * 16).max(1 << 16);
        let perm = storage_zeroed(ctx, "perm", perm_capacity as u64 * 4);
        let sw = storage_zeroed(ctx, "sample weights", perm_capacity as u64 * 4);
        let (kern, dev) = (&ctx.kernels, &ctx.device);
        BatchBuffers {
            capacity,
            perm_capacity,
            logits: kern.bind(dev, Kernel::Logits, &[&xt, &m.w, &m.b, &z]),
            forward: kern.bind(
                dev,
                Kernel::Forward,
                &[&xt, &m.w, &m.b, &y, &r, &row_stats, &m.cw, &sw],
            ),
            softmax: kern.bind(dev, Kernel::Softmax, &[&z, &y, &s, &row_stats, &m.cw, &sw]),
            softmax_train: kern.bind(dev, Kernel::Softmax, &[&z, &y, &r, &row_stats, &m.cw, &sw]),
            grad: kern.bind(dev, Kernel::Grad, &[&x, &r, &m.g, &m.gb, &m.window_sums]),
            grad_split: partials
                .map(|gp| kern.bind(dev, Kernel::Grad, &[&x, &r, gp, &m.gb, &m.window_sums])),
            metrics: kern.bind(dev, Kernel::Metrics, &[&row_stats, &m.sums]),
            perm,
            sw,
            x,
            xt,
            y,
            z,
            r,
            row_stats,
        }
    }

    /// A batch cut into pieces of at most [`Backend::max_batch`] rows, in order: a batch larger than one binding
    /// (full-batch gradient descent on a large data set) is accumulated piece by piece, its gradient sums added in
    /// piece order, so any batch size works on every adapter.
    pub(super) fn pieces<'b>(&self, batch: &'b Batch<'_>) -> Result<Vec<Batch<'b>>> {
        self.shape.check_batch(batch)?;
        let n = batch.len();
        let piece = self.max_batch.max(1);
        Ok((0..n)
            .step_by(piece)
            .map(|start| batch.slice(start, (start + piece).min(n)))
            .collect())
    }

    /// Makes the batch buffers hold `rows` rows, or says why they cannot.
    pub(super) fn ensure_capacity(&mut self, rows: usize) -> Result<()> {
        if rows <= self.batch.capacity {
            return Ok(());
        }
        if rows > self.max_batch {
            let d = self.shape.d;
            return Err(Error::Limits {
                device: self.ctx.describe(),
                what: format!("a batch of {rows} rows × {d} features"),
                needed: rows as u64 * (d.max(self.shape.k) as u64) * 4,
                limit: Self::max_binding(self.ctx),
                hint: Some(format!(
                    "use --batch-size {} or less (this adapter's largest storage binding)",
                    self.max_batch
                )),
            });
        }
        self.flush()?;
        let capacity = rows.max(self.batch.capacity * 2).min(self.max_batch);
        let partials = self
            .fused_step
            .as_ref()
            .filter(|_| self.split_grad)
            .map(|f| &f.gp);
        self.batch = Self::batch_buffers(
            self.ctx,
            self.shape,
            &self.model,
            capacity,
            self.sparse,
            partials,
        );
        self.sparse_buffers = None;
        for h in 0..self.held.len() {
            for c in 0..self.held[h].chunks.len() {
                let group = self.gather_group(&self.held[h].chunks[c]);
                self.held[h].chunks[c].gather = Some(group);
            }
            let groups = self.held_groups(&self.held[h]);
            if let Some(p) = self.held[h].in_place.as_mut() {
                p.groups = groups;
            }
        }
        Ok(())
    }

    /// Makes room for one more op with `perm_rows` perm entries and a loss slot if `slot`: submits what is queued
    /// when the op list or the perm ring is full, reads the slots back when they are.
    pub(super) fn reserve(&mut self, perm_rows: usize, slot: bool) -> Result<()> {
        // Each dispatch writes one timestamp when profiling; the most an op can add is its gathers and 5 kernels.
        let queries_full = self.profiler.as_ref().is_some_and(|p| {
            let per_op = self.held.iter().map(|h| h.chunks.len()).max().unwrap_or(0) + 5;
            let queued: usize = self.ops.iter().map(|op| self.plan(op).len()).sum();
            queued + per_op + 1 > p.capacity as usize
        });
        if self.ops.len() >= OPS_PER_SUBMIT
            || self.perm_data.len() + perm_rows > self.batch.perm_capacity
            || self.sw_data.len() + perm_rows > self.batch.perm_capacity
            || queries_full
        {
            self.flush()?;
        }
        if slot && self.slot_rows.len() >= SUM_SLOTS {
            self.drain_sums()?;
        }
        Ok(())
    }

    /// Queues the rows of `batch` for the next op: perm entries for held rows, a copy into the batch buffer for
    /// host rows. Returns where the op reads them from and its perm offset.
    pub(super) fn stage(&mut self, batch: &Batch<'_>, slot: bool) -> Result<(Rows, u32)> {
        let n = batch.len();
        self.ensure_capacity(n)?;
        match batch.rows() {
            BatchRows::Held { set, rows } => {
                self.resident(*set)?;
                if let Some(sparse) = self.held[set.id()].sparse.clone() {
                    return Ok((self.stage_sparse(&sparse, rows, slot)?, 0));
                }
                self.reserve(n, slot)?;
                let offset = self.perm_data.len() as u32;
                self.perm_data.extend_from_slice(rows);
                Ok((Rows::Held(set.id()), offset))
            }
            BatchRows::Host(chunk) => {
                if self.sparse {
                    return Err(self.wrong_kind(&format!("rows from {}", chunk.first_row())));
                }
                // Queued ops read the batch buffer: submit them before the host overwrites it.
                self.flush()?;
                self.reserve(0, slot)?;
                let x = chunk.x();
                let x = x.as_standard_layout();
                let flat = x.as_slice().expect("standard layout is contiguous");
                let q = &self.ctx.queue;
                q.write_buffer(&self.batch.x, 0, bytemuck::cast_slice(flat));
                let transposed: Vec<f32> = x.t().iter().copied().collect();
                q.write_buffer(&self.batch.xt, 0, bytemuck::cast_slice(&transposed));
                q.write_buffer(&self.batch.y, 0, bytemuck::cast_slice(chunk.y()));
                Ok((Rows::Host, 0))
            }
        }
    }

    /// Queues the batch's row weights, when it has them, after `stage` made room: the uniform then points at them.
    pub(super) fn stage_weights(&mut self, batch: &Batch<'_>, uniform: StepUniform) -> StepUniform {
        match batch.weights() {
            Some(w) => {
                let sw_offset = self.sw_data.len() as u32;
                self.sw_data.extend_from_slice(w);
                StepUniform {
                    sw_offset,
                    flags: uniform.flags | WEIGHTED_ROWS,
                    ..uniform
                }
            }
            None => uniform,
        }
    }

    pub(super) fn uniform(
        &self,
        rows: usize,
        perm_offset: u32,
        slot: u32,
        flags: u32,
    ) -> StepUniform {
        StepUniform {
            rows: rows as u32,
            perm_offset,
            d: self.shape.d as u32,
            k: self.shape.k as u32,
            slot,
            flags,
            ..StepUniform::default()
        }
    }

    pub(super) fn take_slot(&mut self, rows: usize) -> u32 {
        self.slot_rows.push(rows);
        (self.slot_rows.len() - 1) as u32
    }
}
