// G = Xᵀ·R and g_b = colsum(R): the gradient sums of the batch's cross-entropy (the update divides by the row count,
// so that sums over several batches or processes can be added first). With bit 0 of step.flags set, the batch's sums
// are added to what G and g_b already hold (accumulation over the chunks of a full-batch objective).
//
// Register tiling for the tall-skinny shape: one invocation per 4 consecutive features (one vec4 of a row of X) and
// tile of 16 classes (y of the grid), 16 vec4 accumulators (features × classes) in registers; the invocation after
// the last feature quad sums the bias (its "feature" is 1). Each walks the batch's rows in order: per row one vec4 of
// X and 16 residuals (the same for every invocation: a broadcast) for 16 vec4 FMAs. No workgroup memory, no barrier,
// no atomics: every sum is added in row order, so the result is bitwise reproducible.

override WG: u32 = 64u;
// Classes of a tile that are computed (the host sets min(K, 16)); the accumulators past it stay unused and their
// FMAs are compiled out. Only a tile's class count changes, never a sum: results are the same for any KT ≥ K.
override KT: u32 = 16u;

@group(1) @binding(0) var<storage, read> x: array<f32>;
@group(1) @binding(1) var<storage, read> r: array<f32>;
@group(1) @binding(2) var<storage, read_write> g: array<f32>;
@group(1) @binding(3) var<storage, read_write> gb: array<f32>;

// r[i, c], with c clamped to the last class: a tile's classes past k compute sums that are never stored, and no
// branch is taken per element.
fn res(i: u32, c: u32) -> f32 {
    return r[i * step.k + min(c, step.k - 1u)];
}

// x[i, j..j + 4], features past d read as 0; the bias invocation (j ≥ d) reads 1.
fn x4(i: u32, j: u32) -> vec4<f32> {
    let d = step.d;
    if (j >= d) {
        return vec4<f32>(1.0);
    }
    let base = i * d;
    return vec4<f32>(
        x[base + j],
        select(0.0, x[base + min(j + 1u, d - 1u)], j + 1u < d),
        select(0.0, x[base + min(j + 2u, d - 1u)], j + 2u < d),
        select(0.0, x[base + min(j + 3u, d - 1u)], j + 3u < d),
    );
}

// Stores the sums of one class for the invocation's features (or the bias).
fn put(j0: u32, c: u32, acc: vec4<f32>, add: bool) {
    if (c >= step.k) {
        return;
    }
    if (j0 >= step.d) {
        gb[c] = select(acc[0], gb[c] + acc[0], add);
        return;
    }
    for (var q = 0u; q < 4u; q = q + 1u) {
        let j = j0 + q;
        if (j < step.d) {
            let e = j * step.k + c;
            g[e] = select(acc[q], g[e] + acc[q], add);
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j0 = gid.x * 4u;
    let c0 = gid.y * 16u;
    let quads = (step.d + 3u) / 4u;
    if (gid.x > quads || c0 >= step.k) {
        return;
    }
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    var a8 = vec4<f32>(0.0);
    var a9 = vec4<f32>(0.0);
    var a10 = vec4<f32>(0.0);
    var a11 = vec4<f32>(0.0);
    var a12 = vec4<f32>(0.0);
    var a13 = vec4<f32>(0.0);
    var a14 = vec4<f32>(0.0);
    var a15 = vec4<f32>(0.0);
    for (var i = 0u; i < step.rows; i = i + 1u) {
        let x = x4(i, j0);
        a0 = fma(x, vec4<f32>(res(i, c0 + 0u)), a0);
        if (KT > 1u) { a1 = fma(x, vec4<f32>(res(i, c0 + 1u)), a1); }
        if (KT > 2u) { a2 = fma(x, vec4<f32>(res(i, c0 + 2u)), a2); }
        if (KT > 3u) { a3 = fma(x, vec4<f32>(res(i, c0 + 3u)), a3); }
        if (KT > 4u) { a4 = fma(x, vec4<f32>(res(i, c0 + 4u)), a4); }
        if (KT > 5u) { a5 = fma(x, vec4<f32>(res(i, c0 + 5u)), a5); }
        if (KT > 6u) { a6 = fma(x, vec4<f32>(res(i, c0 + 6u)), a6); }
        if (KT > 7u) { a7 = fma(x, vec4<f32>(res(i, c0 + 7u)), a7); }
        if (KT > 8u) { a8 = fma(x, vec4<f32>(res(i, c0 + 8u)), a8); }
        if (KT > 9u) { a9 = fma(x, vec4<f32>(res(i, c0 + 9u)), a9); }
        if (KT > 10u) { a10 = fma(x, vec4<f32>(res(i, c0 + 10u)), a10); }
        if (KT > 11u) { a11 = fma(x, vec4<f32>(res(i, c0 + 11u)), a11); }
        if (KT > 12u) { a12 = fma(x, vec4<f32>(res(i, c0 + 12u)), a12); }
        if (KT > 13u) { a13 = fma(x, vec4<f32>(res(i, c0 + 13u)), a13); }
        if (KT > 14u) { a14 = fma(x, vec4<f32>(res(i, c0 + 14u)), a14); }
        if (KT > 15u) { a15 = fma(x, vec4<f32>(res(i, c0 + 15u)), a15); }
    }
    let add = (step.flags & 1u) != 0u;
    put(j0, c0 + 0u, a0, add);
    put(j0, c0 + 1u, a1, add);
    put(j0, c0 + 2u, a2, add);
    put(j0, c0 + 3u, a3, add);
    put(j0, c0 + 4u, a4, add);
    put(j0, c0 + 5u, a5, add);
    put(j0, c0 + 6u, a6, add);
    put(j0, c0 + 7u, a7, add);
    put(j0, c0 + 8u, a8, add);
    put(j0, c0 + 9u, a9, add);
    put(j0, c0 + 10u, a10, add);
    put(j0, c0 + 11u, a11, add);
    put(j0, c0 + 12u, a12, add);
    put(j0, c0 + 13u, a13, add);
    put(j0, c0 + 14u, a14, add);
    put(j0, c0 + 15u, a15, add);
}
