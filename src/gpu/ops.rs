//! Each kernel run once on host arrays, with the same names and argument order as the CPU mirrors in
//! [`crate::cpu`]. Used by the tests and by validation; training records the same pipelines into long passes.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use super::buffers::{
    fused_partials, read, storage_init, storage_windowed, storage_zeroed, uniform_init, StepSlots,
};
use super::context::GpuContext;
use super::kernels::{
    fused_constants, held_slots, tile_constants, window_sums_bytes, ChunkUniform, Dims,
    HeldUniform, Kernel, StepUniform, Team, FUSED_MAX_CLASSES, HELD_SLOTS, WEIGHTED_ROWS,
};
use crate::error::{Error, Result};
use crate::params::Weights;

fn dims(rows: usize, d: usize, k: usize) -> Result<(u32, u32, u32)> {
    let c = |v: usize, what: &str| {
        u32::try_from(v).map_err(|_| Error::shape(what, format!("at most {}", u32::MAX), v))
    };
    Ok((c(rows, "rows")?, c(d, "features")?, c(k, "classes")?))
}

fn check(
    ok: bool,
    what: &str,
    expected: impl FnOnce() -> String,
    found: impl FnOnce() -> String,
) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::shape(what, expected(), found()))
    }
}

fn check_labels(y: &[u32], rows: usize, k: usize) -> Result<()> {
    check(
        y.len() == rows,
        "labels",
        || rows.to_string(),
        || y.len().to_string(),
    )?;
    match y.iter().position(|&c| c as usize >= k) {
        Some(i) => Err(Error::shape(
            format!("label at row {i}"),
            format!("below k = {k}"),
            y[i],
        )),
        None => Ok(()),
    }
}

fn run(
    ctx: &GpuContext,
    kernel: Kernel,
    step: StepUniform,
    buffers: &[&wgpu::Buffer],
) -> Result<()> {
    run_with(ctx, kernel, step, &[], buffers)
}

