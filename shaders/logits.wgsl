// Z = X·W + b for one batch. X is read feature-major (xt[j·rows + i], the copy the gather kernel writes beside the
// row-major one), W is [d, k] row-major, b is [k], Z is [rows, k].
//
// One invocation per row and tile of 16 classes (y of the grid), the 16 sums in four vec4 registers: consecutive
// invocations read consecutive elements of xt (one vector load on SIMD hardware and on llvmpipe) and the same
// weights (a broadcast). The sum over features runs in index order: deterministic.

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

fn w4(j: u32, c: u32) -> vec4<f32> {
    return vec4<f32>(wt(j, c), wt(j, c + 1u), wt(j, c + 2u), wt(j, c + 3u));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let c0 = gid.y * 16u;
    if (i >= step.rows || c0 >= step.k) {
        return;
    }
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var j = 0u; j < step.d; j = j + 1u) {
        let v = vec4<f32>(xt[j * step.rows + i]);
        a0 = fma(v, w4(j, c0), a0);
        a1 = fma(v, w4(j, c0 + 4u), a1);
        a2 = fma(v, w4(j, c0 + 8u), a2);
        a3 = fma(v, w4(j, c0 + 12u), a3);
    }
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
        // The bias is added last, after the d products (the CPU mirror adds it to X·W the same way).
        z[i * step.k + c] = v + b[c];
    }
}
