//! The GPU trainer. X and y are uploaded once, split into chunks that each fit the adapter's largest storage
//! binding, and stay on the device across epochs. A step gathers its (shuffled) rows from the chunks into a batch
//! buffer, then runs logits → softmax → residual → grad → update → metrics. Many steps are recorded into one
//! submission; the epoch's loss and accuracy sums stay on the device until one read at the end of the epoch.

use ndarray::{Array1, Array2, ArrayView2};

use super::buffers::{read, storage_init, storage_zeroed, uniform_init, StepSlots};
use super::context::GpuContext;
use super::kernels::{ChunkUniform, Kernel, StepUniform};
use crate::error::{Error, Result};
use crate::train::{Backend, Params, Sums};

/// Steps recorded into one submission.
const STEPS_PER_SUBMIT: usize = 64;

/// Tuning that is not part of the model.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Largest chunk of X in bytes (default: the adapter's max storage binding). Lower it to test chunking.
    pub max_chunk_bytes: Option<u64>,
}

/// A data set resident on the device, in chunks.
#[derive(Debug)]
struct Resident {
    rows: usize,
    perm: wgpu::Buffer,
    gathers: Vec<wgpu::BindGroup>,
}

#[derive(Debug)]
struct BindGroups {
    logits: wgpu::BindGroup,
    softmax: wgpu::BindGroup,
    residual: wgpu::BindGroup,
    grad: wgpu::BindGroup,
    update: wgpu::BindGroup,
    metrics: wgpu::BindGroup,
}

/// The training state on one device.
#[derive(Debug)]
pub struct GpuBackend<'a> {
    ctx: &'a GpuContext,
    d: usize,
    k: usize,
    capacity: usize,
    train: Resident,
    held_out: Option<Resident>,
    w: wgpu::Buffer,
    b: wgpu::Buffer,
    row_stats: wgpu::Buffer,
    sums: wgpu::Buffer,
    sum_slots: usize,
    steps: StepSlots,
    groups: BindGroups,
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limits(format!("{what} = {v} does not fit in 32 bits")))
}

