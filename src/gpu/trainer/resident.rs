//! Held sets on the device: each is split into chunks that fit one storage binding, with the bind groups that gather
//! a batch's rows from them or read them in place.

use std::sync::Arc;

use crate::data::SparseRows;
use crate::gpu::kernels::{held_slots, Kernel};

use super::GpuBackend;

/// One held chunk on the device and its gather bind group (rebuilt when the batch buffers change).
#[derive(Debug)]
pub(super) struct DeviceChunk {
    pub(super) x: wgpu::Buffer,
    pub(super) y: wgpu::Buffer,
    pub(super) info: wgpu::Buffer,
    pub(super) gather: Option<wgpu::BindGroup>,
}

/// The bind groups of the kernels that read a held set's rows in place (rebuilt when the batch buffers change).
#[derive(Debug)]
pub(super) struct HeldGroups {
    pub(super) forward: wgpu::BindGroup,
    pub(super) grad: wgpu::BindGroup,
}

/// What a held set needs for its rows to be read in place: the labels of the whole set in one buffer and its
/// layout; `groups` binds them with the chunks.
#[derive(Debug)]
pub(super) struct InPlace {
    pub(super) labels: wgpu::Buffer,
    pub(super) layout: wgpu::Buffer,
    pub(super) groups: Option<HeldGroups>,
}

#[derive(Debug)]
pub(super) struct Resident {
    pub(super) rows: usize,
    pub(super) chunks: Vec<DeviceChunk>,
    /// Present when the held kernels read this set's rows in place (no gather copy).
    pub(super) in_place: Option<InPlace>,
    /// Sparse rows, kept in host memory as CSR: each batch's rows go up in both layouts the sparse kernels read
    /// (a few hundred KB a step), which a device-side gather of variable-length rows would need a prefix sum for.
    pub(super) sparse: Option<Arc<SparseRows>>,
    /// Held until released (a set of no rows, a process's empty shard, has no chunks but is held all the same).
    pub(super) live: bool,
}

impl Resident {
    pub(super) fn released(&self) -> bool {
        !self.live
    }
}

impl GpuBackend<'_> {
    /// The held kernels' bind groups over `r`'s chunks (unused slots repeat chunk 0), when it is read in place.
    pub(super) fn held_groups(&self, r: &Resident) -> Option<HeldGroups> {
        let p = r.in_place.as_ref()?;
        let chunks: Vec<&wgpu::Buffer> = r.chunks.iter().map(|c| &c.x).collect();
        let [x0, x1, x2, x3] = held_slots(&chunks);
        let (b, m) = (&self.batch, &self.model);
        let (kern, dev) = (&self.ctx.kernels, &self.ctx.device);
        Some(HeldGroups {
            forward: kern.bind(
                dev,
                Kernel::ForwardHeld,
                &[
                    x0,
                    x1,
                    x2,
                    x3,
                    &p.labels,
                    &b.perm,
                    &p.layout,
                    &m.w,
                    &m.b,
                    &b.r,
                    &b.row_stats,
                    &m.cw,
                    &b.sw,
                ],
            ),
            grad: kern.bind(
                dev,
                Kernel::GradHeld,
                &[x0, x1, x2, x3, &b.perm, &p.layout, &b.r, &m.g, &m.gb],
            ),
        })
    }

    pub(super) fn gather_group(&self, c: &DeviceChunk) -> wgpu::BindGroup {
        let b = &self.batch;
        self.ctx.kernels.bind(
            &self.ctx.device,
            Kernel::Gather,
            &[&b.perm, &c.x, &c.y, &c.info, &b.x, &b.y, &b.xt],
        )
    }

    /// Puts a held set in the first released slot (streaming holds and releases a set per chunk).
    pub(super) fn free_slot(&mut self, resident: Resident) -> usize {
        match self.held.iter().position(Resident::released) {
            Some(free) => {
                self.held[free] = resident;
                free
            }
            None => {
                self.held.push(resident);
                self.held.len() - 1
            }
        }
    }
}
