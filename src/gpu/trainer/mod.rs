//! The GPU trainer on the [`crate::train::Backend`] seam.
//!
//! Held data is uploaded once, split into chunks that each fit the adapter's largest storage binding, and stays on
//! the device. Backend calls are not executed one by one: each appends an op (accumulate, forward, update) to a
//! short list, and the list is recorded into one compute pass and submitted when it is full, when a value must be
//! read back, or before the host writes a buffer the queued ops use. A step of a held batch reads its (shuffled) rows
//! where they are held — in one pass on a GPU (fused_held → reduce, K ≤ 32), else forward_held → grad_held →
//! metrics (K ≤ 16) or logits_held → softmax → residual → grad_held → metrics (K ≤ 32), at most four chunks either
//! way — or gathers them into the batch buffer first; [`GpuBackend::plan`](plan) lists each op's kernels. The update kernel divides the sums by the
//! rows they cover. Loss and hit sums go to per-op slots on the device and
//! are read once, by [`crate::train::Backend::take_sums`]. At most two submissions are in flight.
//!
//! The files, one concern each: `resident.rs` (held sets in device chunks), `staging.rs` (batch and model buffers,
//! staging a batch), `sparse.rs` (sparse batches), `plan.rs` (the ops and the kernels each records), `queue.rs`
//! (recording, submitting, reading back), `profile.rs` (timestamps), `autotune.rs` (workgroup widths), `slots.rs`
//! (optimizer state), `backend.rs` (the seam).

mod autotune;
mod backend;
mod plan;
mod profile;
mod queue;
mod resident;
mod slots;
mod sparse;
mod staging;

use crate::error::{Error, Result};
use crate::gpu::buffers::{storage_zeroed, StepSlots};
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{Kernel, Tuned};
use crate::optim::OptimizerState;
use crate::params::Shape;
use crate::train::{Held, Sums};
pub use plan::DispatchShape;
use plan::{Op, Rows};
pub use profile::KernelTime;
use profile::Profiler;
use queue::Buffer2;
use resident::Resident;
use sparse::SparseBuffers;
use staging::{BatchBuffers, ModelBuffers};

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
    /// disk ([`crate::gpu::tune`]); off: the width derived from the subgroup size.
    pub autotune: bool,
    /// Train on sparse rows only (LIBSVM): no dense batch buffers (a batch's X would be rows × d floats), batches
    /// limited by their non-zeros and by rows × k, and no autotuning of the dense kernels.
    pub sparse: bool,
    /// Always gather a held batch's rows into the batch buffers, as data of more than [`crate::gpu::kernels::HELD_SLOTS`] chunks is
    /// (and, on CPU adapters, of more than [`crate::gpu::kernels::LOGITS_HELD_MAX_CLASSES`] classes):
    /// for comparing the paths (bitwise equal to the held paths that read rows in place; the one-pass path adds the
    /// same terms in another order) and for benchmarks.
    pub gather: bool,
    /// Train held rows by one pass of `fused_held.wgsl` (K ≤ 32) where the adapter runs it. `None` chooses by
    /// adapter: yes on a GPU, no on a software adapter (llvmpipe), which runs a workgroup's barriers as switches
    /// between coroutines, and there the one-pass kernel (in its CPU shape) is 1.3–2.8× slower than the two-kernel
    /// path shaped for it (`bench --one-pass on|off`, K = 32 and K = 10). `Some` forces either (tests, `bench`).
    pub one_pass: Option<bool>,
    /// Shape the kernels for a GPU — the one-pass kernel's team of lanes a row, the gradient
    /// split over rows and one quad to an invocation of the tiled products
    /// ([`crate::gpu::kernels::tile_quads`]) — or for a CPU adapter. `None` chooses by adapter type
    /// ([`crate::gpu::kernels::fused_gpu_shape`]); `Some` forces either: to train and `bench` the GPU shape on a
    /// software adapter (tests, and the shape of the work a card would run).
    pub gpu_shape: Option<bool>,
    /// Lanes a row of the one-pass kernel (and of its reduction, at most 8) in the GPU shape, for every batch: 1,
    /// 2, 4, 8, 16 or 32, a workgroup's worth on the adapter (16 and 32 lanes take tiles of 32 and 16 rows: 512
    /// invocations). `None` takes the device's widest ([`crate::gpu::ops::team`]) for small batches and narrows it
    /// for large ones ([`crate::gpu::kernels::Team::for_rows`]). To measure the choice on a card (`bench --lanes`):
    /// each width adds the logits in its own order.
    pub lanes: Option<u32>,
}

