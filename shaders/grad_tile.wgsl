// The body of the gradient kernels grad.wgsl and grad_held.wgsl, appended to each when it is compiled
// (src/gpu/kernels.rs): the register tile and its row walk, written once. Each kernel file declares `WG`, `KT`, the buffers `r`, `g`, `gb`
// and `fn x4(i, j)`: features j..j + 4 of the batch's row i (1 for the bias invocation), from where it reads X.
//
// Split over the rows (SEGS > 0, for GPUs: a walk over the whole batch is a chain of dependent loads as long as
// the batch): the rows are cut into units of 256 and the units into at most SEGS segments of consecutive units, as
// reduce.wgsl counts them; y of the grid is (segment, class tile), each invocation walks its segment's rows only and
// writes its sums to `g` as the segment's partial, laid out [segment][class][d + 1] (the bias last) as
// fused_held.wgsl's, for reduce.wgsl to add in segment order.

// Rows per unit of a split walk, and at most how many segments (0: no split).
const UNIT: u32 = 256u;
override SEGS: u32 = 0u;

// r[i, c], with c clamped to the last class: a tile's classes past k compute sums that are never stored, and no
// branch is taken per element.
fn res(i: u32, c: u32) -> f32 {
    return r[i * step.k + min(c, step.k - 1u)];
}

// Stores the sums of one class for the invocation's features (or the bias): into G and g_b, or segment s's partial.
fn put(j0: u32, c: u32, acc: vec4<f32>, add: bool, s: u32) {
    if (c >= step.k) {
        return;
    }
    if (SEGS > 0u) {
        let base = (s * step.k + c) * (step.d + 1u);
        if (j0 >= step.d) {
            g[base + step.d] = acc[0];
            return;
        }
        for (var q = 0u; q < 4u; q = q + 1u) {
            if (j0 + q < step.d) {
                g[base + j0 + q] = acc[q];
            }
        }
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
    let tiles = (step.k + 15u) / 16u;
    var c0 = gid.y * 16u;
    var s = 0u;
    var first = 0u;
    var end = step.rows;
    if (SEGS > 0u) {
        c0 = (gid.y % tiles) * 16u;
        s = gid.y / tiles;
        let per = segments(step.rows, UNIT, SEGS).x;
        first = s * per * UNIT;
        end = min(first + per * UNIT, step.rows);
        if (first >= step.rows) {
            return;
        }
    }
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
    for (var i = first; i < end; i = i + 1u) {
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
    put(j0, c0 + 0u, a0, add, s);
    put(j0, c0 + 1u, a1, add, s);
    put(j0, c0 + 2u, a2, add, s);
    put(j0, c0 + 3u, a3, add, s);
    put(j0, c0 + 4u, a4, add, s);
    put(j0, c0 + 5u, a5, add, s);
    put(j0, c0 + 6u, a6, add, s);
    put(j0, c0 + 7u, a7, add, s);
    put(j0, c0 + 8u, a8, add, s);
    put(j0, c0 + 9u, a9, add, s);
    put(j0, c0 + 10u, a10, add, s);
    put(j0, c0 + 11u, a11, add, s);
    put(j0, c0 + 12u, a12, add, s);
    put(j0, c0 + 13u, a13, add, s);
    put(j0, c0 + 14u, a14, add, s);
    put(j0, c0 + 15u, a15, add, s);
}
