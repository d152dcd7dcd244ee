//! Sparse batches: the CSR batch and its transpose over the touched columns, uploaded for the sparse kernels.

use crate::data::SparseRows;
use crate::error::{Error, Result};
use crate::gpu::buffers::storage_zeroed;
use crate::gpu::kernels::Kernel;

use super::{u32_of, GpuBackend, Rows};

/// The buffers of one sparse batch and the bind groups of the sparse kernels over them (rebuilt when they or the
/// batch buffers grow).
#[derive(Debug)]
pub(super) struct SparseBuffers {
    pub(super) nnz: usize,
    pub(super) rows: usize,
    pub(super) offsets: wgpu::Buffer,
    pub(super) indices: wgpu::Buffer,
    pub(super) values: wgpu::Buffer,
    pub(super) cols: wgpu::Buffer,
    pub(super) ptr: wgpu::Buffer,
    pub(super) col_rows: wgpu::Buffer,
    pub(super) col_vals: wgpu::Buffer,
    pub(super) logits: wgpu::BindGroup,
    pub(super) grad: wgpu::BindGroup,
}

impl GpuBackend<'_> {
    /// Makes the sparse buffers hold a batch of `rows` rows and `nnz` entries (and bind them to the batch buffers).
    pub(super) fn ensure_sparse(&mut self, rows: usize, nnz: usize) {
        if self
            .sparse_buffers
            .as_ref()
            .is_some_and(|b| b.rows >= rows && b.nnz >= nnz)
        {
            return;
        }
        let old = self
            .sparse_buffers
            .as_ref()
            .map_or((0, 0), |b| (b.rows, b.nnz));
        let rows = rows.max(old.0).max(self.batch.capacity);
        let nnz = nnz.max(old.1 * 2).max(1 << 12);
        let ctx = self.ctx;
        let entries = nnz as u64 * 4;
        let offsets = storage_zeroed(ctx, "sparse offsets", (rows as u64 + 1) * 4);
        let indices = storage_zeroed(ctx, "sparse indices", entries);
        let values = storage_zeroed(ctx, "sparse values", entries);
        let cols = storage_zeroed(ctx, "sparse cols", self.shape.d as u64 * 4);
        let ptr = storage_zeroed(ctx, "sparse ptr", (self.shape.d as u64 + 1) * 4);
        let col_rows = storage_zeroed(ctx, "sparse col_rows", entries);
        let col_vals = storage_zeroed(ctx, "sparse col_vals", entries);
        let (kern, dev, m, b) = (&ctx.kernels, &ctx.device, &self.model, &self.batch);
        let logits = kern.bind(
            dev,
            Kernel::SparseLogits,
            &[&offsets, &indices, &values, &m.w, &m.b, &b.z],
        );
        let grad = kern.bind(
            dev,
            Kernel::SparseGrad,
            &[&cols, &ptr, &col_rows, &col_vals, &b.r, &m.g, &m.gb],
        );
        self.sparse_buffers = Some(SparseBuffers {
            nnz,
            rows,
            offsets,
            indices,
            values,
            cols,
            ptr,
            col_rows,
            col_vals,
            logits,
            grad,
        });
    }

    /// Uploads the rows `rows` of a sparse set as one batch (both layouts) and its labels.
    pub(super) fn stage_sparse(
        &mut self,
        set: &SparseRows,
        rows: &[u32],
        slot: bool,
    ) -> Result<Rows> {
        let b = set.batch(rows);
        u32_of(b.nnz(), "non-zeros in one batch")?;
        let max = Self::max_binding(self.ctx) / 4;
        if b.nnz() as u64 > max {
            return Err(Error::Limits {
                device: self.ctx.describe(),
                what: format!(
                    "a sparse batch of {} rows with {} non-zeros",
                    b.len(),
                    b.nnz()
                ),
                needed: b.nnz() as u64 * 4,
                limit: Self::max_binding(self.ctx),
                hint: Some("use a smaller --batch-size".into()),
            });
        }
        // Queued ops read the sparse buffers: submit them before the host overwrites them.
        self.flush()?;
        self.ensure_sparse(b.len(), b.nnz());
        self.reserve(0, slot)?;
        let q = &self.ctx.queue;
        let sb = self.sparse_buffers.as_ref().expect("ensured above");
        q.write_buffer(&sb.offsets, 0, bytemuck::cast_slice(&b.offsets));
        q.write_buffer(&sb.ptr, 0, bytemuck::cast_slice(&b.touched_ptr()));
        if !b.cols.is_empty() {
            q.write_buffer(&sb.cols, 0, bytemuck::cast_slice(&b.cols));
        }
        // The step's columns so far: what its update will cover.
        for &j in &b.cols {
            if !self.touched_mark[j as usize] {
                self.touched_mark[j as usize] = true;
                self.touched.push(j);
            }
        }
        if b.nnz() > 0 {
            q.write_buffer(&sb.indices, 0, bytemuck::cast_slice(&b.indices));
            q.write_buffer(&sb.values, 0, bytemuck::cast_slice(&b.values));
            q.write_buffer(&sb.col_rows, 0, bytemuck::cast_slice(&b.col_rows));
            q.write_buffer(&sb.col_vals, 0, bytemuck::cast_slice(&b.col_vals));
        }
        q.write_buffer(&self.batch.y, 0, bytemuck::cast_slice(&b.y));
        Ok(Rows::Sparse {
            touched: u32_of(b.cols.len(), "touched columns")?,
        })
    }
}