impl<'a> GpuBackend<'a> {
    /// Uploads the training rows (and held-out rows) and a zero model of `k` classes; `batch_size` is the largest
    /// batch `train_epoch` will be asked for.
    pub fn new(
        ctx: &'a GpuContext,
        x: ArrayView2<f32>,
        y: &[u32],
        k: usize,
        held_out: Option<(ArrayView2<f32>, &[u32])>,
        batch_size: usize,
        options: &GpuOptions,
    ) -> Result<Self> {
        let (n, d) = x.dim();
        let batch_size = batch_size.min(n.max(1));
        if y.len() != n {
            return Err(Error::param(
                "labels",
                format!("{} labels for {n} rows", y.len()),
            ));
        }
        let limits = &ctx.limits;
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let row_bytes = (d as u64) * 4;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        // Batch buffers: rows × d for X, rows × k for Z/S/R. Logits dispatches rows/8 workgroups along y.
        let by_binding = max_binding / row_bytes.max(4 * k as u64).max(1);
        let by_dispatch = 8 * u64::from(limits.max_compute_workgroups_per_dimension);
        let max_batch = by_binding.min(by_dispatch) as usize;
        if batch_size > max_batch {
            return Err(Error::Limits(format!(
                "a batch of {batch_size} rows × {d} features needs {:.1} MiB, above this adapter's largest storage \
                 binding of {:.1} MiB: use --batch-size {max_batch} or less",
                mib(batch_size as u64 * row_bytes),
                mib(max_binding)
            )));
        }
        if (d * k) as u64 * 4 > max_binding {
            return Err(Error::Limits(format!(
                "W of {d} × {k} needs {:.1} MiB, above this adapter's largest storage binding of {:.1} MiB",
                mib((d * k) as u64 * 4),
                mib(max_binding)
            )));
        }
        let (_, _, _) = (
            u32_of(n, "rows")?,
            u32_of(d, "features")?,
            u32_of(k, "classes")?,
        );
        // Evaluation batches are as large as allowed up to 4096 rows, and never below the training batch.
        let capacity = batch_size.max(max_batch.min(4096)).max(1);
        let chunk_bytes = options
            .max_chunk_bytes
            .unwrap_or(max_binding)
            .min(max_binding);
        let chunk_rows = (chunk_bytes / row_bytes.max(1)).max(1) as usize;

        let xb = storage_zeroed(ctx, "batch x", capacity as u64 * row_bytes);
        let yb = storage_zeroed(ctx, "batch y", capacity as u64 * 4);
        let bk = capacity as u64 * k as u64 * 4;
        let (z, s, r) = (
            storage_zeroed(ctx, "z", bk),
            storage_zeroed(ctx, "s", bk),
            storage_zeroed(ctx, "r", bk),
        );
        let row_stats = storage_zeroed(ctx, "row stats", capacity as u64 * 8);
        let w = storage_zeroed(ctx, "w", (d * k) as u64 * 4);
        let b = storage_zeroed(ctx, "b", k as u64 * 4);
        let g = storage_zeroed(ctx, "g", (d * k) as u64 * 4);
        let gb = storage_zeroed(ctx, "gb", k as u64 * 4);
        let sum_slots = n.div_ceil(batch_size.max(1)).max(1);
        let sums = storage_zeroed(ctx, "sums", sum_slots as u64 * 8);
        let kern = &ctx.kernels;
        let dev = &ctx.device;
        let groups = BindGroups {
            logits: kern.bind(dev, Kernel::Logits, &[&xb, &w, &b, &z]),
            softmax: kern.bind(dev, Kernel::Softmax, &[&z, &yb, &s, &row_stats]),
            residual: kern.bind(dev, Kernel::Residual, &[&s, &yb, &r]),
            grad: kern.bind(dev, Kernel::Grad, &[&xb, &r, &g, &gb]),
            update: kern.bind(dev, Kernel::Update, &[&g, &gb, &w, &b]),
            metrics: kern.bind(dev, Kernel::Metrics, &[&row_stats, &sums]),
        };
        let upload = |x: ArrayView2<f32>, y: &[u32], name: &str| -> Resident {
            let x = x.as_standard_layout();
            let flat = x.as_slice().expect("standard layout is contiguous");
            let rows = y.len();
            let identity: Vec<u32> = (0..rows as u32).collect();
            let perm = storage_init(ctx, &format!("{name} perm"), &identity);
            let gathers = (0..rows)
                .step_by(chunk_rows)
                .map(|first| {
                    let last = (first + chunk_rows).min(rows);
                    let xc = storage_init(
                        ctx,
                        &format!("{name} x[{first}..{last}]"),
                        &flat[first * d..last * d],
                    );
                    let yc =
                        storage_init(ctx, &format!("{name} y[{first}..{last}]"), &y[first..last]);
                    let cu = uniform_init(
                        ctx,
                        "chunk",
                        &ChunkUniform {
                            first_row: first as u32,
                            rows: (last - first) as u32,
                        },
                    );
                    kern.bind(dev, Kernel::Gather, &[&perm, &xc, &yc, &cu, &xb, &yb])
                })
                .collect();
            Resident {
                rows,
                perm,
                gathers,
            }
        };
        let train = upload(x, y, "train");
        let held_out = held_out.map(|(hx, hy)| upload(hx, hy, "held-out"));
        let steps = StepSlots::new(ctx, STEPS_PER_SUBMIT);
        ctx.wait()?;
        Ok(GpuBackend {
            ctx,
            d,
            k,
            capacity,
            train,
            held_out,
            w,
            b,
            row_stats,
            sums,
            sum_slots,
            steps,
            groups,
        })
    }

    /// Number of chunks the training set was split into.
    pub fn train_chunks(&self) -> usize {
        self.train.gathers.len()
    }

    /// Replaces the parameters (`w` [d, k], `b` [k]).
    pub fn set_params(&mut self, p: &Params) -> Result<()> {
        if p.w.dim() != (self.d, self.k) || p.b.len() != self.k {
            return Err(Error::param(
                "params",
                format!("expected W {:?}, got {:?}", (self.d, self.k), p.w.dim()),
            ));
        }
        let w: Vec<f32> = p.w.iter().copied().collect();
        self.ctx
            .queue
            .write_buffer(&self.w, 0, bytemuck::cast_slice(&w));
        self.ctx
            .queue
            .write_buffer(&self.b, 0, bytemuck::cast_slice(&p.b.to_vec()));
        Ok(())
    }

    fn ensure_sum_slots(&mut self, slots: usize) {
        if slots > self.sum_slots {
            self.sums = storage_zeroed(self.ctx, "sums", slots as u64 * 8);
            self.groups.metrics = self.ctx.kernels.bind(
                &self.ctx.device,
                Kernel::Metrics,
                &[&self.row_stats, &self.sums],
            );
            self.sum_slots = slots;
        }
    }

