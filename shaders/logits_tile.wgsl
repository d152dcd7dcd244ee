// The body of the logits kernels logits.wgsl and logits_held.wgsl, appended to each when it is compiled
// (src/gpu/kernels.rs): the register tile over 4 rows × 16 classes, written once. Each kernel file declares `WG`,
// `KT`, the buffers `w`, `b`, `z` and where its rows come from: `struct Rows`, `fn rows_at(i0)` (the invocation's
// 4 rows from i0), `fn x4(rows, j)` (feature j of those rows) and `fn rows_done(i0, c0)` (run once per invocation).

// w[j, c], with c clamped to the last class: a tile's classes past k compute values that are never stored, and no
// branch is taken per element.
fn wt(j: u32, c: u32) -> f32 {
    return w[j * step.k + min(c, step.k - 1u)];
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
    let rows = rows_at(i0);
    rows_done(i0, c0);
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
        let x4 = x4(rows, j);
        a0 = fma(x4, vec4<f32>(wt(j, c0 + 0u)), a0);
        if (KT > 1u) { a1 = fma(x4, vec4<f32>(wt(j, c0 + 1u)), a1); }
        if (KT > 2u) { a2 = fma(x4, vec4<f32>(wt(j, c0 + 2u)), a2); }
        if (KT > 3u) { a3 = fma(x4, vec4<f32>(wt(j, c0 + 3u)), a3); }
        if (KT > 4u) { a4 = fma(x4, vec4<f32>(wt(j, c0 + 4u)), a4); }
        if (KT > 5u) { a5 = fma(x4, vec4<f32>(wt(j, c0 + 5u)), a5); }
        if (KT > 6u) { a6 = fma(x4, vec4<f32>(wt(j, c0 + 6u)), a6); }
        if (KT > 7u) { a7 = fma(x4, vec4<f32>(wt(j, c0 + 7u)), a7); }
        if (KT > 8u) { a8 = fma(x4, vec4<f32>(wt(j, c0 + 8u)), a8); }
        if (KT > 9u) { a9 = fma(x4, vec4<f32>(wt(j, c0 + 9u)), a9); }
        if (KT > 10u) { a10 = fma(x4, vec4<f32>(wt(j, c0 + 10u)), a10); }
        if (KT > 11u) { a11 = fma(x4, vec4<f32>(wt(j, c0 + 11u)), a11); }
        if (KT > 12u) { a12 = fma(x4, vec4<f32>(wt(j, c0 + 12u)), a12); }
        if (KT > 13u) { a13 = fma(x4, vec4<f32>(wt(j, c0 + 13u)), a13); }
        if (KT > 14u) { a14 = fma(x4, vec4<f32>(wt(j, c0 + 14u)), a14); }
        if (KT > 15u) { a15 = fma(x4, vec4<f32>(wt(j, c0 + 15u)), a15); }
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
