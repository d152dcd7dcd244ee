// Z = X·W + b for one batch. X is read feature-major (xt[j·rows + i], the copy the gather kernel writes beside the
// row-major one), W is [d, k] row-major, b is [k], Z is [rows, k].
//
// Register tiling for the tall-skinny shape: one invocation per 4 consecutive rows (one vec4 of xt per feature) and
// tile of 16 classes (y of the grid), 16 vec4 accumulators (rows × classes) in registers. Per feature it loads one
// vec4 of X and 16 weights (the same for every invocation: a broadcast) for 16 vec4 FMAs. The accumulators are named
// variables, not an array: a private array indexed at run time would live in memory. The sum over features runs in
// index order: deterministic.

override WG: u32 = 64u;

@group(1) @binding(0) var<storage, read> xt: array<f32>;
@group(1) @binding(1) var<storage, read> w: array<f32>;
@group(1) @binding(2) var<storage, read> b: array<f32>;
@group(1) @binding(3) var<storage, read_write> z: array<f32>;

// w[j, c], with c clamped to the last class: a tile's classes past k compute values that are never stored, and no
// branch is taken per element.
fn wt(j: u32, c: u32) -> f32 {
    return w[j * step.k + min(c, step.k - 1u)];
}

// xt[j, i..i + 4], rows past the batch read as 0 (their results are never stored).
fn x4(j: u32, i: u32) -> vec4<f32> {
    let base = j * step.rows;
    let n = step.rows;
    return vec4<f32>(
        select(0.0, xt[base + min(i, n - 1u)], i < n),
        select(0.0, xt[base + min(i + 1u, n - 1u)], i + 1u < n),
        select(0.0, xt[base + min(i + 2u, n - 1u)], i + 2u < n),
        select(0.0, xt[base + min(i + 3u, n - 1u)], i + 3u < n),
    );
}

// Stores the 4 rows of one class: z[i0 + q, c] = acc[q] + b[c] (the bias added last, as the CPU mirror does).
fn put(i0: u32, c: u32, acc: vec4<f32>) {
    if (c >= step.k) {
        return;
    }
    for (var q = 0u; q < 4u; q = q + 1u) {
        if (i0 + q < step.rows) {
            z[(i0 + q) * step.k + c] = acc[q] + b[c];
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.x * 4u;
    let c0 = gid.y * 16u;
    if (i0 >= step.rows || c0 >= step.k) {
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
    for (var j = 0u; j < step.d; j = j + 1u) {
        let x4 = x4(j, i0);
        a0 = fma(x4, vec4<f32>(wt(j, c0 + 0u)), a0);
        a1 = fma(x4, vec4<f32>(wt(j, c0 + 1u)), a1);
        a2 = fma(x4, vec4<f32>(wt(j, c0 + 2u)), a2);
        a3 = fma(x4, vec4<f32>(wt(j, c0 + 3u)), a3);
        a4 = fma(x4, vec4<f32>(wt(j, c0 + 4u)), a4);
        a5 = fma(x4, vec4<f32>(wt(j, c0 + 5u)), a5);
        a6 = fma(x4, vec4<f32>(wt(j, c0 + 6u)), a6);
        a7 = fma(x4, vec4<f32>(wt(j, c0 + 7u)), a7);
        a8 = fma(x4, vec4<f32>(wt(j, c0 + 8u)), a8);
        a9 = fma(x4, vec4<f32>(wt(j, c0 + 9u)), a9);
        a10 = fma(x4, vec4<f32>(wt(j, c0 + 10u)), a10);
        a11 = fma(x4, vec4<f32>(wt(j, c0 + 11u)), a11);
        a12 = fma(x4, vec4<f32>(wt(j, c0 + 12u)), a12);
        a13 = fma(x4, vec4<f32>(wt(j, c0 + 13u)), a13);
        a14 = fma(x4, vec4<f32>(wt(j, c0 + 14u)), a14);
        a15 = fma(x4, vec4<f32>(wt(j, c0 + 15u)), a15);
    }
    put(i0, c0 + 0u, a0);
    put(i0, c0 + 1u, a1);
    put(i0, c0 + 2u, a2);
    put(i0, c0 + 3u, a3);
    put(i0, c0 + 4u, a4);
    put(i0, c0 + 5u, a5);
    put(i0, c0 + 6u, a6);
    put(i0, c0 + 7u, a7);
    put(i0, c0 + 8u, a8);
    put(i0, c0 + 9u, a9);
    put(i0, c0 + 10u, a10);
    put(i0, c0 + 11u, a11);
    put(i0, c0 + 12u, a12);
    put(i0, c0 + 13u, a13);
    put(i0, c0 + 14u, a14);
    put(i0, c0 + 15u, a15);
}
