// G = Xᵀ·R and g_b = colsum(R): the gradient sums of the batch's cross-entropy (the update divides by the row count,
// so that sums over several batches or processes can be added first). With bit 0 of step.flags set, the batch's sums
// are added to what G and g_b already hold (accumulation over the chunks of a full-batch objective).
//
// Register tiling for the tall-skinny shape: one invocation per 4·TQ consecutive features (TQ vec4s of a row of X;
// TQ = 2 on CPU adapters, 1 on GPUs: kernels::tile_quads) and tile of 16 classes (y of the grid), 16·TQ vec4
// accumulators (features × classes) in registers; the quad after the last feature quad sums the bias (its "feature"
// is 1). Each walks the batch's rows in order: per row TQ vec4s of X and 16 residuals (the same for every invocation:
// a broadcast) for 16·TQ vec4 FMAs. No workgroup memory, no barrier,
// no atomics: every sum is added in row order, so the result is bitwise reproducible.

override WG: u32 = 64u;
// Classes of a tile that are computed (the host sets min(K, 16)); the accumulators past it stay unused and their
// FMAs are compiled out. Only a tile's class count changes, never a sum: results are the same for any KT ≥ K.
override KT: u32 = 16u;

@group(1) @binding(0) var<storage, read> x: array<f32>;
@group(1) @binding(1) var<storage, read> r: array<f32>;
@group(1) @binding(2) var<storage, read_write> g: array<f32>;
@group(1) @binding(3) var<storage, read_write> gb: array<f32>;

// Where row i of the batch starts in x (y; x is unused: one buffer).
fn row_at(i: u32) -> vec2<u32> {
    return vec2<u32>(0u, i * step.d);
}

// Features j..j + 4 of the row at `row`, features past d read as 0; the bias invocation (j ≥ d) reads 1.
fn x4(row: vec2<u32>, j: u32) -> vec4<f32> {
    let d = step.d;
    if (j >= d) {
        return vec4<f32>(1.0);
    }
    let base = row.y;
    return vec4<f32>(
        x[base + j],
        select(0.0, x[base + min(j + 1u, d - 1u)], j + 1u < d),
        select(0.0, x[base + min(j + 2u, d - 1u)], j + 2u < d),
        select(0.0, x[base + min(j + 3u, d - 1u)], j + 3u < d),
    );
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    tile(gid);
}

// The tile and its row walk: grad_tile.wgsl, appended at load time.
