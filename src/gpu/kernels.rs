//! The shaders, their binding layouts and their pipelines, built once per device.
//!
//! Every kernel binds the per-step uniform [`StepUniform`] at group 0 (with a dynamic offset, so one buffer holds
//! the parameters of many steps of a submission) and its own buffers at group 1, in the order of its CPU mirror.

use bytemuck::{Pod, Zeroable};

/// One compute kernel, one file in shaders/.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Copies a batch's rows out of one resident chunk.
    Gather,
    /// Z = X·W + b.
    Logits,
    /// Row-wise softmax and per-row loss / correctness.
    Softmax,
    /// R = S − onehot(y).
    Residual,
    /// G = Xᵀ·R / rows, g_b = colsum(R) / rows.
    Grad,
    /// W ← W − lr·(G + l2·W), b ← b − lr·g_b.
    Update,
    /// Sums a batch's per-row loss and correctness into a slot.
    Metrics,
}

/// How a kernel sees one of its group-1 buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    ReadWrite,
    Uniform,
}

impl Kernel {
    /// Every kernel.
    pub const ALL: [Kernel; 7] = [
        Kernel::Gather,
        Kernel::Logits,
        Kernel::Softmax,
        Kernel::Residual,
        Kernel::Grad,
        Kernel::Update,
        Kernel::Metrics,
    ];

    /// The shader file's stem.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Gather => "gather",
            Kernel::Logits => "logits",
            Kernel::Softmax => "softmax",
            Kernel::Residual => "residual",
            Kernel::Grad => "grad",
            Kernel::Update => "update",
            Kernel::Metrics => "metrics",
        }
    }

    /// The WGSL source, embedded at build time.
    pub fn source(self) -> &'static str {
        match self {
            Kernel::Gather => include_str!("../../shaders/gather.wgsl"),
            Kernel::Logits => include_str!("../../shaders/logits.wgsl"),
            Kernel::Softmax => include_str!("../../shaders/softmax.wgsl"),
            Kernel::Residual => include_str!("../../shaders/residual.wgsl"),
            Kernel::Grad => include_str!("../../shaders/grad.wgsl"),
            Kernel::Update => include_str!("../../shaders/update.wgsl"),
            Kernel::Metrics => include_str!("../../shaders/metrics.wgsl"),
        }
    }

    fn bindings(self) -> &'static [Access] {
        use Access::*;
        match self {
            Kernel::Gather => &[Read, Read, Read, Uniform, ReadWrite, ReadWrite],
            Kernel::Logits => &[Read, Read, Read, ReadWrite],
            Kernel::Softmax => &[Read, Read, ReadWrite, ReadWrite],
            Kernel::Residual => &[Read, Read, ReadWrite],
            Kernel::Grad => &[Read, Read, ReadWrite, ReadWrite],
            Kernel::Update => &[Read, Read, ReadWrite, ReadWrite],
            Kernel::Metrics => &[Read, ReadWrite],
        }
    }

    fn index(self) -> usize {
        Kernel::ALL
            .iter()
            .position(|&k| k == self)
            .expect("every kernel is in ALL")
    }
}

/// The per-step parameters every kernel reads at group 0. Mirrors `struct Step` in the shaders.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct StepUniform {
    /// Rows in this batch.
    pub rows: u32,
    /// Where the batch starts in the permutation buffer.
    pub perm_offset: u32,
    /// Features.
    pub d: u32,
    /// Classes.
    pub k: u32,
    /// Learning rate.
    pub lr: f32,
    /// L2 penalty on W.
    pub l2: f32,
    /// Slot of the metrics output.
    pub slot: u32,
    /// Reserved.
    pub flags: u32,
}

/// Mirrors `struct Chunk` in gather.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct ChunkUniform {
    /// First data-set row held by the chunk.
    pub first_row: u32,
    /// Rows held by the chunk.
    pub rows: u32,
}

/// Pipelines and layouts for every kernel on one device.
#[derive(Debug)]
pub struct Kernels {
    pub(crate) step_layout: wgpu::BindGroupLayout,
    layouts: Vec<wgpu::BindGroupLayout>,
    pipelines: Vec<wgpu::ComputePipeline>,
}

fn entry(binding: u32, ty: wgpu::BufferBindingType, dynamic: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: dynamic,
            min_binding_size: None,
        },
        count: None,
    }
}

impl Kernels {
    /// Compiles every shader and builds its pipeline.
    pub fn new(device: &wgpu::Device) -> Self {
        let step_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("step"),
            entries: &[entry(0, wgpu::BufferBindingType::Uniform, true)],
        });
        let mut layouts = Vec::new();
        let mut pipelines = Vec::new();
        for kernel in Kernel::ALL {
            let entries: Vec<_> = kernel
                .bindings()
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let ty = match a {
                        Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Access::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                        Access::Uniform => wgpu::BufferBindingType::Uniform,
                    };
                    entry(i as u32, ty, false)
                })
                .collect();
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(kernel.name()),
                entries: &entries,
            });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(kernel.name()),
                bind_group_layouts: &[Some(&step_layout), Some(&layout)],
                immediate_size: 0,
            });
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.name()),
                source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.name()),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            layouts.push(layout);
            pipelines.push(pipeline);
        }
        Kernels {
            step_layout,
            layouts,
            pipelines,
        }
    }

    /// The pipeline of `kernel`.
    pub fn pipeline(&self, kernel: Kernel) -> &wgpu::ComputePipeline {
        &self.pipelines[kernel.index()]
    }

    /// Binds `buffers` (in the kernel's binding order) for `kernel`.
    pub fn bind(
        &self,
        device: &wgpu::Device,
        kernel: Kernel,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        debug_assert_eq!(
            buffers.len(),
            kernel.bindings().len(),
            "{} binds {} buffers",
            kernel.name(),
            kernel.bindings().len()
        );
        let entries: Vec<_> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name()),
            layout: &self.layouts[kernel.index()],
            entries: &entries,
        })
    }
}

impl Kernel {
    /// Workgroup counts for a dispatch over a batch of `rows` rows, `d` features and `k` classes; must agree with
    /// the indexing in the shader.
    pub fn workgroups(self, ctx: &super::GpuContext, rows: u32, d: u32, k: u32) -> (u32, u32) {
        let (rows, d, k) = (u64::from(rows), u64::from(d), u64::from(k));
        let flat = |threads: u64, wg: u64| {
            ctx.fold(u32::try_from(threads.div_ceil(wg)).unwrap_or(u32::MAX))
        };
        match self {
            Kernel::Gather => flat(rows * d, 64),
            Kernel::Logits => (k.div_ceil(8) as u32, rows.div_ceil(8) as u32),
            Kernel::Softmax => flat(rows, 64),
            Kernel::Residual => flat(rows * k, 64),
            Kernel::Grad => flat(k.div_ceil(8) * (d + 1), 1),
            Kernel::Update => flat(d * k + k, 64),
            Kernel::Metrics => (1, 1),
        }
    }

    /// Records one dispatch of this kernel into `pass`, with step parameters at `step_offset` of `steps`.
    pub fn record(
        self,
        ctx: &super::GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        steps: &wgpu::BindGroup,
        step_offset: u32,
        buffers: &wgpu::BindGroup,
        dims: (u32, u32, u32),
    ) {
        let (x, y) = self.workgroups(ctx, dims.0, dims.1, dims.2);
        pass.set_pipeline(ctx.kernels.pipeline(self));
        pass.set_bind_group(0, steps, &[step_offset]);
        pass.set_bind_group(1, buffers, &[]);
        pass.dispatch_workgroups(x, y, 1);
    }
}
