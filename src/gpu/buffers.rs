//! Buffer creation and readback.

use std::num::NonZeroU64;

use wgpu::util::DeviceExt;

use super::context::GpuContext;
use super::kernels::StepUniform;
use crate::error::Result;

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// A storage buffer holding `data` (at least 4 bytes: empty arrays get one padding word).
pub fn storage_init<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, data: &[T]) -> wgpu::Buffer {
    let bytes: &[u8] = bytemuck::cast_slice(data);
    if bytes.is_empty() {
        return storage_zeroed(ctx, label, 4);
    }
    ctx.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: STORAGE,
        })
}

/// A zero-filled storage buffer of `bytes` bytes (rounded up to 4, at least 4).
pub fn storage_zeroed(ctx: &GpuContext, label: &str, bytes: u64) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4).next_multiple_of(4),
        usage: STORAGE,
        mapped_at_creation: false,
    })
}

/// A storage buffer holding `data` that kernels may also read through uniform windows (W, R:
/// [`crate::gpu::kernels::Kernel::window_operand`]): uniform usage beside storage, and
/// [`WINDOW_BYTES`](crate::gpu::kernels::WINDOW_BYTES) of zeros past the data so that the last window's binding
/// stays inside it.
pub fn storage_windowed<T: bytemuck::Pod>(
    ctx: &GpuContext,
    label: &str,
    data: &[T],
) -> wgpu::Buffer {
    let bytes: &[u8] = bytemuck::cast_slice(data);
    let buffer = storage_windowed_zeroed(ctx, label, bytes.len() as u64);
    if !bytes.is_empty() {
        ctx.queue.write_buffer(&buffer, 0, bytes);
    }
    buffer
}

/// [`storage_windowed`] of `bytes` zeros.
pub fn storage_windowed_zeroed(ctx: &GpuContext, label: &str, bytes: u64) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.next_multiple_of(4) + crate::gpu::kernels::WINDOW_BYTES,
        usage: STORAGE | wgpu::BufferUsages::UNIFORM,
        mapped_at_creation: false,
    })
}

/// A uniform buffer holding `value`.
pub fn uniform_init<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, value: &T) -> wgpu::Buffer {
    ctx.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
}

/// Reads `len` values of type `T` starting at byte `offset` of `buffer`. Blocks until the device is done
/// ([`GpuContext::read`]).
pub fn read<T: bytemuck::Pod>(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    offset: u64,
    len: usize,
) -> Result<Vec<T>> {
    ctx.read(buffer, offset, len)
}

/// A uniform buffer of `slots` [`StepUniform`]s spaced by the adapter's dynamic-offset alignment, and its bind group.
#[derive(Debug)]
pub struct StepSlots {
    buffer: wgpu::Buffer,
    /// Bind group for group 0; pass [`StepSlots::offset`] as its dynamic offset.
    pub bind_group: wgpu::BindGroup,
    stride: u64,
    slots: usize,
}

impl StepSlots {
    /// Room for `slots` steps.
    pub fn new(ctx: &GpuContext, slots: usize) -> Self {
        let size = std::mem::size_of::<StepUniform>() as u64;
        let stride = size.next_multiple_of(u64::from(
            ctx.limits.min_uniform_buffer_offset_alignment.max(1),
        ));
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("steps"),
            size: stride * slots as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("steps"),
            layout: &ctx.kernels.step_layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &buffer,
                    offset: 0,
                    size: NonZeroU64::new(size),
                }),
            }],
        });
        StepSlots {
            buffer,
            bind_group,
            stride,
            slots,
        }
    }

    /// How many steps fit.
    pub fn capacity(&self) -> usize {
        self.slots
    }

    /// Queues the parameters of steps 0.. for the next submission.
    pub fn write(&self, ctx: &GpuContext, steps: &[StepUniform]) {
        assert!(steps.len() <= self.slots, "more steps than slots");
        let mut bytes = vec![0u8; self.stride as usize * steps.len()];
        for (i, s) in steps.iter().enumerate() {
            let at = i * self.stride as usize;
            bytes[at..at + std::mem::size_of::<StepUniform>()]
                .copy_from_slice(bytemuck::bytes_of(s));
        }
        if !bytes.is_empty() {
            ctx.queue.write_buffer(&self.buffer, 0, &bytes);
        }
    }

    /// The dynamic offset of slot `i`.
    pub fn offset(&self, i: usize) -> u32 {
        (self.stride * i as u64) as u32
    }
}

/// The per-segment partial sums of the one-pass kernel (`fused_held.wgsl`) for `d` features and `k` classes, for
/// as many segments as a batch may be cut into, and the segments' (loss, hits): what it writes and `reduce.wgsl`
/// reads.
pub fn fused_partials(ctx: &GpuContext, d: u32, k: u32) -> (wgpu::Buffer, wgpu::Buffer) {
    let segments = u64::from(super::kernels::fused_max_segments(d, k));
    (
        storage_zeroed(
            ctx,
            "segment partials",
            segments * super::kernels::fused_partial_bytes(d, k),
        ),
        storage_zeroed(ctx, "segment metrics", segments * 8),
    )
}
