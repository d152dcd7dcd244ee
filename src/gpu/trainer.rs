//! The GPU trainer on the [`Backend`] seam.
//!
//! Held data is uploaded once, split into chunks that each fit the adapter's largest storage binding, and stays on
//! the device. Backend calls are not executed one by one: each appends an op (accumulate, forward, update) to a
//! short list, and the list is recorded into one compute pass and submitted when it is full, when a value must be
//! read back, or before the host writes a buffer the queued ops use. A step of a held batch gathers its (shuffled)
//! rows from the chunks into the batch buffer, then runs logits → softmax → residual → grad (sums) → metrics; the
//! update kernel divides the sums by the rows they cover. Loss and hit sums go to per-op slots on the device and
//! are read once, by [`Backend::take_sums`]. At most two submissions are in flight.

use std::sync::Arc;

use ndarray::{Array1, Array2};

use super::buffers::{read, storage_init, storage_zeroed, uniform_init, StepSlots};
use super::context::GpuContext;
use super::kernels::{
    held_slots, ChunkUniform, Dims, HeldUniform, Kernel, StepUniform, Tuned, HELD_SLOTS,
    WEIGHTED_ROWS,
};
use crate::data::{RowSource, SparseRows};
use crate::error::{Error, Result};
use crate::train::{
    Backend, Batch, BatchRows, Gradient, Held, Optimizer, OptimizerState, Params, Shape, Sums,
    Update,
};

/// Ops recorded into one submission.
const OPS_PER_SUBMIT: usize = 128;
/// Loss / hit slots on the device before they are read back.
const SUM_SLOTS: usize = 4096;
/// The batch buffers' first size in rows; they grow on demand up to the adapter's limit.
const FIRST_CAPACITY: usize = 1024;

/// Tuning that is not part of the model.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Largest chunk of held data in bytes (default: the adapter's max storage binding). Lower it to test chunking.
    pub max_chunk_bytes: Option<u64>,
    /// Time the kernels' workgroup widths on the first batch of each shape class and keep the fastest, cached on
    /// disk ([`super::tune`]); off: the width derived from the subgroup size.
    pub autotune: bool,
    /// Train on sparse rows only (LIBSVM): no dense batch buffers (a batch's X would be rows × d floats), batches
    /// limited by their non-zeros and by rows × k, and no autotuning of the dense kernels.
    pub sparse: bool,
    /// Always gather a held batch's rows into the batch buffers, as data of more than [`HELD_SLOTS`] chunks or of
    /// more than 16 classes is: for comparing the two paths (results are bitwise equal) and for benchmarks.
    pub gather: bool,
}

/// One held chunk on the device and its gather bind group (rebuilt when the batch buffers change).
#[derive(Debug)]
struct DeviceChunk {
    x: wgpu::Buffer,
    y: wgpu::Buffer,
    info: wgpu::Buffer,
    gather: Option<wgpu::BindGroup>,
}

/// The bind groups of the kernels that read a held set's rows in place (rebuilt when the batch buffers change).
#[derive(Debug)]
struct HeldGroups {
    forward: wgpu::BindGroup,
    grad: wgpu::BindGroup,
}

/// What a held set needs for its rows to be read in place: the labels of the whole set in one buffer and its
/// layout; `groups` binds them with the chunks.
#[derive(Debug)]
struct InPlace {
    labels: wgpu::Buffer,
    layout: wgpu::Buffer,
    groups: Option<HeldGroups>,
}

#[derive(Debug)]
struct Resident {
    rows: usize,
    chunks: Vec<DeviceChunk>,
    /// Present when the held kernels read this set's rows in place (no gather copy).
    in_place: Option<InPlace>,
    /// Sparse rows, kept in host memory as CSR: each batch's rows go up in both layouts the sparse kernels read
    /// (a few hundred KB a step), which a device-side gather of variable-length rows would need a prefix sum for.
    sparse: Option<Arc<SparseRows>>,
}

impl Resident {
    fn released(&self) -> bool {
        self.chunks.is_empty() && self.sparse.is_none()
    }
}

/// The buffers of one sparse batch and the bind groups of the sparse kernels over them (rebuilt when they or the
/// batch buffers grow).
#[derive(Debug)]
struct SparseBuffers {
    nnz: usize,
    rows: usize,
    offsets: wgpu::Buffer,
    indices: wgpu::Buffer,
    values: wgpu::Buffer,
    cols: wgpu::Buffer,
    ptr: wgpu::Buffer,
    col_rows: wgpu::Buffer,
    col_vals: wgpu::Buffer,
    logits: wgpu::BindGroup,
    grad: wgpu::BindGroup,
}

/// The per-batch buffers and the bind groups that use them.
#[derive(Debug)]
struct BatchBuffers {
    capacity: usize,
    perm_capacity: usize,
    perm: wgpu::Buffer,
    /// Sample weights of the queued batches' rows, a ring as `perm` is (same capacity).
    sw: wgpu::Buffer,
    /// The batch's X row-major (the gradient reads it) and feature-major (the logits kernel reads it).
    x: wgpu::Buffer,
    xt: wgpu::Buffer,
    y: wgpu::Buffer,
    /// Logits, residuals and per-row loss / hit (the sparse and held kernels' bind groups name them).
    z: wgpu::Buffer,
    r: wgpu::Buffer,
    row_stats: wgpu::Buffer,
    logits: wgpu::BindGroup,
    /// The fused forward pass (K ≤ 16).
    forward: wgpu::BindGroup,
    softmax: wgpu::BindGroup,
    residual: wgpu::BindGroup,
    grad: wgpu::BindGroup,
    metrics: wgpu::BindGroup,
}

