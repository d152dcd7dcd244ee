// Declarations every kernel shares, written once and prepended to each shader when its pipeline is built
// (src/gpu/kernels.rs). Not a kernel itself.

// The per-step parameters at group 0, bound with a dynamic offset so one buffer holds the parameters of many steps.
// Mirrors `StepUniform` in src/gpu/kernels.rs.
struct Step {
    rows: u32,          // rows in this batch (for the update: the rows the gradient sums cover)
    perm_offset: u32,   // where the batch's row indices start in the perm buffer
    d: u32,             // features
    k: u32,             // classes
    lr: f32,            // learning rate
    l2: f32,            // L2 penalty on W
    slot: u32,          // slot of this batch's loss / hit sums
    flags: u32,         // bit 0: the gradient kernel adds to the sums it holds; bit 1: the sparse update only zeroes;
                        // bit 2: Nesterov; bit 3: the batch's rows carry weights at sw_offset
    l1: f32,            // L1 penalty on W
    beta1: f32,         // μ of momentum, β₁ of Adam
    beta2: f32,         // β₂ of Adam
    eps: f32,           // ε of Adam
    c1: f32,            // Adam's bias corrections 1 − β₁ᵗ, 1 − β₂ᵗ
    c2: f32,
    weight_decay: f32,  // AdamW's decoupled decay
    sw_offset: u32,     // where this batch's row weights start in the weights ring
}

@group(0) @binding(0) var<uniform> step: Step;

// The index of an invocation in a one-dimensional dispatch that the host folded into x and y because it exceeded
// the adapter's workgroups per dimension (GpuContext::fold); `wg` is the workgroup's size in x.
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>, wg: u32) -> u32 {
    return gid.x + gid.y * nwg.x * wg;
}

// The layout of a held data set, for the kernels that read its rows in place (forward_held, grad_held): every chunk
// but the last holds `chunk_rows` rows. Mirrors `HeldUniform` in src/gpu/kernels.rs.
struct HeldSet {
    chunk_rows: u32,
    chunks: u32,
    pad0: u32,
    pad1: u32,
}

// The chunk slot (of at most 4) that holds row `row` of a held set and the index of the row's first element there.
// Compares instead of dividing: SIMD hardware and llvmpipe divide one lane at a time.
fn held_row(row: u32, chunk_rows: u32, d: u32) -> vec2<u32> {
    let c = select(0u, 1u, row >= chunk_rows) + select(0u, 1u, row >= 2u * chunk_rows)
        + select(0u, 1u, row >= 3u * chunk_rows);
    return vec2<u32>(c, (row - c * chunk_rows) * d);
}

// How the kernels that split a batch into segments cut it (fused_held.wgsl, grad_tile.wgsl split, reduce.wgsl): the
// batch's `rows` rows in units of `unit` rows, the units shared out in order to at most `most` segments. Returns the
// units of a segment (the last may have fewer) and the segments. Mirrors `kernels::segments`.
fn segments(rows: u32, unit: u32, most: u32) -> vec2<u32> {
    let units = (rows + unit - 1u) / unit;
    let per = max((units + most - 1u) / max(most, 1u), 1u);
    return vec2<u32>(per, (units + per - 1u) / per);
}