    /// Runs the steps of one pass over `resident` rows in `order` (training) or in storage order (evaluation).
    fn run_pass(
        &self,
        train: bool,
        order_len: usize,
        batch: usize,
        lr: f32,
        l2: f32,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Sums> {
        let ctx = self.ctx;
        let resident = if train {
            &self.train
        } else {
            self.held_out.as_ref().expect("checked by the caller")
        };
        let total = if train { order_len } else { resident.rows };
        let n_steps = total.div_ceil(batch);
        let (d, k) = (self.d as u32, self.k as u32);
        let mut pending: Option<wgpu::SubmissionIndex> = None;
        for group_start in (0..n_steps).step_by(self.steps.capacity()) {
            let group_end = (group_start + self.steps.capacity()).min(n_steps);
            let params: Vec<StepUniform> = (group_start..group_end)
                .map(|s| StepUniform {
                    rows: (batch.min(total - s * batch)) as u32,
                    perm_offset: (s * batch) as u32,
                    d,
                    k,
                    lr,
                    l2,
                    slot: s as u32,
                    flags: 0,
                })
                .collect();
            self.steps.write(ctx, &params);
            let mut encoder = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("steps"),
                });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("steps"),
                    timestamp_writes: None,
                });
                for (i, p) in params.iter().enumerate() {
                    let at = self.steps.offset(i);
                    let sb = &self.steps.bind_group;
                    let dims = (p.rows, d, k);
                    for gather in &resident.gathers {
                        Kernel::Gather.record(ctx, &mut pass, sb, at, gather, dims);
                    }
                    Kernel::Logits.record(ctx, &mut pass, sb, at, &self.groups.logits, dims);
                    Kernel::Softmax.record(ctx, &mut pass, sb, at, &self.groups.softmax, dims);
                    if train {
                        Kernel::Residual.record(
                            ctx,
                            &mut pass,
                            sb,
                            at,
                            &self.groups.residual,
                            dims,
                        );
                        Kernel::Grad.record(ctx, &mut pass, sb, at, &self.groups.grad, dims);
                        Kernel::Update.record(ctx, &mut pass, sb, at, &self.groups.update, dims);
                    }
                    Kernel::Metrics.record(ctx, &mut pass, sb, at, &self.groups.metrics, dims);
                }
            }
            let index = ctx.queue.submit([encoder.finish()]);
            // Keep at most two submissions in flight: bounded queue, and honest progress.
            if let Some(previous) = pending.replace(index) {
                ctx.wait_for(previous)?;
            }
            progress(params.iter().map(|p| p.rows as usize).sum());
        }
        let raw = read::<f32>(ctx, &self.sums, 0, 2 * n_steps)?;
        let mut sums = Sums::default();
        for (s, pair) in raw.chunks_exact(2).enumerate() {
            let rows = batch.min(total - s * batch);
            sums.add(f64::from(pair[0]), f64::from(pair[1]), rows);
        }
        Ok(sums)
    }
}

impl Backend for GpuBackend<'_> {
    fn device(&self) -> String {
        self.ctx.describe()
    }

    fn train_epoch(
        &mut self,
        order: &[u32],
        batch_size: usize,
        lr: f32,
        l2: f32,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Sums> {
        if batch_size == 0 || batch_size > self.capacity {
            return Err(Error::param(
                "--batch-size",
                format!("must be in 1..={} here (got {batch_size})", self.capacity),
            ));
        }
        if order.len() > self.train.rows || order.iter().any(|&i| i as usize >= self.train.rows) {
            let n = self.train.rows;
            return Err(Error::param(
                "order",
                format!("must hold at most {n} row indices below {n}"),
            ));
        }
        self.ctx
            .queue
            .write_buffer(&self.train.perm, 0, bytemuck::cast_slice(order));
        self.ensure_sum_slots(order.len().div_ceil(batch_size));
        self.run_pass(true, order.len(), batch_size, lr, l2, progress)
    }

    fn evaluate(&mut self) -> Result<Option<Sums>> {
        let Some(held_out) = &self.held_out else {
            return Ok(None);
        };
        let slots = held_out.rows.div_ceil(self.capacity);
        self.ensure_sum_slots(slots);
        self.run_pass(false, 0, self.capacity, 0.0, 0.0, &mut |_| {})
            .map(Some)
    }

    fn params(&mut self) -> Result<Params> {
        let (d, k) = (self.d, self.k);
        let w = read::<f32>(self.ctx, &self.w, 0, d * k)?;
        let b = read::<f32>(self.ctx, &self.b, 0, k)?;
        Ok(Params {
            w: Array2::from_shape_vec((d, k), w).map_err(|e| Error::Gpu(e.to_string()))?,
            b: Array1::from(b),
        })
    }
}
