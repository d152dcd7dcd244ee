// G = Xᵀ·R and g_b = colsum(R): the gradient sums of the batch's cross-entropy (the update divides by the row count,
// so that sums over several batches or processes can be added first). With bit 0 of step.flags set, the batch's sums
// are added to what G and g_b already hold (accumulation over the chunks of a full-batch objective).
//
// One invocation per feature j (j == d stands for the bias, whose "feature" is 1) and tile of 16 classes (y of the
// grid). It walks the batch's rows in order and keeps the 16 sums in four vec4 registers: consecutive invocations
// read consecutive elements of a row of X (one vector load on SIMD hardware and on llvmpipe) and the same residuals
// (a broadcast). No workgroup memory, no barrier, no atomics: every sum is added in row order, so the result is
// bitwise reproducible.

override WG: u32 = 64u;

@group(1) @binding(0) var<storage, read> x: array<f32>;
@group(1) @binding(1) var<storage, read> r: array<f32>;
@group(1) @binding(2) var<storage, read_write> g: array<f32>;
@group(1) @binding(3) var<storage, read_write> gb: array<f32>;

// r[i, c], with c clamped to the last class: a tile's classes past k compute sums that are never stored, and no
// branch is taken per element.
fn res(i: u32, c: u32) -> f32 {
    return r[i * step.k + min(c, step.k - 1u)];
}

fn res4(i: u32, c: u32) -> vec4<f32> {
    return vec4<f32>(res(i, c), res(i, c + 1u), res(i, c + 2u), res(i, c + 3u));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let c0 = gid.y * 16u;
    if (j > step.d || c0 >= step.k) {
        return;
    }
    let is_bias = j == step.d;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var i = 0u; i < step.rows; i = i + 1u) {
        var xv = 1.0;
        if (!is_bias) {
            xv = x[i * step.d + j];
        }
        let v = vec4<f32>(xv);
        a0 = fma(v, res4(i, c0), a0);
        a1 = fma(v, res4(i, c0 + 4u), a1);
        a2 = fma(v, res4(i, c0 + 8u), a2);
        a3 = fma(v, res4(i, c0 + 12u), a3);
    }
    let add = (step.flags & 1u) != 0u;
    for (var t = 0u; t < 16u; t = t + 1u) {
        let c = c0 + t;
        if (c >= step.k) {
            break;
        }
        var v: f32;
        switch (t / 4u) {
            case 0u: { v = a0[t % 4u]; }
            case 1u: { v = a1[t % 4u]; }
            case 2u: { v = a2[t % 4u]; }
            default: { v = a3[t % 4u]; }
        }
        if (is_bias) {
            gb[c] = select(v, gb[c] + v, add);
        } else {
            let e = j * step.k + c;
            g[e] = select(v, g[e] + v, add);
        }
    }
}