/// The buffers that live as long as the model: weights, gradient sums, loss slots.
#[derive(Debug)]
struct ModelBuffers {
    w: wgpu::Buffer,
    b: wgpu::Buffer,
    g: wgpu::Buffer,
    gb: wgpu::Buffer,
    sums: wgpu::Buffer,
    /// Class weights, K of them (ones without class weights).
    cw: wgpu::Buffer,
    update: wgpu::BindGroup,
}

#[derive(Debug, Clone, Copy)]
enum Rows {
    Held(usize),
    Host,
    /// The sparse batch in the sparse buffers, touching this many columns.
    Sparse {
        touched: u32,
    },
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Accumulate {
        rows: Rows,
        uniform: StepUniform,
    },
    Forward {
        rows: Rows,
        uniform: StepUniform,
    },
    Update {
        uniform: StepUniform,
    },
    /// The update over the columns a sparse step touched (`uniform.d` of them, listed in the union buffer).
    SparseUpdate {
        uniform: StepUniform,
    },
    /// A momentum or Adam step, with the optimizer's state buffers.
    Optimize {
        uniform: StepUniform,
        adam: bool,
    },
}

/// Per-kernel GPU time from timestamps written between dispatches (`TIMESTAMP_QUERY_INSIDE_PASSES`).
#[derive(Debug)]
struct Profiler {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    capacity: u32,
    /// Nanoseconds and dispatches per kernel (or pass of one) since the last take.
    totals: Vec<(&'static str, f64, u64)>,
}

/// Time one kernel took over the dispatches profiled.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelTime {
    /// The kernel's name.
    pub kernel: String,
    /// Its dispatches.
    pub dispatches: u64,
    /// Their summed GPU time, seconds.
    pub seconds: f64,
}

/// The training state on one device.
#[derive(Debug)]
pub struct GpuBackend<'a> {
    ctx: &'a GpuContext,
    shape: Shape,
    max_batch: usize,
    chunk_rows: usize,
    /// Whether held sets of few enough chunks are read in place ([`GpuOptions::gather`] off, K ≤ 16, and the
    /// adapter binds the held kernels' buffers).
    in_place: bool,
    held: Vec<Resident>,
    model: ModelBuffers,
    batch: BatchBuffers,
    steps: StepSlots,
    /// Ops queued for the next submission, the perm entries of their held batches, and the rows of each loss slot.
    ops: Vec<Op>,
    perm_data: Vec<u32>,
    /// The queued batches' row weights, written to `batch.sw` with the perm entries.
    sw_data: Vec<f32>,
    slot_rows: Vec<usize>,
    in_flight: Option<wgpu::SubmissionIndex>,
    /// Loss / hit sums already read back from the slots.
    host_sums: Sums,
    /// Rows summed in the gradient accumulator (0: empty).
    g_rows: u64,
    optimizer: OptimizerState,
    profiler: Option<Profiler>,
    /// Pipelines whose workgroup width is chosen for this adapter (logits and grad).
    tuned: Vec<Tuned>,
    /// Autotune on the first batch of each shape class; the widths chosen for each class seen so far.
    autotune: bool,
    tuned_for: std::collections::HashMap<String, Vec<Tuned>>,
    /// Sparse rows only ([`GpuOptions::sparse`]), and the current sparse batch's buffers.
    sparse: bool,
    sparse_buffers: Option<SparseBuffers>,
    /// Sparse: the columns the current step has touched (marks and list), and the buffer their list goes up in for
    /// the update with its bind group.
    touched_mark: Vec<bool>,
    touched: Vec<u32>,
    sparse_update: Option<(wgpu::Buffer, wgpu::BindGroup)>,
    /// The optimizer's state buffers (velocity, or the two moments; each flat over W then b) and the bind group of
    /// its update kernel, made on its first step or when a state is restored.
    opt_slots: Option<(Vec<wgpu::Buffer>, wgpu::BindGroup)>,
}

/// Each tuned kernel's name and workgroup width.
fn widths(tuned: &[Tuned]) -> Vec<(String, u32)> {
    tuned
        .iter()
        .map(|t| {
            let wg = t
                .constants
                .iter()
                .find(|(n, _)| *n == "WG")
                .map_or(0, |c| c.1 as u32);
            (t.kernel.name().to_string(), wg)
        })
        .collect()
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::shape(what, format!("at most {}", u32::MAX), v))
}

