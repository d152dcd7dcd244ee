//! Finding adapters and opening a device on one. Getting a device is kept apart from using it, so tests and
//! commands can inject whichever context they found.

use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use super::kernels::{Kernels, Team};
use crate::error::{Error, Result};

/// A wgpu instance honouring the usual environment variables (WGPU_BACKEND …).
pub fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (ty, backend)
}

/// Every adapter wgpu finds on `backends`, best first (discrete, integrated, virtual, CPU; native APIs before GL).
pub fn adapters(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut found = pollster::block_on(instance().enumerate_adapters(backends));
    found.sort_by_key(|a| rank(&a.get_info()));
    found
}

/// Which adapter to use: `index` into [`adapters`] or a case-insensitive substring of its name.
pub fn select_adapter(backends: wgpu::Backends, adapter: Option<&str>) -> Result<wgpu::Adapter> {
    let mut found = adapters(backends);
    if found.is_empty() {
        return Err(Error::NoAdapter {
            backends: format!("{backends:?}"),
        });
    }
    let Some(want) = adapter else {
        return Ok(found.remove(0));
    };
    if let Ok(i) = want.parse::<usize>() {
        let n = found.len();
        return if i < n {
            Ok(found.remove(i))
        } else {
            Err(Error::param(
                "--adapter",
                format!("an index below {n}, the adapters found (see `devices`)"),
                i,
            ))
        };
    }
    let needle = want.to_lowercase();
    found
        .into_iter()
        .find(|a| a.get_info().name.to_lowercase().contains(&needle))
        .ok_or_else(|| {
            Error::param(
                "--adapter",
                "an index or a substring of an adapter's name (see `devices`)",
                format!("{want:?}, which no adapter's name contains"),
            )
        })
}

/// Opens a device on `adapter` as [`GpuContext::new`] does: the adapter's own limits, timestamps between dispatches
/// where it has them (they let `bench` time each kernel; nothing else depends on them) and subgroup operations where
/// it has them (the one-pass kernel's lanes exchange through them, [`Team`]).
fn request_device(adapter: &wgpu::Adapter) -> Result<(wgpu::Features, wgpu::Device, wgpu::Queue)> {
    let features = adapter.features()
        & (wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::SUBGROUP);
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("softmax-wgpu"),
        required_features: features,
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .map_err(|e| Error::gpu(&adapter.get_info().name, "opening a device", e))?;
    Ok((features, device, queue))
}

/// Whether a device can be opened on `adapter` the way the trainers open one (some drivers list an adapter they
/// cannot open: NVIDIA's GL through EGL on a headless H200 said "Parent device is lost"); the device is dropped.
pub fn try_open(adapter: &wgpu::Adapter) -> Result<()> {
    request_device(adapter).map(drop)
}

/// What `devices` shows about an adapter.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterSummary {
    /// Index in [`adapters`] order.
    pub index: usize,
    /// Vulkan, Metal, Dx12, Gl.
    pub backend: String,
    /// The adapter's name.
    pub name: String,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// Largest storage-buffer binding, bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Largest workgroup, per dimension.
    pub max_workgroup_size: [u32; 3],
    /// Most invocations in one workgroup.
    pub max_invocations_per_workgroup: u32,
    /// Most workgroups per dispatch dimension.
    pub max_workgroups_per_dimension: u32,
    /// Smallest and largest subgroup size (0 when unknown).
    pub subgroup_sizes: [u32; 2],
    /// Whether subgroup operations are available.
    pub subgroups: bool,
    /// Whether timestamp queries are available.
    pub timestamp_queries: bool,
    /// Whether f64 is available in shaders.
    pub shader_f64: bool,
    /// Why a device could not be opened on it, where `devices` tried and failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_error: Option<String>,
}