/// The training state on one device.
#[derive(Debug)]
pub struct GpuBackend<'a> {
    ctx: &'a GpuContext,
    shape: Shape,
    max_batch: usize,
    chunk_rows: usize,
    /// Whether held sets of few enough chunks are read in place ([`GpuOptions::gather`] off, K ≤ 32 or the GPU
    /// shape, and the adapter binds the held kernels' buffers).
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
    /// The per-segment partials and the reduction's bind group, when held rows are read in place by one pass (K ≤ 32
    /// on an adapter that runs `fused_held.wgsl`) or the gradient is split over rows ([`GpuBackend::splits_gradient`]);
    /// the fused kernel's groups are bound only in the first case ([`GpuBackend::one_pass`]).
    fused_step: Option<FusedBuffers>,
    /// Whether held rows are read in place by one pass ([`GpuBackend::one_pass`]).
    one_pass: bool,
    /// Whether the gradient over a gathered batch is split over its rows ([`GpuOptions::gpu_shape`]).
    split_grad: bool,
    /// Whether the kernels take their GPU shape ([`GpuOptions::gpu_shape`]).
    gpu_shape: bool,
    /// How the one-pass kernel and the reduction share a row's (an element's) work: the GPU shape's team
    /// ([`GpuOptions::lanes`]), one invocation otherwise.
    team: crate::gpu::kernels::Team,
    /// Whether [`GpuOptions::lanes`] chose the team for every batch; else a large batch narrows it
    /// ([`GpuBackend::team_for`]).
    team_asked: bool,
}

/// What the one-pass step needs beside a held set: the segments' partial sums and the group reducing them.
#[derive(Debug)]
pub(super) struct FusedBuffers {
    pub(super) gp: wgpu::Buffer,
    pub(super) mp: wgpu::Buffer,
    pub(super) reduce: wgpu::BindGroup,
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
    /// The largest batch and the rows of a held chunk on `ctx` for `shape`, or the limit the shape exceeds.
    fn sizes(ctx: &GpuContext, shape: Shape, options: &GpuOptions) -> Result<(usize, usize)> {
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
        Ok((max_batch, chunk_rows))
    }