impl<'a> GpuBackend<'a> {
    /// A zero model of `shape` on `ctx`'s device.
    pub fn new(ctx: &'a GpuContext, shape: Shape, options: &GpuOptions) -> Result<Self> {
        let (d, k) = (shape.d, shape.k);
        u32_of(d, "features")?;
        u32_of(k, "classes")?;
        let max_binding = Self::max_binding(ctx);
        let w_bytes = crate::error::checked_product("W", &[d as u64, k as u64, 4])?;
        if w_bytes > max_binding {
            return Err(Error::Limits {
                device: ctx.describe(),
                what: format!("W of {d} features × {k} classes"),
                needed: w_bytes,
                limit: max_binding,
                hint: None,
            });
        }
        // The gradient kernel dispatches (d + 1) / 64 workgroups along x.
        let max_groups = u64::from(ctx.limits.max_compute_workgroups_per_dimension);
        if (d as u64 + 1).div_ceil(64) > max_groups {
            return Err(Error::Limits {
                device: ctx.describe(),
                what: format!("a gradient dispatch over {d} features"),
                needed: (d as u64 + 1).div_ceil(64),
                limit: max_groups,
                hint: Some("counts of workgroups, not bytes".into()),
            });
        }
        let max_batch = Self::largest_batch(ctx, shape, options.sparse);
        if max_batch == 0 {
            return Err(Error::Limits {
                device: ctx.describe(),
                what: format!("one row of {d} features"),
                needed: d as u64 * 4,
                limit: max_binding,
                hint: None,
            });
        }
        let chunk_bytes = options
            .max_chunk_bytes
            .unwrap_or(max_binding)
            .min(max_binding);
        if chunk_bytes == 0 {
            return Err(Error::param("--chunk-mib", "at least 1", 0));
        }
        let chunk_rows = (chunk_bytes / (d as u64 * 4)).max(1) as usize;
        let model = Self::model_buffers(ctx, shape);
        let batch = Self::batch_buffers(
            ctx,
            shape,
            &model,
            FIRST_CAPACITY.min(max_batch),
            options.sparse,
        );
        let steps = StepSlots::new(ctx, OPS_PER_SUBMIT);
        let sparse_update = options.sparse.then(|| {
            let list = storage_zeroed(ctx, "touched columns", d as u64 * 4);
            let group = ctx.kernels.bind(
                &ctx.device,
                Kernel::SparseUpdate,
                &[&list, &model.g, &model.gb, &model.w, &model.b],
            );
            (list, group)
        });
        ctx.take_error()?;
        Ok(GpuBackend {
            ctx,
            shape,
            max_batch,
            chunk_rows,
            in_place: !options.gather
                && !options.sparse
                && shape.k <= 16
                && ctx.kernels.available(Kernel::ForwardHeld)
                && ctx.kernels.available(Kernel::GradHeld),
            held: Vec::new(),
            model,
            batch,
            steps,
            ops: Vec::new(),
            perm_data: Vec::new(),
            sw_data: Vec::new(),
            slot_rows: Vec::new(),
            in_flight: None,
            host_sums: Sums::default(),
            g_rows: 0,
            optimizer: OptimizerState::default(),
            profiler: None,
            tuned: super::tune::tuned_kernels(shape.k)
                .iter()
                .map(|&kernel| Tuned::for_adapter(ctx, kernel, k))
                .collect(),
            autotune: options.autotune && !options.sparse,
            tuned_for: std::collections::HashMap::new(),
            sparse: options.sparse,
            sparse_buffers: None,
            touched_mark: if options.sparse {
                vec![false; d]
            } else {
                Vec::new()
            },
            touched: Vec::new(),
            sparse_update,
            opt_slots: None,
        })
    }

