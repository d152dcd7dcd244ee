//! Held sets on the device: each is split into chunks that fit one storage binding, with the bind groups that gather
//! a batch's rows from them or read them in place.

use std::sync::Arc;

use crate::data::{RowSource, SparseRows};
use crate::error::{Error, Result};
use crate::gpu::buffers::{storage_zeroed, uniform_init};
use crate::gpu::kernels::{held_slots, ChunkUniform, HeldUniform, Kernel, HELD_SLOTS};
use crate::train::Held;

use super::{u32_of, GpuBackend};

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
    /// forward_held's (K ≤ 16) or logits_held's (K > 16).
    pub(super) forward: wgpu::BindGroup,
    pub(super) grad: wgpu::BindGroup,
    /// The one-pass kernel's, when the backend runs it.
    pub(super) fused: Option<wgpu::BindGroup>,
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
        let forward = if self.shape.k <= 16 {
            kern.bind(
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
            )
        } else {
            kern.bind(
                dev,
                Kernel::LogitsHeld,
                &[
                    x0, x1, x2, x3, &p.labels, &b.perm, &p.layout, &m.w, &m.b, &b.z, &b.y,
                ],
            )
        };
        Some(HeldGroups {
            forward,
            // Split over rows (the GPU shape), it writes the partials that reduce.wgsl adds into G and g_b.
            grad: kern.bind(
                dev,
                Kernel::GradHeld,
                &[
                    x0,
                    x1,
                    x2,
                    x3,
                    &b.perm,
                    &p.layout,
                    &b.r,
                    self.fused_step
                        .as_ref()
                        .filter(|_| self.split_grad)
                        .map_or(&m.g, |f| &f.gp),
                    &m.gb,
                    &m.window_sums,
                ],
            ),
            // Only when the backend runs it: the partials are also made for the split gradient alone, on adapters
            // that may not build the fused kernel.
            fused: self.fused_step.as_ref().filter(|_| self.one_pass).map(|f| {
                kern.bind(
                    dev,
                    Kernel::FusedHeld,
                    &[
                        x0, x1, x2, x3, &p.labels, &b.perm, &p.layout, &m.w, &m.b, &m.cw, &b.sw,
                        &f.gp, &f.mp,
                    ],
                )
            }),
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

    /// The set `set` names, when it is one this backend holds.
    pub(super) fn resident(&self, set: Held) -> Result<&Resident> {
        self.held
            .get(set.id())
            .filter(|h| h.rows == set.len() && !h.released())
            .ok_or_else(|| Error::Internal(format!("held set {} is not this backend's", set.id())))
    }

    /// Holds sparse rows: in host memory, as CSR (see [`Resident::sparse`]).
    pub(super) fn hold_sparse(&mut self, source: &mut dyn RowSource) -> Result<Held> {
        let rows = SparseRows::read(source)?;
        let n = rows.len();
        let id = self.free_slot(Resident {
            rows: n,
            chunks: Vec::new(),
            in_place: None,
            sparse: Some(rows),
            live: true,
        });
        Ok(Held::new(id, n))
    }

    /// Holds dense rows on the device, in chunks of at most `chunk_rows` rows, with the bind groups that gather from
    /// them and, when the held kernels can read the set in place (at most [`crate::gpu::kernels::HELD_SLOTS`] chunks, labels in one
    /// binding), its labels in one buffer and their bind groups.
    pub(super) fn hold_dense(&mut self, source: &mut dyn RowSource) -> Result<Held> {
        source.rewind()?;
        let ctx = self.ctx;
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let name = source.name().to_string();
        let total = source.rows().map_or(usize::MAX, |n| n as usize);
        let labels = (self.in_place
            && total != usize::MAX
            && total.div_ceil(self.chunk_rows) <= HELD_SLOTS
            && total as u64 * 4 <= Self::max_binding(ctx))
        .then(|| storage_zeroed(ctx, &format!("{name} labels"), total as u64 * 4));
        let mut upload = Upload {
            source,
            name: &name,
            total,
            labels: labels.as_ref(),
            uploaded: None,
        };
        let (mut chunks, mut rows) = (Vec::new(), 0usize);
        while rows < total {
            let Some((chunk, n)) = self.upload_chunk(&mut upload, rows)? else {
                break;
            };
            rows += n;
            u32_of(rows, "held rows")?;
            chunks.push(chunk);
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::gpu(
                ctx.describe(),
                format!("uploading {rows} rows of {name}"),
                e,
            ));
        }
        for c in &mut chunks {
            c.gather = Some(self.gather_group(c));
        }
        // A set of no rows (a process's empty shard) is held without chunks, and read by no kernel.
        let labels = labels.filter(|_| rows > 0);
        let in_place = labels.map(|labels| InPlace {
            labels,
            layout: uniform_init(
                ctx,
                "held set",
                &HeldUniform::new(self.chunk_rows, chunks.len()),
            ),
            groups: None,
        });
        let mut resident = Resident {
            rows,
            chunks,
            in_place,
            sparse: None,
            live: true,
        };
        let groups = self.held_groups(&resident);
        if let Some(p) = resident.in_place.as_mut() {
            p.groups = groups;
        }
        let id = self.free_slot(resident);
        ctx.take_error()?;
        Ok(Held::new(id, rows))
    }

    /// Reads and uploads the device chunk that starts at row `first` of the set: as many rows as remain, up to a
    /// chunk (or one piece, when the length is unknown); None at the end of the source. Each chunk is filled by
    /// reads of at most 16 MiB, each written with its own submission; the one before is waited for first, so that
    /// the staging copies in flight stay at two pieces (on a software adapter they are host memory) and a file is
    /// held on the device without ever being whole on the host. A set of one piece (a streamed chunk) is not waited
    /// for, and overlaps the training queued before it.
    fn upload_chunk(
        &self,
        up: &mut Upload<'_, '_>,
        first: usize,
    ) -> Result<Option<(DeviceChunk, usize)>> {
        let ctx = self.ctx;
        let d = self.shape.d;
        let piece_rows = ((16usize << 20) / (d * 4)).max(1);
        let total = up.total;
        let Some(piece) = up.source.next_chunk(piece_rows.min(self.chunk_rows))? else {
            return Ok(None);
        };
        let n = if total == usize::MAX {
            piece.len()
        } else {
            (total - first).min(self.chunk_rows)
        };
        let label = format!("{} rows {first}..{}", up.name, first + n);
        let x = storage_zeroed(ctx, &label, (n * d * 4) as u64);
        let y = storage_zeroed(ctx, &label, (n * 4) as u64);
        let mut filled = 0usize;
        let mut next = Some(piece);
        while let Some(piece) = next.take() {
            if let Some(previous) = up.uploaded.take() {
                ctx.wait_for(previous)?;
            }
            let xs = piece.x();
            let xs = xs.as_standard_layout();
            let flat = xs.as_slice().expect("standard layout is contiguous");
            ctx.queue
                .write_buffer(&x, (filled * d * 4) as u64, bytemuck::cast_slice(flat));
            ctx.queue
                .write_buffer(&y, (filled * 4) as u64, bytemuck::cast_slice(piece.y()));
            if let Some(labels) = up.labels {
                ctx.queue.write_buffer(
                    labels,
                    ((first + filled) * 4) as u64,
                    bytemuck::cast_slice(piece.y()),
                );
            }
            up.uploaded = Some(ctx.queue.submit([]));
            filled += piece.len();
            if filled < n {
                next = up.source.next_chunk(piece_rows.min(n - filled))?;
                if next.is_none() {
                    return Err(Error::Internal(format!(
                        "{}: ended at row {}, before the {total} rows it announced",
                        up.name,
                        first + filled
                    )));
                }
            }
        }
        let info = ChunkUniform {
            first_row: u32_of(first, "held rows")?,
            rows: n as u32,
        };
        let chunk = DeviceChunk {
            x,
            y,
            info: uniform_init(ctx, "chunk", &info),
            gather: None,
        };
        Ok(Some((chunk, n)))
    }
}

/// A held set being uploaded: its source, the labels buffer of an in-place set, and the last piece's submission.
struct Upload<'s, 'b> {
    source: &'s mut dyn RowSource,
    name: &'s str,
    total: usize,
    labels: Option<&'b wgpu::Buffer>,
    uploaded: Option<wgpu::SubmissionIndex>,
}