    /// A zero model of `shape` on `ctx`'s device.
    pub fn new(ctx: &'a GpuContext, shape: Shape, options: &GpuOptions) -> Result<Self> {
        let (d, k) = (shape.d, shape.k);
        let (max_batch, chunk_rows) = Self::sizes(ctx, shape, options)?;
        let model = Self::model_buffers(ctx, shape);
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
        let one_pass = Self::one_pass(ctx, shape, options);
        let gpu_shape = options
            .gpu_shape
            .unwrap_or_else(|| crate::gpu::kernels::fused_gpu_shape(ctx.info.device_type));
        let split_grad = !options.sparse && gpu_shape && ctx.kernels.available(Kernel::Reduce);
        let team = Self::team_of(ctx, gpu_shape, options.lanes)?;
        let fused_step = (one_pass || split_grad).then(|| {
            let (gp, mp) = crate::gpu::buffers::fused_partials(ctx, d as u32, k as u32);
            let reduce = ctx.kernels.bind(
                &ctx.device,
                Kernel::Reduce,
                &[&gp, &mp, &model.g, &model.gb, &model.sums],
            );
            FusedBuffers { gp, mp, reduce }
        });
        let batch = Self::batch_buffers(
            ctx,
            shape,
            &model,
            FIRST_CAPACITY.min(max_batch),
            options.sparse,
            fused_step.as_ref().filter(|_| split_grad).map(|f| &f.gp),
        );
        ctx.take_error()?;
        Ok(GpuBackend {
            ctx,
            shape,
            max_batch,
            chunk_rows,
            // In the GPU shape for any K: past the fused kernel's classes the gradient is split over the rows
            // where they are held, so a step needs no gather copy.
            in_place: !options.gather
                && !options.sparse
                && (one_pass
                    || ((shape.k <= crate::gpu::kernels::LOGITS_HELD_MAX_CLASSES || split_grad)
                        && ctx.kernels.available(if shape.k <= 16 {
                            Kernel::ForwardHeld
                        } else {
                            Kernel::LogitsHeld
                        })
                        && ctx.kernels.available(Kernel::GradHeld))),
            fused_step,
            one_pass,
            split_grad,
            gpu_shape,
            team,
            team_asked: options.lanes.is_some(),
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
            tuned: crate::gpu::tune::tuned_kernels(shape.k)
                .iter()
                .map(|&kernel| {
                    Tuned::for_adapter(ctx, kernel, k, crate::gpu::kernels::tile_quads(gpu_shape))
                })
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

    fn max_binding(ctx: &GpuContext) -> u64 {
        ctx.limits
            .max_storage_buffer_binding_size
            .min(ctx.limits.max_buffer_size)
    }

    /// The most rows one batch may have: its X (rows × d) and Z, S, R (rows × k) must each fit one binding — R with
    /// the window's padding past it ([`crate::gpu::kernels::WINDOW_BYTES`]) — and the logits kernel dispatches rows /
    /// 64 workgroups along x.
    fn largest_batch(ctx: &GpuContext, shape: Shape, sparse: bool) -> usize {
        let x_row = if sparse { 0 } else { shape.d as u64 * 4 };
        let row_bytes = x_row.max(shape.k as u64 * 4).max(8);
        let by_binding =
            Self::max_binding(ctx).saturating_sub(crate::gpu::kernels::WINDOW_BYTES) / row_bytes;
        let by_dispatch = 64 * u64::from(ctx.limits.max_compute_workgroups_per_dimension);
        by_binding.min(by_dispatch).min(u64::from(u32::MAX)) as usize
    }

    /// Whether steps use the fused forward kernel: all classes of a row fit one invocation's registers.
    fn fused(&self) -> bool {
        self.shape.k <= 16
    }

    /// The team of the one-pass kernel and its reduction: in the GPU shape the device's widest
    /// ([`crate::gpu::ops::team`]) or `lanes` of it, checked against what the device's workgroups hold (with
    /// subgroup shuffles where they reach those lanes in order); one invocation otherwise.
    fn team_of(
        ctx: &GpuContext,
        gpu_shape: bool,
        lanes: Option<u32>,
    ) -> Result<crate::gpu::kernels::Team> {
        // The CPU adapters' shape has no team: no subgroup check for it (a shader built and run per device).
        if !gpu_shape {
            return Ok(crate::gpu::kernels::Team::ONE);
        }
        let widest = crate::gpu::ops::team(ctx);
        let asked = |lanes| crate::gpu::kernels::Team {
            lanes,
            subgroups: false,
        };
        match lanes {
            None => Ok(widest),
            Some(l) if l == widest.lanes => Ok(widest),
            // Any team a workgroup holds, through subgroup shuffles where they reach it in order (a team wider than
            // the device's default exchanges through workgroup memory: to compare, not to train).
            Some(l @ (1 | 2 | 4 | 8 | 16 | 32)) if asked(l).fits(&ctx.limits) => {
                Ok(crate::gpu::kernels::Team {
                    lanes: l,
                    subgroups: ctx.shuffles_in_order(l),
                })
            }
            Some(l) => Err(Error::param(
                "--lanes",
                format!(
                    "1, 2, 4, 8, 16 or 32, a workgroup's worth on {} (at most {} invocations: 64 rows × up to \
                     8 lanes, 512 / lanes rows past it)",
                    ctx.describe(),
                    crate::gpu::kernels::Team::most_invocations(&ctx.limits)
                ),
                l,
            )),
        }
    }

    /// Whether a backend made with `options` trains held rows of `shape` by one pass of `fused_held.wgsl`: the
    /// adapter runs it ([`GpuBackend::runs_fused`]), rows are not gathered, and [`GpuOptions::one_pass`] asks for it
    /// (by default on GPUs, not on software adapters).
    pub fn one_pass(ctx: &GpuContext, shape: Shape, options: &GpuOptions) -> bool {
        !options.gather
            && !options.sparse
            && Self::runs_fused(ctx, shape)
            && options
                .one_pass
                .unwrap_or_else(|| crate::gpu::kernels::fused_gpu_shape(ctx.info.device_type))
    }

    /// The tiled products' quads to an invocation in this backend's shape ([`crate::gpu::kernels::tile_quads`]).
    pub(super) fn quads(&self) -> u32 {
        crate::gpu::kernels::tile_quads(self.gpu_shape)
    }

    /// Whether held rows of `shape` can be trained on by one pass of `fused_held.wgsl` on `ctx`'s adapter: K ≤ 32,
    /// and the adapter builds the kernel and runs it. (wgpu's GL backend runs it too since the kernel keeps a row's
    /// class groups in named registers: the GLSL naga wrote for an earlier version, with a 2-D split of rows and
    /// class groups, did not finish compiling on llvmpipe in 5 minutes.)
    pub fn runs_fused(ctx: &GpuContext, shape: Shape) -> bool {
        shape.k <= crate::gpu::kernels::FUSED_MAX_CLASSES
            && ctx.kernels.available(Kernel::FusedHeld)
            && ctx.kernels.available(Kernel::Reduce)
    }

    /// Whether the gradient over a gathered batch is split over its rows and reduced (one more dispatch a step; see
    /// [`GpuOptions::gpu_shape`]).
    pub fn splits_gradient(&self) -> bool {
        self.split_grad
    }

    /// Whether the kernels read `set`'s rows where they are held, without a gather copy (at most [`crate::gpu::kernels::HELD_SLOTS`]
    /// chunks, K ≤ [`crate::gpu::kernels::LOGITS_HELD_MAX_CLASSES`] or the GPU shape, [`GpuOptions::gather`] off, and an adapter that binds the held kernels' buffers).
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
}