/// [`run`] with a pipeline built for `constants` (and the grid they give); none: the kernel's default pipeline.
fn run_with(
    ctx: &GpuContext,
    kernel: Kernel,
    step: StepUniform,
    constants: &[(&'static str, f64)],
    buffers: &[&wgpu::Buffer],
) -> Result<()> {
    let slots = StepSlots::new(ctx, 1);
    slots.write(ctx, &[step]);
    let bg = ctx.kernels.bind(&ctx.device, kernel, buffers);
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        let dims = Dims {
            rows: step.rows,
            d: step.d,
            k: step.k,
        };
        let at = (&slots.bind_group, slots.offset(0));
        kernel.record_built(ctx, constants, &mut pass, at, &bg, dims);
    }
    ctx.queue.submit([encoder.finish()]);
    ctx.wait()
}

fn contiguous(a: ArrayView2<f32>) -> Vec<f32> {
    a.as_standard_layout().iter().copied().collect()
}

fn to2(v: Vec<f32>, rows: usize, cols: usize) -> Result<Array2<f32>> {
    Array2::from_shape_vec((rows, cols), v)
        .map_err(|e| Error::Internal(format!("readback shape: {e}")))
}

thread_local! {
    static TILE: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with the tiled products (logits, gradient and fused forward kernels, held or not) built with `quads`
/// quads to an invocation (`TQ`, one of [`crate::gpu::kernels::TILE_QUADS`]) instead of the adapter's choice, on
/// this thread: how the tests run every tile size on every adapter. The trainer never reads it.
pub fn with_tile<T>(quads: u32, f: impl FnOnce() -> T) -> T {
    let before = TILE.with(|t| t.replace(Some(quads)));
    struct Restore(Option<u32>);
    impl Drop for Restore {
        fn drop(&mut self) {
            TILE.with(|t| t.set(self.0));
        }
    }
    let _restore = Restore(before);
    f()
}

/// The tile the kernels run with here: [`with_tile`]'s, else the one [`crate::gpu::kernels::tile_quads`] chooses
/// for `ctx`'s adapter, as the trainer runs them.
fn adapter_tile(ctx: &GpuContext) -> u32 {
    TILE.with(|t| t.get()).unwrap_or_else(|| {
        crate::gpu::kernels::tile_quads(crate::gpu::kernels::fused_gpu_shape(ctx.info.device_type))
    })
}

/// `logits.wgsl` on the GPU: Z = X·W + b (the tile the adapter trains with).
pub fn logits(
    ctx: &GpuContext,
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    b: ArrayView1<f32>,
) -> Result<Array2<f32>> {
    let (rows, d) = x.dim();
    let k = w.ncols();
    check(
        w.nrows() == d && b.len() == k,
        "logits operands",
        || format!("w [{d}, k], b [k]"),
        || format!("x {:?}, w {:?}, b {}", x.dim(), w.dim(), b.len()),
    )?;
    let (r, dd, kk) = dims(rows, d, k)?;
    // The kernel reads X feature-major, as the gather kernel leaves it.
    let xb = storage_init(ctx, "x feature-major", &contiguous(x.t()));
    let wb = storage_windowed(ctx, "w", &contiguous(w));
    let bb = storage_init(ctx, "b", &b.to_vec());
    let z = storage_zeroed(ctx, "z", (rows * k * 4) as u64);
    run_with(
        ctx,
        Kernel::Logits,
        StepUniform {
            rows: r,
            d: dd,
            k: kk,
            ..Default::default()
        },
        &tile_constants(Kernel::Logits, adapter_tile(ctx)),
        &[&xb, &wb, &bb, &z],
    )?;
    to2(read(ctx, &z, 0, rows * k)?, rows, k)
}

/// The class weights (the given ones, or K ones) and the rows' weights (the given ones, or one unread 1) as device
/// buffers, and the flags that tell the kernels whether the rows carry weights.
fn weight_buffers(
    ctx: &GpuContext,
    weights: Weights<'_, f32>,
    rows: usize,
    k: usize,
) -> Result<(wgpu::Buffer, wgpu::Buffer, u32)> {
    let ones = vec![1.0f32; k];
    let cw = weights.class.unwrap_or(&ones);
    check(
        cw.len() == k,
        "class weights",
        || format!("{k} (one per class)"),
        || cw.len().to_string(),
    )?;
    let (sw, flags) = match weights.row {
        Some(w) => {
            check(
                w.len() == rows,
                "row weights",
                || format!("{rows} (one per row)"),
                || w.len().to_string(),
            )?;
            (w, WEIGHTED_ROWS)
        }
        None => (&[1.0f32][..], 0),
    };
    Ok((
        storage_init(ctx, "class weights", cw),
        storage_init(ctx, "row weights", sw),
        flags,
    ))
}

/// `softmax.wgsl` on the GPU: (S, per-row [loss (weighted by `cw` when given), correct]).
pub fn softmax(
    ctx: &GpuContext,
    z: ArrayView2<f32>,
    y: &[u32],
    weights: Weights<'_, f32>,
) -> Result<(Array2<f32>, Array2<f32>)> {
    let (rows, k) = z.dim();
    check_labels(y, rows, k)?;
    let (r, _, kk) = dims(rows, 0, k)?;
    let zb = storage_init(ctx, "z", &contiguous(z));
    let yb = storage_init(ctx, "y", y);
    let s = storage_zeroed(ctx, "s", (rows * k * 4) as u64);
    let stats = storage_zeroed(ctx, "row stats", (rows * 8) as u64);
    let (cwb, swb, flags) = weight_buffers(ctx, weights, rows, k)?;
    run(
        ctx,
        Kernel::Softmax,
        StepUniform {
            rows: r,
            k: kk,
            flags,
            ..Default::default()
        },
        &[&zb, &yb, &s, &stats, &cwb, &swb],
    )?;
    Ok((
        to2(read(ctx, &s, 0, rows * k)?, rows, k)?,
        to2(read(ctx, &stats, 0, rows * 2)?, rows, 2)?,
    ))
}

/// `softmax.wgsl` as a training step runs it (`TRAIN` = 1): the residual R = (S − onehot(y))·w_y (w = 1 without
/// weights) in place of S, and the per-row loss and hit as [`softmax`].
pub fn softmax_residual(
    ctx: &GpuContext,
    z: ArrayView2<f32>,
    y: &[u32],
    weights: Weights<'_, f32>,
) -> Result<(Array2<f32>, Array2<f32>)> {
    let (rows, k) = z.dim();
    check_labels(y, rows, k)?;
    let (r, _, kk) = dims(rows, 0, k)?;
    let zb = storage_init(ctx, "z", &contiguous(z));
    let yb = storage_init(ctx, "y", y);
    let out = storage_zeroed(ctx, "r", (rows * k * 4) as u64);
    let stats = storage_zeroed(ctx, "row stats", (rows * 8) as u64);
    let (cwb, swb, flags) = weight_buffers(ctx, weights, rows, k)?;
    run_with(
        ctx,
        Kernel::Softmax,
        StepUniform {
            rows: r,
            k: kk,
            flags,
            ..Default::default()
        },
        &[("TRAIN", 1.0)],
        &[&zb, &yb, &out, &stats, &cwb, &swb],
    )?;
    Ok((
        to2(read(ctx, &out, 0, rows * k)?, rows, k)?,
        to2(read(ctx, &stats, 0, rows * 2)?, rows, 2)?,
    ))
}

/// `grad.wgsl` on the GPU: the gradient sums (G = Xᵀ·R, g_b = colsum(R); the tile the adapter trains with).
pub fn grad(
    ctx: &GpuContext,
    x: ArrayView2<f32>,
    r: ArrayView2<f32>,
) -> Result<(Array2<f32>, Array1<f32>)> {
    grad_tiled(ctx, x, r, None, adapter_tile(ctx))
}

/// [`grad`] (`split`: None) or [`grad_split`] (`split`: Some(most segments)) with `quads` feature quads to an
/// invocation (`TQ`, one of [`crate::gpu::kernels::TILE_QUADS`]).
fn grad_tiled(
    ctx: &GpuContext,
    x: ArrayView2<f32>,
    r: ArrayView2<f32>,
    split: Option<u32>,
    quads: u32,
) -> Result<(Array2<f32>, Array1<f32>)> {
    let (rows, d) = x.dim();
    let k = r.ncols();
    check(
        r.nrows() == rows && rows > 0 && split != Some(0),
        "grad operands",
        || {
            format!(
                "x and r with the same rows, at least 1 (x has {rows}), and at least one segment"
            )
        },
        || format!("x {:?}, r {:?}, segments {split:?}", x.dim(), r.dim()),
    )?;
    let (rr, dd, kk) = dims(rows, d, k)?;
    let xb = storage_init(ctx, "x", &contiguous(x));
    let rb = storage_windowed(ctx, "r", &contiguous(r));
    let step = StepUniform {
        rows: rr,
        d: dd,
        k: kk,
        ..Default::default()
    };
    let tile = tile_constants(Kernel::Grad, quads);
    run_grad(ctx, Kernel::Grad, step, tile, split, &[&xb, &rb])
}

/// Runs gradient kernel `kernel` (grad.wgsl or grad_held.wgsl, bound to `head` then G and g_b) over a batch with
/// uniform `step` and `tile` constants: whole, into fresh G and g_b, or split over rows (`split`: at most that many
/// segments, within the partials' budget) into the partials, then `reduce.wgsl` in segment order.
fn run_grad(
    ctx: &GpuContext,
    kernel: Kernel,
    step: StepUniform,
    tile: Vec<(&'static str, f64)>,
    split: Option<u32>,
    head: &[&wgpu::Buffer],
) -> Result<(Array2<f32>, Array1<f32>)> {
    let (d, k) = (step.d as usize, step.k as usize);
    let gb = storage_zeroed(ctx, "gb", (k * 4) as u64);
    let sums = storage_zeroed(ctx, "window sums", window_sums_bytes(step.d, step.k));
    let Some(most) = split else {
        let g = storage_zeroed(ctx, "g", (d * k * 4) as u64);
        run_with(
            ctx,
            kernel,
            step,
            &tile,
            &[head, &[&g, &gb, &sums]].concat(),
        )?;
        return Ok((
            to2(read(ctx, &g, 0, d * k)?, d, k)?,
            Array1::from(read(ctx, &gb, 0, k)?),
        ));
    };
    let most = most.min(crate::gpu::kernels::fused_max_segments(step.d, step.k));
    let partials = fused_partials(ctx, step.d, step.k);
    // The reduction's lanes as the trainer's GPU shape (the only one that splits the gradient) takes them.
    let team = team(ctx);
    let constants = |kernel| crate::gpu::kernels::split_grad_constants(kernel, most, team);
    let mut split = constants(kernel);
    split.extend(tile);
    // Split, the kernel binds g_b beside the partials but writes only the partials.
    run_with(
        ctx,
        kernel,
        step,
        &split,
        &[head, &[&partials.0, &gb, &sums]].concat(),
    )?;
    let (g, gb, _) = reduce(ctx, step, &constants(Kernel::Reduce), &partials)?;
    Ok((g, gb))
}

/// `update.wgsl` on the GPU, from gradient sums over `rows` rows: returns the updated (W, b).
#[allow(clippy::too_many_arguments)] // the mirror's arguments, in its order
pub fn update(
    ctx: &GpuContext,
    g: ArrayView2<f32>,
    gb: ArrayView1<f32>,
    w: ArrayView2<f32>,
    b: ArrayView1<f32>,
    lr: f32,
    l2: f32,
    l1: f32,
    rows: u32,
) -> Result<(Array2<f32>, Array1<f32>)> {
    let (d, k) = w.dim();
    check(
        g.dim() == (d, k) && gb.len() == k && b.len() == k && rows > 0,
        "update operands",
        || format!("g {:?}, g_b and b [{k}], rows ≥ 1", (d, k)),
        || {
            format!(
                "g {:?}, g_b [{}], b [{}], rows {rows}",
                g.dim(),
                gb.len(),
                b.len()
            )
        },
    )?;
    let (_, dd, kk) = dims(0, d, k)?;
    let gbuf = storage_init(ctx, "g", &contiguous(g));
    let gbb = storage_init(ctx, "gb", &gb.to_vec());
    let wb = storage_init(ctx, "w", &contiguous(w));
    let bb = storage_init(ctx, "b", &b.to_vec());
    let step = StepUniform {
        rows,
        d: dd,
        k: kk,
        lr,
        l2,
        l1,
        ..Default::default()
    };
    run(ctx, Kernel::Update, step, &[&gbuf, &gbb, &wb, &bb])?;
    Ok((
        to2(read(ctx, &wb, 0, d * k)?, d, k)?,
        Array1::from(read(ctx, &bb, 0, k)?),
    ))
}

/// `metrics.wgsl` on the GPU: (Σ loss, Σ correct) of per-row pairs.
pub fn metrics(ctx: &GpuContext, stats: ArrayView2<f32>) -> Result<(f32, f32)> {
    let rows = stats.nrows();
    check(
        stats.ncols() == 2,
        "row stats",
        || "[rows, 2]".into(),
        || format!("{:?}", stats.dim()),
    )?;
    let (r, _, _) = dims(rows, 0, 0)?;
    let sb = storage_init(ctx, "row stats", &contiguous(stats));
    let out = storage_zeroed(ctx, "sums", 8);
    run(
        ctx,
        Kernel::Metrics,
        StepUniform {
            rows: r,
            ..Default::default()
        },
        &[&sb, &out],
    )?;
    let v = read::<f32>(ctx, &out, 0, 2)?;
    Ok((v[0], v[1]))
}

/// `gather.wgsl` on the GPU, one dispatch per chunk of `chunk_rows` rows of X: the rows `perm` of X and y.
pub fn gather(
    ctx: &GpuContext,
    perm: &[u32],
    x: ArrayView2<f32>,
    y: &[u32],
    chunk_rows: usize,
) -> Result<(Array2<f32>, Vec<u32>)> {
    let (n, d) = x.dim();
    check(
        y.len() == n && chunk_rows > 0,
        "gather operands",
        || format!("{n} labels and chunks of at least 1 row"),
        || format!("x {:?}, y {}, chunk rows {chunk_rows}", x.dim(), y.len()),
    )?;
    check(
        perm.iter().all(|&p| (p as usize) < n),
        "permutation index",
        || format!("below {n}"),
        || "an index out of range".into(),
    )?;
    let rows = perm.len();
    let (r, dd, _) = dims(rows, d, 0)?;
    let pb = storage_init(ctx, "perm", perm);
    let xb = storage_zeroed(ctx, "xb", (rows * d * 4) as u64);
    let xbt = storage_zeroed(ctx, "xb feature-major", (rows * d * 4) as u64);
    let yb = storage_zeroed(ctx, "yb", (rows * 4) as u64);
    let x = contiguous(x);
    let step = StepUniform {
        rows: r,
        d: dd,
        ..Default::default()
    };
    for first in (0..n).step_by(chunk_rows) {
        let last = (first + chunk_rows).min(n);
        let xc = storage_init(ctx, "x chunk", &x[first * d..last * d]);
        let yc = storage_init(ctx, "y chunk", &y[first..last]);
        let cu = uniform_init(
            ctx,
            "chunk",
            &ChunkUniform {
                first_row: first as u32,
                rows: (last - first) as u32,
            },
        );
        run(
            ctx,
            Kernel::Gather,
            step,
            &[&pb, &xc, &yc, &cu, &xb, &yb, &xbt],
        )?;
    }
    let row_major = to2(read(ctx, &xb, 0, rows * d)?, rows, d)?;
    // Both copies must hold the same rows.
    let feature_major = to2(read(ctx, &xbt, 0, rows * d)?, d, rows)?;
    if feature_major.t() != row_major {
        return Err(Error::Internal(
            "gather: the feature-major copy differs from the row-major one".into(),
        ));
    }
    Ok((row_major, read(ctx, &yb, 0, rows)?))
}

/// `ceiling_read.wgsl` on the GPU: `groups` workgroups of 64 sum `data` in strides, `passes` times over; returns
/// each invocation's sum and the wall seconds of the dispatch (submission and wait included: the caller sizes
/// `passes` so that they are small beside the reads).
pub fn ceiling_read(
    ctx: &GpuContext,
    data: &[f32],
    groups: u32,
    passes: u32,
) -> Result<(Vec<f32>, f64)> {
    let n4 = u32::try_from(data.len())
        .map_err(|_| Error::shape("ceiling_read data", "at most 2³² floats", data.len()))?;
    let buf = storage_init(ctx, "ceiling data", data);
    let invocations = groups as usize * 64;
    let out = storage_zeroed(ctx, "ceiling sums", invocations as u64 * 4);
    let step = StepUniform {
        rows: n4,
        d: passes,
        k: groups,
        ..Default::default()
    };
    // A first dispatch outside the timing: the upload of `data` is flushed with the first submission that uses it.
    run(ctx, Kernel::CeilingRead, step, &[&buf, &out])?;
    let seconds = timed(ctx, || run(ctx, Kernel::CeilingRead, step, &[&buf, &out]))?;
    Ok((read(ctx, &out, 0, invocations)?, seconds))
}

/// `ceiling_fma.wgsl` on the GPU: `groups` workgroups of 64 invocations, `rounds` rounds of 64 flops each; returns
/// each invocation's result and the seconds of the dispatch.
pub fn ceiling_fma(ctx: &GpuContext, groups: u32, rounds: u32) -> Result<(Vec<f32>, f64)> {
    let invocations = groups as usize * 64;
    let out = storage_zeroed(ctx, "ceiling results", invocations as u64 * 4);
    let step = StepUniform {
        rows: rounds,
        k: groups,
        ..Default::default()
    };
    let seconds = timed(ctx, || run(ctx, Kernel::CeilingFma, step, &[&out]))?;
    Ok((read(ctx, &out, 0, invocations)?, seconds))
}

/// Wall seconds of `f`, which submits work and waits for it.
fn timed(ctx: &GpuContext, f: impl FnOnce() -> Result<()>) -> Result<f64> {
    ctx.wait()?;
    let start = std::time::Instant::now();
    f()?;
    Ok(start.elapsed().as_secs_f64())
}

/// `forward.wgsl` on the GPU (K ≤ 16): (R = (softmax(X·W + b) − onehot(y))·w_y, per-row [loss·w_y, hit]), w = 1
/// without `cw`.
pub fn forward(
    ctx: &GpuContext,
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    b: ArrayView1<f32>,
    y: &[u32],
    weights: Weights<'_, f32>,
) -> Result<(Array2<f32>, Array2<f32>)> {
    let (rows, d) = x.dim();
    let k = w.ncols();
    check(
        w.nrows() == d && b.len() == k && (1..=16).contains(&k),
        "forward operands",
        || format!("w [{d}, k ≤ 16], b [k]"),
        || format!("x {:?}, w {:?}, b {}", x.dim(), w.dim(), b.len()),
    )?;
    check_labels(y, rows, k)?;
    let (r, dd, kk) = dims(rows, d, k)?;
    // The kernel reads X feature-major, as the gather kernel leaves it.
    let xb = storage_init(ctx, "x feature-major", &contiguous(x.t()));
    let wb = storage_windowed(ctx, "w", &contiguous(w));
    let bb = storage_init(ctx, "b", &b.to_vec());
    let yb = storage_init(ctx, "y", y);
    let out = storage_zeroed(ctx, "r", (rows * k * 4) as u64);
    let stats = storage_zeroed(ctx, "row stats", (rows * 8) as u64);
    let (cwb, swb, flags) = weight_buffers(ctx, weights, rows, k)?;
    run_with(
        ctx,
        Kernel::Forward,
        StepUniform {
            rows: r,
            d: dd,
            k: kk,
            flags,
            ..Default::default()
        },
        &tile_constants(Kernel::Forward, adapter_tile(ctx)),
        &[&xb, &wb, &bb, &yb, &out, &stats, &cwb, &swb],
    )?;
    Ok((
        to2(read(ctx, &out, 0, rows * k)?, rows, k)?,
        to2(read(ctx, &stats, 0, rows * 2)?, rows, 2)?,
    ))
}

/// A held set `x` on the device in chunks of `chunk_rows` rows (at most [`HELD_SLOTS`]), as the held kernels bind
/// it: the four slots (unused ones repeat chunk 0) and the set's layout.
fn held_set(
    ctx: &GpuContext,
    x: ArrayView2<f32>,
    chunk_rows: usize,
) -> Result<(Vec<wgpu::Buffer>, wgpu::Buffer)> {
    let n = x.nrows();
    let chunks = n.div_ceil(chunk_rows.max(1));
    check(
        n > 0 && (1..=HELD_SLOTS).contains(&chunks),
        "held set",
        || format!("1 to {HELD_SLOTS} chunks of at least one row"),
        || format!("{n} rows in chunks of {chunk_rows}"),
    )?;
    let buffers: Vec<wgpu::Buffer> = (0..chunks)
        .map(|c| {
            let rows = x.slice(ndarray::s![
                c * chunk_rows..((c + 1) * chunk_rows).min(n),
                ..
            ]);
            storage_init(ctx, "held chunk", &contiguous(rows))
        })
        .collect();
    let layout = uniform_init(ctx, "held set", &HeldUniform::new(chunk_rows, chunks));
    Ok((buffers, layout))
}

fn check_perm(perm: &[u32], n: usize) -> Result<()> {
    match perm.iter().position(|&p| p as usize >= n) {
        Some(i) => Err(Error::shape(
            format!("row index {i}"),
            format!("below {n}"),
            perm[i],
        )),
        None => Ok(()),
    }
}

/// The inputs of a kernel that reads a batch of a held set in place and runs its forward pass: X as a held set of
/// chunks, the labels, the batch's row indices, W, b and the weights' buffers, after checking them (`what`, at most
/// `max_k` classes), with the batch's uniform.
struct HeldForward {
    chunks: Vec<wgpu::Buffer>,
    layout: wgpu::Buffer,
    y: wgpu::Buffer,
    perm: wgpu::Buffer,
    w: wgpu::Buffer,
    b: wgpu::Buffer,
    cw: wgpu::Buffer,
    sw: wgpu::Buffer,
    step: StepUniform,
}

impl HeldForward {
    #[allow(clippy::too_many_arguments)] // the mirror's arguments, in its order, and the chunking
    fn new(
        ctx: &GpuContext,
        (what, max_k): (&str, usize),
        x: ArrayView2<f32>,
        y: &[u32],
        perm: &[u32],
        (w, b): (ArrayView2<f32>, ArrayView1<f32>),
        weights: Weights<'_, f32>,
        chunk_rows: usize,
    ) -> Result<Self> {
        let (n, d) = x.dim();
        let k = w.ncols();
        let rows = perm.len();
        check(
            w.nrows() == d && b.len() == k && (1..=max_k).contains(&k) && rows > 0,
            what,
            || format!("w [{d}, k ≤ {max_k}], b [k], at least one row"),
            || {
                format!(
                    "x {:?}, w {:?}, b {}, {rows} rows",
                    x.dim(),
                    w.dim(),
                    b.len()
                )
            },
        )?;
        check_labels(y, n, k)?;
        check_perm(perm, n)?;
        let (r, dd, kk) = dims(rows, d, k)?;
        let (chunks, layout) = held_set(ctx, x, chunk_rows)?;
        let (cw, sw, flags) = weight_buffers(ctx, weights, rows, k)?;
        Ok(HeldForward {
            chunks,
            layout,
            y: storage_init(ctx, "labels", y),
            perm: storage_init(ctx, "perm", perm),
            w: storage_windowed(ctx, "w", &contiguous(w)),
            b: storage_init(ctx, "b", &b.to_vec()),
            cw,
            sw,
            step: StepUniform {
                rows: r,
                d: dd,
                k: kk,
                flags,
                ..Default::default()
            },
        })
    }

    /// The four chunk slots the held kernels bind (unused ones repeat the first).
    fn slots(&self) -> [&wgpu::Buffer; HELD_SLOTS] {
        held_slots(&self.chunks.iter().collect::<Vec<_>>())
    }
}

/// `forward_held.wgsl` on the GPU: [`forward`] over the rows `perm` names of the held set `x` (labels `y`), held in
/// chunks of `chunk_rows` rows.
#[allow(clippy::too_many_arguments)] // the mirror's arguments, in its order, and the chunking
pub fn forward_held(
    ctx: &GpuContext,
    x: ArrayView2<f32>,
    y: &[u32],
    perm: &[u32],
    w: ArrayView2<f32>,
    b: ArrayView1<f32>,
    weights: Weights<'_, f32>,
    chunk_rows: usize,
) -> Result<(Array2<f32>, Array2<f32>)> {
    let h = HeldForward::new(
        ctx,
        ("forward operands", 16),
        x,
        y,
        perm,
        (w, b),
        weights,
        chunk_rows,
    )?;
    let (rows, k) = (perm.len(), w.ncols());
    let out = storage_zeroed(ctx, "r", (rows * k * 4) as u64);
    let stats = storage_zeroed(ctx, "row stats", (rows * 8) as u64);
    let [x0, x1, x2, x3] = h.slots();
    run_with(
        ctx,
        Kernel::ForwardHeld,
        h.step,
        &tile_constants(Kernel::ForwardHeld, adapter_tile(ctx)),
        &[
            x0, x1, x2, x3, &h.y, &h.perm, &h.layout, &h.w, &h.b, &out, &stats, &h.cw, &h.sw,
        ],
    )?;
    Ok((
        to2(read(ctx, &out, 0, rows * k)?, rows, k)?,
        to2(read(ctx, &stats, 0, rows * 2)?, rows, 2)?,
    ))
}

/// `logits_held.wgsl` on the GPU: [`logits`] over the rows `perm` names of the held set `x` (labels `y`), held in
/// chunks of `chunk_rows` rows, and the batch's labels it copies (`y` in `perm`'s order).
pub fn logits_held(
    ctx: &GpuContext,
    x: ArrayView2<f32>,
    y: &[u32],
    perm: &[u32],
    (w, b): (ArrayView2<f32>, ArrayView1<f32>),
    chunk_rows: usize,
) -> Result<(Array2<f32>, Vec<u32>)> {
    let tile = tile_constants(Kernel::LogitsHeld, adapter_tile(ctx));
    logits_held_with(ctx, x, y, perm, (w, b), chunk_rows, &tile)
}

/// [`logits_held`] in the kernel's staged GPU shape (STAGE = 1, [`crate::gpu::kernels::logits_staged_constants`]:
/// X and W staged through workgroup memory, read coalesced), as GPUs train past the one-pass kernel's classes; the
/// same logits bitwise.
pub fn logits_held_staged(
    ctx: &GpuContext,
    x: ArrayView2<f32>,
    y: &[u32],
    perm: &[u32],
    (w, b): (ArrayView2<f32>, ArrayView1<f32>),
    chunk_rows: usize,
) -> Result<(Array2<f32>, Vec<u32>)> {
    let staged = crate::gpu::kernels::logits_staged_constants(w.ncols() as u32);
    logits_held_with(ctx, x, y, perm, (w, b), chunk_rows, &staged)
}

fn logits_held_with(
    ctx: &GpuContext,
    x: ArrayView2<f32>,
    y: &[u32],
    perm: &[u32],
    (w, b): (ArrayView2<f32>, ArrayView1<f32>),
    chunk_rows: usize,
    constants: &[(&'static str, f64)],
) -> Result<(Array2<f32>, Vec<u32>)> {
    let h = HeldForward::new(
        ctx,
        ("logits operands", usize::MAX),
        x,
        y,
        perm,
        (w, b),
        Weights::none(),
        chunk_rows,
    )?;
    let (rows, k) = (perm.len(), w.ncols());
    let z = storage_zeroed(ctx, "z", (rows * k * 4) as u64);
    let yb = storage_zeroed(ctx, "batch labels", (rows * 4) as u64);
    let [x0, x1, x2, x3] = h.slots();
    run_with(
        ctx,
        Kernel::LogitsHeld,
        h.step,
        constants,
        &[
            x0, x1, x2, x3, &h.y, &h.perm, &h.layout, &h.w, &h.b, &z, &yb,
        ],
    )?;
    Ok((
        to2(read(ctx, &z, 0, rows * k)?, rows, k)?,
        read(ctx, &yb, 0, rows)?,
    ))
}

/// `grad.wgsl` split over rows (as GPUs train: segments of 256-row units, at most `most` of them) then
/// `reduce.wgsl`: [`grad`]'s sums G = Xᵀ·R, g_b = colsum(R), added by segment in order.
pub fn grad_split(
    ctx: &GpuContext,
    x: ArrayView2<f32>,
    r: ArrayView2<f32>,
    most: u32,
) -> Result<(Array2<f32>, Array1<f32>)> {
    grad_tiled(ctx, x, r, Some(most), adapter_tile(ctx))
}

/// `reduce.wgsl` with `constants` over the per-segment `partials` (gradient, metrics) of a batch with uniform
/// `step`: G, g_b and the batch's (loss, hits).
fn reduce(
    ctx: &GpuContext,
    step: StepUniform,
    constants: &[(&'static str, f64)],
    (gp, mp): &(wgpu::Buffer, wgpu::Buffer),
) -> Result<(Array2<f32>, Array1<f32>, [f32; 2])> {
    let (d, k) = (step.d as usize, step.k as usize);
    let g = storage_zeroed(ctx, "g", (d * k * 4) as u64);
    let gb = storage_zeroed(ctx, "gb", (k * 4) as u64);
    let sums = storage_zeroed(ctx, "sums", 8);
    run_with(
        ctx,
        Kernel::Reduce,
        step,
        constants,
        &[gp, mp, &g, &gb, &sums],
    )?;
    let metrics = read(ctx, &sums, 0, 2)?;
    Ok((
        to2(read(ctx, &g, 0, d * k)?, d, k)?,
        Array1::from(read(ctx, &gb, 0, k)?),
        [metrics[0], metrics[1]],
    ))
}

/// `grad_held.wgsl` on the GPU: [`grad`] over the rows `perm` names of the held set `x`, held in chunks of
/// `chunk_rows` rows.
pub fn grad_held(
    ctx: &GpuContext,
    x: ArrayView2<f32>,
    perm: &[u32],
    r: ArrayView2<f32>,
    chunk_rows: usize,
) -> Result<(Array2<f32>, Array1<f32>)> {
    let tile = tile_constants(Kernel::GradHeld, adapter_tile(ctx));
    grad_held_with(ctx, x, perm, r, chunk_rows, None, tile)
}

/// [`grad_held`] split over rows as GPUs train (segments of 256-row units, at most `most` of them, as
/// [`grad_split`]) then `reduce.wgsl`: the same sums, added by segment in order.
pub fn grad_held_split(
    ctx: &GpuContext,
    x: ArrayView2<f32>,
    perm: &[u32],
    r: ArrayView2<f32>,
    chunk_rows: usize,
    most: u32,
) -> Result<(Array2<f32>, Array1<f32>)> {
    let tile = tile_constants(Kernel::GradHeld, adapter_tile(ctx));
    grad_held_with(ctx, x, perm, r, chunk_rows, Some(most), tile)
}

/// [`grad_held_split`] in the kernel's staged GPU shape (STAGE = 1, [`crate::gpu::kernels::grad_staged_constants`]:
/// the rows' features and residuals staged through workgroup memory, read coalesced), as GPUs train past the
/// one-pass kernel's classes; the same sums bitwise.
pub fn grad_held_staged(
    ctx: &GpuContext,
    x: ArrayView2<f32>,
    perm: &[u32],
    r: ArrayView2<f32>,
    chunk_rows: usize,
    most: u32,
) -> Result<(Array2<f32>, Array1<f32>)> {
    let staged = crate::gpu::kernels::grad_staged_constants();
    grad_held_with(ctx, x, perm, r, chunk_rows, Some(most), staged)
}

/// [`grad_held`] (`split`: None) or [`grad_held_split`] (`split`: Some(most segments)) with the pipeline built for
/// `constants` (a tile size, or the staged shape, which needs `split`).
fn grad_held_with(
    ctx: &GpuContext,
    x: ArrayView2<f32>,
    perm: &[u32],
    r: ArrayView2<f32>,
    chunk_rows: usize,
    split: Option<u32>,
    constants: Vec<(&'static str, f64)>,
) -> Result<(Array2<f32>, Array1<f32>)> {
    let (n, d) = x.dim();
    let (rows, k) = r.dim();
    check(
        perm.len() == rows && rows > 0 && split != Some(0),
        "grad operands",
        || format!("a row index per row of r, at least 1 (r has {rows}), and at least one segment"),
        || format!("{} row indices, segments {split:?}", perm.len()),
    )?;
    check_perm(perm, n)?;
    let (rr, dd, kk) = dims(rows, d, k)?;
    let (chunks, layout) = held_set(ctx, x, chunk_rows)?;
    let [x0, x1, x2, x3] = held_slots(&chunks.iter().collect::<Vec<_>>());
    let pb = storage_init(ctx, "perm", perm);
    let rb = storage_windowed(ctx, "r", &contiguous(r));
    let step = StepUniform {
        rows: rr,
        d: dd,
        k: kk,
        ..Default::default()
    };
    let head = [x0, x1, x2, x3, &pb, &layout, &rb];
    run_grad(ctx, Kernel::GradHeld, step, constants, split, &head)
}

/// `fused_held.wgsl` then `reduce.wgsl` on the GPU (cpu::fused): the gradient sums G, g_b and the summed loss and
/// hits over the rows `perm` names of the held set `x` (labels `y`), held in chunks of `chunk_rows` rows; K ≤ 32.
/// `team`: the kernel's GPU shape on this device ([`team`]), its CPU adapters' ([`Team::ONE`]; which an adapter
/// trains with, [`crate::gpu::kernels::fused_gpu_shape`] says) or another team; all are tested on every adapter.
#[allow(clippy::too_many_arguments)] // the mirror's arguments, in its order, the chunking and the variant
pub fn fused_held(
    ctx: &GpuContext,
    x: ArrayView2<f32>,
    y: &[u32],
    perm: &[u32],
    w: ArrayView2<f32>,
    b: ArrayView1<f32>,
    weights: Weights<'_, f32>,
    chunk_rows: usize,
    team: Team,
) -> Result<(Array2<f32>, Array1<f32>, f32, f32)> {
    let h = HeldForward::new(
        ctx,
        ("fused operands", FUSED_MAX_CLASSES),
        x,
        y,
        perm,
        (w, b),
        weights,
        chunk_rows,
    )?;
    let partials = fused_partials(ctx, h.step.d, h.step.k);
    let slots = h.chunks.len() as u32;
    let constants = |kernel| fused_constants(kernel, h.step.d, h.step.k, slots, true, team);
    let [x0, x1, x2, x3] = h.slots();
    run_with(
        ctx,
        Kernel::FusedHeld,
        h.step,
        &constants(Kernel::FusedHeld),
        &[
            x0,
            x1,
            x2,
            x3,
            &h.y,
            &h.perm,
            &h.layout,
            &h.w,
            &h.b,
            &h.cw,
            &h.sw,
            &partials.0,
            &partials.1,
        ],
    )?;
    let (g, gb, [loss, hits]) = reduce(ctx, h.step, &constants(Kernel::Reduce), &partials)?;
    Ok((g, gb, loss, hits))
}

/// `sparse_logits.wgsl` on the GPU: Z = X·W + b for a sparse batch.
pub fn sparse_logits(
    ctx: &GpuContext,
    x: &crate::data::SparseBatch,
    w: ArrayView2<f32>,
    b: ArrayView1<f32>,
) -> Result<Array2<f32>> {
    let (rows, d, k) = (x.len(), x.d, w.ncols());
    check(
        w.nrows() == d && b.len() == k && rows > 0,
        "sparse logits operands",
        || format!("w [{d}, k], b [k], at least 1 row"),
        || format!("{rows} rows, w {:?}, b {}", w.dim(), b.len()),
    )?;
    let (r, dd, kk) = dims(rows, d, k)?;
    let off = storage_init(ctx, "offsets", &x.offsets);
    let idx = storage_init(ctx, "indices", &x.indices);
    let val = storage_init(ctx, "values", &x.values);
    let wb = storage_init(ctx, "w", &contiguous(w));
    let bb = storage_init(ctx, "b", &b.to_vec());
    let z = storage_zeroed(ctx, "z", (rows * k * 4) as u64);
    run(
        ctx,
        Kernel::SparseLogits,
        StepUniform {
            rows: r,
            d: dd,
            k: kk,
            ..Default::default()
        },
        &[&off, &idx, &val, &wb, &bb, &z],
    )?;
    to2(read(ctx, &z, 0, rows * k)?, rows, k)
}

/// `sparse_grad.wgsl` on the GPU: the gradient sums (G = Xᵀ·R, g_b = colsum(R)) of a sparse batch.
pub fn sparse_grad(
    ctx: &GpuContext,
    x: &crate::data::SparseBatch,
    r: ArrayView2<f32>,
) -> Result<(Array2<f32>, Array1<f32>)> {
    let (rows, d, k) = (x.len(), x.d, r.ncols());
    check(
        r.nrows() == rows && rows > 0,
        "sparse grad operands",
        || format!("r with the batch's {rows} rows, at least 1"),
        || format!("r {:?}", r.dim()),
    )?;
    // The kernel adds to G: start from zeros; its step.d is the number of touched columns.
    let (rr, touched, kk) = dims(rows, x.cols.len(), k)?;
    dims(0, d, 0)?;
    let cols = storage_init(ctx, "cols", &x.cols);
    let ptr = storage_init(ctx, "ptr", &x.touched_ptr());
    let crow = storage_init(ctx, "col_rows", &x.col_rows);
    let cval = storage_init(ctx, "col_vals", &x.col_vals);
    let rb = storage_init(ctx, "r", &contiguous(r));
    let g = storage_zeroed(ctx, "g", (d * k * 4) as u64);
    let gb = storage_zeroed(ctx, "gb", (k * 4) as u64);
    run(
        ctx,
        Kernel::SparseGrad,
        StepUniform {
            rows: rr,
            d: touched,
            k: kk,
            ..Default::default()
        },
        &[&cols, &ptr, &crow, &cval, &rb, &g, &gb],
    )?;
    Ok((
        to2(read(ctx, &g, 0, d * k)?, d, k)?,
        Array1::from(read(ctx, &gb, 0, k)?),
    ))
}

/// A matrix and a vector: (W, b) or (G, g_b).
pub type Pair = (Array2<f32>, Array1<f32>);

/// `sparse_update.wgsl` on the GPU: the update over the columns `cols` (and b), zeroing the consumed sums; returns
/// ((W, b), (G, g_b)) after it. With `apply` false, only the zeroing.
#[allow(clippy::too_many_arguments)] // the mirror's arguments, in its order
pub fn sparse_update(
    ctx: &GpuContext,
    cols: &[u32],
    g: ArrayView2<f32>,
    gb: ArrayView1<f32>,
    w: ArrayView2<f32>,
    b: ArrayView1<f32>,
    (lr, l2, rows): (f32, f32, u32),
    apply: bool,
) -> Result<(Pair, Pair)> {
    let (d, k) = w.dim();
    check(
        g.dim() == (d, k)
            && gb.len() == k
            && b.len() == k
            && rows > 0
            && cols.iter().all(|&j| (j as usize) < d),
        "sparse update operands",
        || {
            format!(
                "g {:?}, g_b and b [{k}], rows ≥ 1, columns below {d}",
                (d, k)
            )
        },
        || {
            format!(
                "g {:?}, g_b [{}], b [{}], rows {rows}",
                g.dim(),
                gb.len(),
                b.len()
            )
        },
    )?;
    let (_, touched, kk) = dims(0, cols.len(), k)?;
    let cb = storage_init(ctx, "cols", cols);
    let gbuf = storage_init(ctx, "g", &contiguous(g));
    let gbb = storage_init(ctx, "gb", &gb.to_vec());
    let wb = storage_init(ctx, "w", &contiguous(w));
    let bb = storage_init(ctx, "b", &b.to_vec());
    let step = StepUniform {
        rows,
        d: touched,
        k: kk,
        lr,
        l2,
        flags: if apply { 0 } else { 2 },
        ..Default::default()
    };
    run(
        ctx,
        Kernel::SparseUpdate,
        step,
        &[&cb, &gbuf, &gbb, &wb, &bb],
    )?;
    Ok((
        (
            to2(read(ctx, &wb, 0, d * k)?, d, k)?,
            Array1::from(read(ctx, &bb, 0, k)?),
        ),
        (
            to2(read(ctx, &gbuf, 0, d * k)?, d, k)?,
            Array1::from(read(ctx, &gbb, 0, k)?),
        ),
    ))
}

/// `update_momentum.wgsl` (`adam` false) or `update_adam.wgsl` on the GPU: one step from gradient sums; returns
/// ((W, b), the state slots after it).
#[allow(clippy::too_many_arguments)] // the mirror's arguments, in its order
pub fn optimizer_step(
    ctx: &GpuContext,
    adam: bool,
    g: ArrayView2<f32>,
    gb: ArrayView1<f32>,
    w: ArrayView2<f32>,
    b: ArrayView1<f32>,
    slots: &[&[f32]],
    p: &crate::optim::StepParams<f32>,
) -> Result<(Pair, Vec<Vec<f32>>)> {
    let (d, k) = w.dim();
    let n = d * k + k;
    check(
        g.dim() == (d, k)
            && gb.len() == k
            && b.len() == k
            && slots.len() == if adam { 2 } else { 1 }
            && slots.iter().all(|s| s.len() == n),
        "optimizer step operands",
        || {
            format!(
                "g {:?}, g_b and b [{k}], {} slots of {n}",
                (d, k),
                if adam { 2 } else { 1 }
            )
        },
        || {
            format!(
                "g {:?}, g_b [{}], b [{}], {} slots",
                g.dim(),
                gb.len(),
                b.len(),
                slots.len()
            )
        },
    )?;
    let (_, dd, kk) = dims(0, d, k)?;
    let gbuf = storage_init(ctx, "g", &contiguous(g));
    let gbb = storage_init(ctx, "gb", &gb.to_vec());
    let wb = storage_init(ctx, "w", &contiguous(w));
    let bb = storage_init(ctx, "b", &b.to_vec());
    let state: Vec<wgpu::Buffer> = slots
        .iter()
        .map(|s| storage_init(ctx, "state", s))
        .collect();
    let step = StepUniform {
        rows: p.rows as u32,
        d: dd,
        k: kk,
        lr: p.lr,
        l2: p.l2,
        l1: p.l1,
        ..Default::default()
    }
    .with_optimizer(p);
    let mut buffers = vec![&gbuf, &gbb, &wb, &bb];
    buffers.extend(state.iter());
    let kernel = if adam {
        Kernel::UpdateAdam
    } else {
        Kernel::UpdateMomentum
    };
    run(ctx, kernel, step, &buffers)?;
    let slots = state
        .iter()
        .map(|s| read(ctx, s, 0, n))
        .collect::<Result<Vec<_>>>()?;
    Ok((
        (
            to2(read(ctx, &wb, 0, d * k)?, d, k)?,
            Array1::from(read(ctx, &bb, 0, k)?),
        ),
        slots,
    ))
}

/// How the one-pass kernel's GPU shape shares a row's features on `ctx`'s device ([`Team::for_limits`]: as many
/// lanes as its workgroups allow, through subgroup shuffles where [`GpuContext::shuffles_in_order`] finds them in
/// order); checked once, on first use, and kept with the device.
pub fn team(ctx: &GpuContext) -> Team {
    *ctx.team
        .get_or_init(|| Team::for_limits(&ctx.limits, |lanes| ctx.shuffles_in_order(lanes)))
}