    /// Starts timing every dispatch with timestamps (slower: each submission is then waited for and read back).
    /// Returns false, and changes nothing, when the device cannot write timestamps inside a compute pass.
    pub fn enable_profiling(&mut self) -> bool {
        let needed =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        if !self.ctx.features.contains(needed) {
            return false;
        }
        let capacity = wgpu::QUERY_SET_MAX_QUERIES;
        self.profiler = Some(Profiler {
            set: self.ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: capacity,
            }),
            resolve: self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: u64::from(capacity) * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            capacity,
            totals: Vec::new(),
        });
        true
    }

    /// The GPU time of each kernel since profiling was enabled or last taken, slowest first.
    pub fn take_profile(&mut self) -> Result<Vec<KernelTime>> {
        self.flush()?;
        let Some(p) = self.profiler.as_mut() else {
            return Ok(Vec::new());
        };
        let mut out: Vec<KernelTime> = std::mem::take(&mut p.totals)
            .into_iter()
            .map(|(k, ns, n)| KernelTime {
                kernel: k.to_string(),
                dispatches: n,
                seconds: ns * 1e-9,
            })
            .collect();
        out.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        Ok(out)
    }

    /// Whether steps use the fused forward kernel: all classes of a row fit one invocation's registers.
    fn fused(&self) -> bool {
        self.shape.k <= 16
    }

    /// Dispatches one training step on rows of `set` records: its accumulate (gathers and kernels) and its update.
    pub fn dispatches_per_step(&self, set: Held) -> usize {
        let accumulate = Op::Accumulate {
            rows: Rows::Held(set.id()),
            uniform: StepUniform::default(),
        };
        self.dispatches_of(&accumulate)
            + self.dispatches_of(&Op::Update {
                uniform: StepUniform::default(),
            })
    }

    /// Dispatches one op records: its gathers (one per chunk) and kernels.
    fn dispatches_of(&self, op: &Op) -> usize {
        match op {
            Op::Accumulate { rows, .. } | Op::Forward { rows, .. } => {
                if let Rows::Held(h) = rows {
                    if self.held[*h].in_place.is_some() {
                        // forward_held (+ grad_held) + metrics.
                        return if matches!(op, Op::Accumulate { .. }) {
                            3
                        } else {
                            2
                        };
                    }
                }
                let gathers = match rows {
                    Rows::Held(h) => self.held[*h].chunks.len(),
                    Rows::Host | Rows::Sparse { .. } => 0,
                };
                gathers
                    + if matches!(op, Op::Accumulate { .. }) {
                        5
                    } else {
                        3
                    }
            }
            Op::Update { .. } | Op::SparseUpdate { .. } | Op::Optimize { .. } => 1,
        }
    }

    fn max_binding(ctx: &GpuContext) -> u64 {
        ctx.limits
            .max_storage_buffer_binding_size
            .min(ctx.limits.max_buffer_size)
    }

    /// The most rows one batch may have: its X (rows × d) and Z, S, R (rows × k) must each fit one binding, and the
    /// logits kernel dispatches rows / 64 workgroups along x.
    fn largest_batch(ctx: &GpuContext, shape: Shape, sparse: bool) -> usize {
        let x_row = if sparse { 0 } else { shape.d as u64 * 4 };
        let row_bytes = x_row.max(shape.k as u64 * 4).max(8);
        let by_binding = Self::max_binding(ctx) / row_bytes;
        let by_dispatch = 64 * u64::from(ctx.limits.max_compute_workgroups_per_dimension);
        by_binding.min(by_dispatch).min(u64::from(u32::MAX)) as usize
    }

    fn model_buffers(ctx: &GpuContext, shape: Shape) -> ModelBuffers {
        let dk = (shape.d * shape.k) as u64 * 4;
        let k = shape.k as u64 * 4;
        let w = storage_zeroed(ctx, "w", dk);
        let b = storage_zeroed(ctx, "b", k);
        let g = storage_zeroed(ctx, "g", dk);
        let gb = storage_zeroed(ctx, "gb", k);
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
            update,
        }
    }

    /// Batch buffers of `capacity` rows and the bind groups that use them.
    fn batch_buffers(
        ctx: &GpuContext,
        shape: Shape,
        m: &ModelBuffers,
        capacity: usize,
        sparse: bool,
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
            storage_zeroed(ctx, "r", rows * k * 4),
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
            residual: kern.bind(dev, Kernel::Residual, &[&s, &y, &r, &m.cw, &sw]),
            grad: kern.bind(dev, Kernel::Grad, &[&x, &r, &m.g, &m.gb]),
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

    /// The held kernels' bind groups over `r`'s chunks (unused slots repeat chunk 0), when it is read in place.
    fn held_groups(&self, r: &Resident) -> Option<HeldGroups> {
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

    fn gather_group(&self, c: &DeviceChunk) -> wgpu::BindGroup {
        let b = &self.batch;
        self.ctx.kernels.bind(
            &self.ctx.device,
            Kernel::Gather,
            &[&b.perm, &c.x, &c.y, &c.info, &b.x, &b.y, &b.xt],
        )
    }

    /// The workgroup width each tuned kernel uses now.
    pub fn tuning(&self) -> Vec<(String, u32)> {
        widths(&self.tuned)
    }

    /// The widths chosen for batches of `rows` rows, once such a batch has run with autotune on.
    pub fn tuning_for(&self, rows: usize) -> Option<Vec<(String, u32)>> {
        let key = super::tune::key(
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
    fn autotune_for(&mut self, rows: usize) -> Result<()> {
        use super::tune;
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
    fn time_dispatches(&self, t: &Tuned, rows: usize) -> Result<f64> {
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

    /// Whether the kernels read `set`'s rows where they are held, without a gather copy (at most [`HELD_SLOTS`]
    /// chunks, K ≤ 16, [`GpuOptions::gather`] off, and an adapter that binds the held kernels' buffers).
    pub fn reads_in_place(&self, set: Held) -> bool {
        self.held
            .get(set.id())
            .is_some_and(|h| h.in_place.is_some())
    }

    /// Whether the first held set (the training rows, in a run) is read in place ([`GpuBackend::reads_in_place`]).
    pub fn trains_in_place(&self) -> bool {
        self.held.first().is_some_and(|h| h.in_place.is_some())
    }

    /// Number of chunks the first held set was split into.
    pub fn train_chunks(&self) -> usize {
        self.held.first().map_or(0, |h| h.chunks.len())
    }

    /// A batch cut into pieces of at most [`Backend::max_batch`] rows, in order: a batch larger than one binding
    /// (full-batch gradient descent on a large data set) is accumulated piece by piece, its gradient sums added in
    /// piece order, so any batch size works on every adapter.
    fn pieces<'b>(&self, batch: &'b Batch<'_>) -> Result<Vec<Batch<'b>>> {
        self.shape.check_batch(batch)?;
        let n = batch.len();
        let piece = self.max_batch.max(1);
        Ok((0..n)
            .step_by(piece)
            .map(|start| batch.slice(start, (start + piece).min(n)))
            .collect())
    }

    /// Makes the batch buffers hold `rows` rows, or says why they cannot.
    fn ensure_capacity(&mut self, rows: usize) -> Result<()> {
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
        self.batch = Self::batch_buffers(self.ctx, self.shape, &self.model, capacity, self.sparse);
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
    fn reserve(&mut self, perm_rows: usize, slot: bool) -> Result<()> {
        // Each dispatch writes one timestamp when profiling; the most an op can add is its gathers and 5 kernels.
        let queries_full = self.profiler.as_ref().is_some_and(|p| {
            let per_op = self.held.iter().map(|h| h.chunks.len()).max().unwrap_or(0) + 5;
            let queued: usize = self.ops.iter().map(|op| self.dispatches_of(op)).sum();
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
    /// Makes the optimizer's `count` state buffers (zeros, or `values`) and its kernel's bind group, unless they
    /// exist already with that count.
    fn ensure_slots(&mut self, count: usize, values: Option<&[&[f32]]>) -> Result<()> {
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

    /// Puts a held set in the first released slot (streaming holds and releases a set per chunk).
    fn free_slot(&mut self, resident: Resident) -> usize {
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

    /// The error for dense rows given to a sparse backend, or sparse rows to a dense one.
    fn wrong_kind(&self, name: &str) -> Error {
        let (have, made) = if self.sparse {
            ("dense", "sparse")
        } else {
            ("sparse", "dense")
        };
        Error::Internal(format!(
            "{name}: {have} rows given to a GPU trainer made for {made} rows (GpuOptions::sparse)"
        ))
    }

    /// Makes the sparse buffers hold a batch of `rows` rows and `nnz` entries (and bind them to the batch buffers).
    fn ensure_sparse(&mut self, rows: usize, nnz: usize) {
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
    fn stage_sparse(&mut self, set: &SparseRows, rows: &[u32], slot: bool) -> Result<Rows> {
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

    fn stage(&mut self, batch: &Batch<'_>, slot: bool) -> Result<(Rows, u32)> {
        let n = batch.len();
        self.ensure_capacity(n)?;
        match batch.rows() {
            BatchRows::Held { set, rows } => {
                if self
                    .held
                    .get(set.id())
                    .is_none_or(|h| h.rows != set.len() || h.released())
                {
                    return Err(Error::Internal(format!(
                        "held set {} is not this backend's",
                        set.id()
                    )));
                }
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
    fn stage_weights(&mut self, batch: &Batch<'_>, uniform: StepUniform) -> StepUniform {
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

    fn uniform(&self, rows: usize, perm_offset: u32, slot: u32, flags: u32) -> StepUniform {
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

    fn take_slot(&mut self, rows: usize) -> u32 {
        self.slot_rows.push(rows);
        (self.slot_rows.len() - 1) as u32
    }

    /// Records the queued ops into one pass and submits it; keeps at most two submissions in flight.
    fn flush(&mut self) -> Result<()> {
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
        let uniforms: Vec<StepUniform> = self
            .ops
            .iter()
            .map(|op| match op {
                Op::Accumulate { uniform, .. }
                | Op::Forward { uniform, .. }
                | Op::Update { uniform }
                | Op::SparseUpdate { uniform }
                | Op::Optimize { uniform, .. } => *uniform,
            })
            .collect();
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

    /// Adds the time between consecutive timestamps of the last submission to the kernel that ran between them.
    fn account(&mut self, log: &[&'static str]) -> Result<()> {
        let Some(p) = self.profiler.as_mut() else {
            return Ok(());
        };
        let ticks = read::<u64>(self.ctx, &p.resolve, 0, log.len() + 1)?;
        let period = f64::from(self.ctx.queue.get_timestamp_period());
        for (kernel, pair) in log.iter().zip(ticks.windows(2)) {
            let ns = pair[1].saturating_sub(pair[0]) as f64 * period;
            match p.totals.iter_mut().find(|(k, _, _)| k == kernel) {
                Some(t) => {
                    t.1 += ns;
                    t.2 += 1;
                }
                None => p.totals.push((*kernel, ns, 1)),
            }
        }
        Ok(())
    }

    fn record(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        at: u32,
        op: &Op,
        timestamps: Option<&wgpu::QuerySet>,
        log: &mut Vec<&'static str>,
    ) {
        let ctx = self.ctx;
        let sb = &self.steps.bind_group;
        let (d, k) = (self.shape.d as u32, self.shape.k as u32);
        let bg = &self.batch;
        // Each dispatch, then (when profiling) a timestamp closing its interval.
        let mut stamp = |pass: &mut wgpu::ComputePass<'_>, name: &'static str| {
            if let Some(set) = timestamps {
                log.push(name);
                pass.write_timestamp(set, log.len() as u32);
            }
        };
        let dispatch = |pass: &mut wgpu::ComputePass<'_>,
                        stamp: &mut dyn FnMut(&mut wgpu::ComputePass<'_>, &'static str),
                        kernel: Kernel,
                        group: &wgpu::BindGroup,
                        dims: Dims| {
            match self.tuned.iter().find(|t| t.kernel == kernel) {
                Some(t) => kernel.record_with(
                    ctx,
                    (&t.pipeline, &t.constants),
                    pass,
                    (sb, at),
                    group,
                    dims,
                ),
                None => kernel.record(ctx, pass, sb, at, group, dims),
            }
            stamp(pass, kernel.name());
        };
        match *op {
            Op::Accumulate { rows, uniform } | Op::Forward { rows, uniform } => {
                let dims = Dims {
                    rows: uniform.rows,
                    d,
                    k,
                };
                let train = matches!(op, Op::Accumulate { .. });
                if let Rows::Held(h) = rows {
                    if let Some(p) = &self.held[h].in_place {
                        let g = p.groups.as_ref().expect("bound when held or resized");
                        // The held kernels run at the width tuned for the kernel they stand in for (the same
                        // invocation tiles), built for the set's chunk count.
                        let slots = f64::from(self.held[h].chunks.len() as u32);
                        let mut held =
                            |pass: &mut wgpu::ComputePass<'_>,
                             kernel: Kernel,
                             like: Kernel,
                             group: &wgpu::BindGroup| {
                                let wg = self
                                    .tuned
                                    .iter()
                                    .find(|t| t.kernel == like)
                                    .and_then(|t| t.constants.iter().find(|c| c.0 == "WG"))
                                    .map_or(64.0, |c| c.1);
                                let constants = [
                                    ("WG", wg),
                                    ("SLOTS", slots),
                                    ("KT", super::kernels::class_tile(self.shape.k)),
                                ];
                                let pipeline =
                                    ctx.kernels.pipeline_with(&ctx.device, kernel, &constants);
                                kernel.record_with(
                                    ctx,
                                    (&pipeline, &constants),
                                    pass,
                                    (sb, at),
                                    group,
                                    dims,
                                );
                                stamp(pass, kernel.name());
                            };
                        held(pass, Kernel::ForwardHeld, Kernel::Forward, &g.forward);
                        if train {
                            held(pass, Kernel::GradHeld, Kernel::Grad, &g.grad);
                        }
                        dispatch(pass, &mut stamp, Kernel::Metrics, &bg.metrics, dims);
                        return;
                    }
                    for c in &self.held[h].chunks {
                        let group = c.gather.as_ref().expect("bound when held or resized");
                        dispatch(pass, &mut stamp, Kernel::Gather, group, dims);
                    }
                }
                if let Rows::Sparse { .. } = rows {
                    // For sparse kernels step.d is the batch's touched columns.
                    let dims = Dims {
                        rows: uniform.rows,
                        d: uniform.d,
                        k,
                    };
                    let sb = self
                        .sparse_buffers
                        .as_ref()
                        .expect("staged before it was queued");
                    dispatch(pass, &mut stamp, Kernel::SparseLogits, &sb.logits, dims);
                    dispatch(pass, &mut stamp, Kernel::Softmax, &bg.softmax, dims);
                    if train {
                        dispatch(pass, &mut stamp, Kernel::Residual, &bg.residual, dims);
                        dispatch(pass, &mut stamp, Kernel::SparseGrad, &sb.grad, dims);
                    }
                    dispatch(pass, &mut stamp, Kernel::Metrics, &bg.metrics, dims);
                    return;
                }
                if self.fused() {
                    // Logits, softmax, loss and residual in one pass.
                    dispatch(pass, &mut stamp, Kernel::Forward, &bg.forward, dims);
                } else {
                    dispatch(pass, &mut stamp, Kernel::Logits, &bg.logits, dims);
                    dispatch(pass, &mut stamp, Kernel::Softmax, &bg.softmax, dims);
                    if train {
                        dispatch(pass, &mut stamp, Kernel::Residual, &bg.residual, dims);
                    }
                }
                if train {
                    dispatch(pass, &mut stamp, Kernel::Grad, &bg.grad, dims);
                }
                dispatch(pass, &mut stamp, Kernel::Metrics, &bg.metrics, dims);
            }
            Op::Update { uniform } => {
                let dims = Dims {
                    rows: uniform.rows,
                    d,
                    k,
                };
                dispatch(pass, &mut stamp, Kernel::Update, &self.model.update, dims);
            }
            Op::Optimize { uniform, adam } => {
                let dims = Dims {
                    rows: uniform.rows,
                    d,
                    k,
                };
                let (_, group) = self
                    .opt_slots
                    .as_ref()
                    .expect("made before the op was queued");
                let kernel = if adam {
                    Kernel::UpdateAdam
                } else {
                    Kernel::UpdateMomentum
                };
                dispatch(pass, &mut stamp, kernel, group, dims);
            }
            Op::SparseUpdate { uniform } => {
                let dims = Dims {
                    rows: uniform.rows,
                    d: uniform.d,
                    k,
                };
                let group = self
                    .sparse_update
                    .as_ref()
                    .map(|(_, g)| g)
                    .expect("made with a sparse backend");
                dispatch(pass, &mut stamp, Kernel::SparseUpdate, group, dims);
            }
        }
    }

    /// Submits what is queued and adds the loss slots, in order, to the host's sums.
    fn drain_sums(&mut self) -> Result<()> {
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

    fn read_matrix(&mut self, buffer: Buffer2) -> Result<(Vec<f32>, Vec<f32>)> {
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

    fn write_matrix(&mut self, buffer: Buffer2, w: &[f32], b: &[f32]) -> Result<()> {
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

#[derive(Debug, Clone, Copy)]
enum Buffer2 {
    Weights,
    Gradient,
}

impl Backend for GpuBackend<'_> {
    fn device(&self) -> String {
        self.ctx.describe()
    }

    fn shape(&self) -> Shape {
        self.shape
    }

    /// The most rows one dispatch handles; larger batches are accepted and accumulated in pieces of this size.
    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn hold(&mut self, source: &mut dyn RowSource) -> Result<Held> {
        self.shape.check_source(source)?;
        if source.is_sparse() != self.sparse {
            return Err(self.wrong_kind(source.name()));
        }
        if self.sparse {
            let rows = SparseRows::read(source)?;
            let n = rows.len();
            let id = self.free_slot(Resident {
                rows: n,
                chunks: Vec::new(),
                in_place: None,
                sparse: Some(rows),
            });
            return Ok(Held::new(id, n));
        }
        source.rewind()?;
        let ctx = self.ctx;
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let mut chunks = Vec::new();
        let mut rows = 0usize;
        let name = source.name().to_string();
        // Each device chunk is filled by reads of at most 16 MiB, each written with its own submission; the one
        // before is waited for first, so that the staging copies in flight stay at two pieces (on a software
        // adapter they are host memory) and a file is held on the device without ever being whole on the host. A
        // set of one piece (a streamed chunk) is not waited for, and overlaps the training queued before it.
        let d = self.shape.d;
        let piece_rows = ((16usize << 20) / (d * 4)).max(1);
        let mut uploaded: Option<wgpu::SubmissionIndex> = None;
        let total = source.rows().map_or(usize::MAX, |n| n as usize);
        // Read in place when the set's chunks fit the held kernels' slots and its labels one binding.
        let labels = (self.in_place
            && total != usize::MAX
            && total.div_ceil(self.chunk_rows) <= HELD_SLOTS
            && total as u64 * 4 <= Self::max_binding(ctx))
        .then(|| storage_zeroed(ctx, &format!("{name} labels"), total as u64 * 4));
        while rows < total {
            let first = u32_of(rows, "held rows")?;
            let Some(piece) = source.next_chunk(piece_rows.min(self.chunk_rows))? else {
                break;
            };
            // The device chunk: as many rows as remain, up to a chunk (or just this piece, when the length is
            // unknown).
            let n = if total == usize::MAX {
                piece.len()
            } else {
                (total - rows).min(self.chunk_rows)
            };
            let label = format!("{name} rows {first}..{}", rows + n);
            let x = storage_zeroed(ctx, &label, (n * d * 4) as u64);
            let y = storage_zeroed(ctx, &label, (n * 4) as u64);
            let mut filled = 0usize;
            let mut next = Some(piece);
            while let Some(piece) = next.take() {
                if let Some(previous) = uploaded.take() {
                    ctx.wait_for(previous)?;
                }
                let m = piece.len();
                let xs = piece.x();
                let xs = xs.as_standard_layout();
                let flat = xs.as_slice().expect("standard layout is contiguous");
                ctx.queue
                    .write_buffer(&x, (filled * d * 4) as u64, bytemuck::cast_slice(flat));
                ctx.queue
                    .write_buffer(&y, (filled * 4) as u64, bytemuck::cast_slice(piece.y()));
                if let Some(labels) = &labels {
                    ctx.queue.write_buffer(
                        labels,
                        ((rows + filled) * 4) as u64,
                        bytemuck::cast_slice(piece.y()),
                    );
                }
                uploaded = Some(ctx.queue.submit([]));
                filled += m;
                if filled < n {
                    next = source.next_chunk(piece_rows.min(n - filled))?;
                    if next.is_none() {
                        return Err(Error::Internal(format!(
                            "{name}: ended at row {}, before the {total} rows it announced",
                            rows + filled
                        )));
                    }
                }
            }
            rows += n;
            u32_of(rows, "held rows")?;
            chunks.push(DeviceChunk {
                x,
                y,
                info: uniform_init(
                    ctx,
                    "chunk",
                    &ChunkUniform {
                        first_row: first,
                        rows: n as u32,
                    },
                ),
                gather: None,
            });
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::gpu(
                ctx.describe(),
                format!("uploading {rows} rows of {name}"),
                e,
            ));
        }
        if rows == 0 {
            return Err(Error::input(&name, "no rows"));
        }
        for c in &mut chunks {
            c.gather = Some(self.gather_group(c));
        }
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
        };
        let groups = self.held_groups(&resident);
        if let Some(p) = resident.in_place.as_mut() {
            p.groups = groups;
        }
        let id = self.free_slot(resident);
        ctx.take_error()?;
        Ok(Held::new(id, rows))
    }

    fn release(&mut self, set: Held) -> Result<()> {
        if self
            .held
            .get(set.id())
            .is_none_or(|h| h.rows != set.len() || h.released())
        {
            return Err(Error::Internal(format!(
                "held set {} is not this backend's",
                set.id()
            )));
        }
        // Queued ops name the set by its slot: submit them first. The buffers live on until the submissions that
        // use them are done (wgpu counts references), and flush keeps at most two submissions in flight, so a
        // stream of chunks never has more than a few on the device.
        self.flush()?;
        self.held[set.id()] = Resident {
            rows: 0,
            chunks: Vec::new(),
            in_place: None,
            sparse: None,
        };
        Ok(())
    }

    fn holds_in_host_memory(&self) -> bool {
        // Sparse rows stay in host memory; a software adapter's device memory is host memory.
        self.sparse || self.ctx.info.device_type == wgpu::DeviceType::Cpu
    }

    fn accumulate(&mut self, batch: &Batch<'_>) -> Result<()> {
        if self.autotune && self.g_rows == 0 {
            self.autotune_for(batch.len().min(self.max_batch))?;
        }
        for piece in self.pieces(batch)? {
            let (rows, offset) = self.stage(&piece, true)?;
            let slot = self.take_slot(piece.len());
            let flags = u32::from(self.g_rows > 0);
            let mut uniform =
                self.stage_weights(&piece, self.uniform(piece.len(), offset, slot, flags));
            if let Rows::Sparse { touched } = rows {
                uniform.d = touched;
            }
            self.ops.push(Op::Accumulate { rows, uniform });
            self.g_rows += piece.len() as u64;
        }
        Ok(())
    }

    fn forward(&mut self, batch: &Batch<'_>) -> Result<()> {
        for piece in self.pieces(batch)? {
            let (rows, offset) = self.stage(&piece, true)?;
            let slot = self.take_slot(piece.len());
            let mut uniform =
                self.stage_weights(&piece, self.uniform(piece.len(), offset, slot, 0));
            if let Rows::Sparse { touched } = rows {
                uniform.d = touched;
            }
            self.ops.push(Op::Forward { rows, uniform });
        }
        Ok(())
    }

    fn update(&mut self, u: &Update) -> Result<()> {
        if self.g_rows == 0 {
            return Err(Error::Internal(
                "update without accumulated gradient sums".into(),
            ));
        }
        let rows = u32_of(self.g_rows as usize, "rows in one update")?;
        self.reserve(0, false)?;
        let mut uniform = self.uniform(rows as usize, 0, 0, 0);
        uniform.lr = u.lr;
        uniform.l2 = u.l2;
        uniform.l1 = u.l1;
        let dense = match crate::optim::StepParams::of(u, rows as f32, self.optimizer.steps + 1)? {
            None => Op::Update { uniform },
            Some((p, adam)) => {
                self.ensure_slots(u.optimizer.slots().len(), None)?;
                Op::Optimize {
                    uniform: uniform.with_optimizer(&p),
                    adam,
                }
            }
        };
        if let Some((list, _)) = &self.sparse_update {
            // G and g_b hold zeros outside the touched columns. Without a penalty nothing else moves: update those
            // columns only. With one (L2 or L1) every weight shrinks: the dense update, then zero the consumed sums. No queued
            // op reads the list: the step's batches flushed the previous update before they were uploaded.
            let touched = std::mem::take(&mut self.touched);
            for &j in &touched {
                self.touched_mark[j as usize] = false;
            }
            if !touched.is_empty() {
                self.ctx
                    .queue
                    .write_buffer(list, 0, bytemuck::cast_slice(&touched));
            }
            let mut sparse = uniform;
            sparse.d = u32_of(touched.len(), "touched columns")?;
            if u.l2 > 0.0 || u.l1 > 0.0 || u.optimizer != Optimizer::Sgd {
                self.ops.push(dense);
                sparse.flags = 2;
                self.reserve(0, false)?;
            }
            self.ops.push(Op::SparseUpdate { uniform: sparse });
        } else {
            self.ops.push(dense);
        }
        self.g_rows = 0;
        self.optimizer.steps += 1;
        Ok(())
    }

    fn take_gradient(&mut self) -> Result<Gradient> {
        let (d, k) = (self.shape.d, self.shape.k);
        let rows = std::mem::take(&mut self.g_rows);
        if rows == 0 {
            return Ok(Gradient::zeros(self.shape));
        }
        let (w, b) = self.read_matrix(Buffer2::Gradient)?;
        if self.sparse {
            // The sparse gradient adds to zeros: leave them.
            self.write_matrix(Buffer2::Gradient, &vec![0.0; d * k], &vec![0.0; k])?;
            for j in std::mem::take(&mut self.touched) {
                self.touched_mark[j as usize] = false;
            }
        }
        Ok(Gradient {
            w: Array2::from_shape_vec((d, k), w.into_iter().map(f64::from).collect())
                .map_err(|e| Error::Internal(e.to_string()))?,
            b: b.into_iter().map(f64::from).collect(),
            rows,
        })
    }

    fn set_gradient(&mut self, g: &Gradient) -> Result<()> {
        g.check(self.shape)?;
        let w: Vec<f32> = g.w.iter().map(|&v| v as f32).collect();
        let b: Vec<f32> = g.b.iter().map(|&v| v as f32).collect();
        self.write_matrix(Buffer2::Gradient, &w, &b)?;
        self.g_rows = g.rows;
        if self.sparse {
            // Any column may hold a sum now.
            self.touched = (0..self.shape.d as u32).collect();
            self.touched_mark.iter_mut().for_each(|m| *m = true);
        }
        Ok(())
    }

    fn take_sums(&mut self) -> Result<Sums> {
        self.drain_sums()?;
        Ok(std::mem::take(&mut self.host_sums))
    }

    fn params(&mut self) -> Result<Params> {
        let (d, k) = (self.shape.d, self.shape.k);
        let (w, b) = self.read_matrix(Buffer2::Weights)?;
        Ok(Params {
            w: Array2::from_shape_vec((d, k), w).map_err(|e| Error::Internal(e.to_string()))?,
            b: Array1::from(b),
        })
    }

    fn set_params(&mut self, p: &Params) -> Result<()> {
        p.check(self.shape)?;
        let w: Vec<f32> = p.w.iter().copied().collect();
        self.write_matrix(Buffer2::Weights, &w, &p.b.to_vec())
    }

    fn set_class_weights(&mut self, weights: Option<&[f32]>) -> Result<()> {
        let ones = vec![1.0f32; self.shape.k];
        let w = match weights {
            Some(w) => {
                crate::train::check_class_weights(self.shape, w)?;
                w
            }
            None => &ones,
        };
        // Queued ops must run with the weights they were queued under.
        self.flush()?;
        self.ctx
            .queue
            .write_buffer(&self.model.cw, 0, bytemuck::cast_slice(w));
        Ok(())
    }

    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        self.flush()?;
        let n = self.shape.d * self.shape.k + self.shape.k;
        let slots = match &self.opt_slots {
            Some((buffers, _)) => buffers
                .iter()
                .map(|b| read::<f32>(self.ctx, b, 0, n))
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        Ok(crate::train::state_of(self.optimizer.steps, &slots))
    }

    fn set_optimizer_state(&mut self, s: &OptimizerState) -> Result<()> {
        s.check(self.shape)?;
        self.flush()?;
        self.optimizer.steps = s.steps;
        self.opt_slots = None;
        if !s.tensors.is_empty() {
            let values: Vec<&[f32]> = s.tensors.iter().map(|(_, _, v)| v.as_slice()).collect();
            self.ensure_slots(values.len(), Some(&values))?;
        }
        Ok(())
    }
}