impl AdapterSummary {
    /// Summarises an adapter.
    pub fn of(index: usize, adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features();
        AdapterSummary {
            index,
            backend: format!("{:?}", info.backend),
            name: info.name.clone(),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_workgroup_size: [
                limits.max_compute_workgroup_size_x,
                limits.max_compute_workgroup_size_y,
                limits.max_compute_workgroup_size_z,
            ],
            max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            subgroup_sizes: [info.subgroup_min_size, info.subgroup_max_size],
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            timestamp_queries: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            shader_f64: features.contains(wgpu::Features::SHADER_F64),
            open_error: None,
        }
    }
}

/// An open device on one adapter, with every pipeline built once.
#[derive(Debug)]
pub struct GpuContext {
    /// The adapter.
    pub adapter: wgpu::Adapter,
    /// The device, opened with the adapter's own limits.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The adapter's description.
    pub info: wgpu::AdapterInfo,
    /// The limits the device was opened with.
    pub limits: wgpu::Limits,
    /// The optional features the device was opened with (timestamp queries and subgroups, where the adapter has
    /// them).
    pub features: wgpu::Features,
    /// How the one-pass kernel's GPU shape shares a row's features on this device (`ops::team`, found on first
    /// use).
    pub(crate) team: OnceLock<Team>,
    /// The subgroup size the register tiles spread their shared operand over ([`GpuContext::spread_lanes`]).
    spread: Option<u32>,
    pub(crate) kernels: Kernels,
    errors: Arc<Mutex<Vec<String>>>,
}

impl GpuContext {
    /// Opens a device on `adapter` with the limits the adapter offers and builds the pipelines.
    pub fn new(adapter: wgpu::Adapter) -> Result<Self> {
        Self::with_windows(adapter, true)
    }

    /// [`GpuContext::new`], reading the register tiles' shared operand through uniform windows where the adapter
    /// is a CPU adapter that holds them (`windows`, the default; window_uniform.wgsl says why) or never: the same
    /// bits either way (tested), so this is for comparing the two.
    pub fn with_windows(adapter: wgpu::Adapter, windows: bool) -> Result<Self> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (features, device, queue) = request_device(&adapter)?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        // CPU adapters read the register tiles' shared operand through uniform windows (window_uniform.wgsl).
        let windowed = windows
            && !crate::gpu::kernels::fused_gpu_shape(info.device_type)
            && limits.max_uniform_buffer_binding_size >= crate::gpu::kernels::WINDOW_BYTES
            && limits.max_uniform_buffers_per_shader_stage >= 4
            && limits.max_dynamic_uniform_buffers_per_pipeline_layout >= 3;
        let kernels = Kernels::new(&device, windowed);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::gpu(&info.name, "building the pipeline layouts", e));
        }
        let mut ctx = GpuContext {
            adapter,
            device,
            queue,
            info,
            limits,
            features,
            team: OnceLock::new(),
            spread: None,
            kernels,
            errors,
        };
        ctx.spread = ctx.find_spread();
        Ok(ctx)
    }

    /// Reads `len` values of type `T` starting at byte `offset` of `buffer`. Blocks until the device is done.
    pub fn read<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        len: usize,
    ) -> Result<Vec<T>> {
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let padded = bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: padded,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, padded);
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            tx.send(r).ok();
        });
        self.wait()?;
        match pollster::block_on(rx.receive()) {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                return Err(Error::gpu(self.describe(), "mapping a readback buffer", e))
            }
            None => {
                return Err(Error::gpu(
                    self.describe(),
                    "mapping a readback buffer",
                    "the callback never ran",
                ))
            }
        }
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| Error::gpu(self.describe(), "reading a mapped buffer", e))?;
        let out = bytemuck::cast_slice::<u8, T>(&view[..bytes as usize]).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// Whether subgroup shuffles on this device reach the invocations a team of `lanes` lanes of the one-pass
    /// kernel assumes (shaders/subgroup_order.wgsl): in a workgroup of its tile's rows × `lanes` invocations
    /// ([`Team::workgroup`]), `subgroupShuffleXor(·, m)` from invocation t reaches invocation t ^ m for every
    /// m < `lanes` — the team within one subgroup, its lanes in index order, as every driver lays out a
    /// one-dimensional workgroup but no standard promises. False on a device without subgroup operations, or where
    /// the check fails to build or run (the lanes then exchange through workgroup memory: the same bits, more
    /// barriers).
    pub fn shuffles_in_order(&self, lanes: u32) -> bool {
        if !self.features.contains(wgpu::Features::SUBGROUP)
            || !lanes.is_power_of_two()
            || lanes < 2
        {
            return false;
        }
        let wg = Team {
            lanes,
            subgroups: true,
        }
        .workgroup();
        let steps = lanes.trailing_zeros();
        let device = &self.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("subgroup_order"),
            source: wgpu::ShaderSource::Wgsl(
                include_str!("../../shaders/subgroup_order.wgsl").into(),
            ),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("subgroup_order"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[("WG", f64::from(wg)), ("LANES", f64::from(lanes))],
                ..Default::default()
            },
            cache: None,
        });
        let reached = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("subgroup order"),
            size: u64::from(steps * wg) * 4,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("subgroup order"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: reached.as_entire_binding(),
            }],
        });
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("subgroup order"),
        });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        self.queue.submit([encoder.finish()]);
        if pollster::block_on(scope.pop()).is_some() {
            return false;
        }
        let Ok(got) = self.read::<u32>(&reached, 0, (steps * wg) as usize) else {
            return false;
        };
        (0..steps).all(|i| (0..wg).all(|t| got[(i * wg + t) as usize] == t ^ (1 << i)))
    }

    /// The subgroup size over which the register tiles of the logits and the gradient spread their shared operand
    /// (spread_subgroup.wgsl): on a device that reads windows (a CPU adapter) and has subgroup operations, whose
    /// subgroups all have one size — 4, 8 or 16 — with their lanes in index order, as the tiles assume when they
    /// take a lane's index from the invocation's ([`GpuContext::shuffles_in_order`], run once when the device is
    /// opened); None elsewhere (GPUs, GL).
    pub fn spread_lanes(&self) -> Option<u32> {
        self.spread
    }

    fn find_spread(&self) -> Option<u32> {
        let size = self.info.subgroup_min_size;
        (self.windowed()
            && self.features.contains(wgpu::Features::SUBGROUP)
            && size == self.info.subgroup_max_size
            && matches!(size, 4 | 8 | 16)
            && self.shuffles_in_order(size))
        .then_some(size)
    }

    /// Whether this device reads the register tiles' shared operand through uniform windows
    /// ([`GpuContext::with_windows`]).
    pub fn windowed(&self) -> bool {
        self.kernels.windowed()
    }

    /// Opens the adapter chosen by [`select_adapter`].
    pub fn select(backends: wgpu::Backends, adapter: Option<&str>) -> Result<Self> {
        Self::new(select_adapter(backends, adapter)?)
    }

    /// "name (backend)".
    pub fn describe(&self) -> String {
        format!("{} ({:?})", self.info.name, self.info.backend)
    }

    /// Returns the first error wgpu reported since the last call, if any.
    pub fn take_error(&self) -> Result<()> {
        let mut v = self
            .errors
            .lock()
            .map_err(|_| Error::Internal("the GPU error log is poisoned".into()))?;
        if v.is_empty() {
            Ok(())
        } else {
            let first = v.remove(0);
            v.clear();
            Err(Error::gpu(self.describe(), "running submitted work", first))
        }
    }

    /// Waits for all submitted work.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map_err(|e| Error::gpu(self.describe(), "waiting for the device", e))?;
        self.take_error()
    }

    /// Waits for one submission.
    pub fn wait_for(&self, index: wgpu::SubmissionIndex) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| Error::gpu(self.describe(), "waiting for the device", e))?;
        self.take_error()
    }

    /// Workgroup counts (x, y) covering `groups` workgroups within the per-dimension limit; shaders flatten
    /// `wid.x + wid.y · nwg.x` and guard the overshoot.
    pub fn fold(&self, groups: u32) -> (u32, u32) {
        let max = self.limits.max_compute_workgroups_per_dimension.max(1);
        if groups <= max {
            (groups.max(1), 1)
        } else {
            (max, groups.div_ceil(max))
        }
    }
}
