// The body of the logits kernels logits.wgsl and logits_held.wgsl, appended to each when it is compiled
// (src/gpu/kernels.rs): the register tile over 4·TQ rows × 16 classes, written once. Each kernel file declares `WG`,
// `KT`, the buffers `w`, `b`, `z` and where its rows come from: `struct Rows`, `fn rows_at(i0)` (the invocation's
// 4 rows from i0), `fn x4(rows, j)` (feature j of those rows) and `fn rows_done(i0, c0)` (run once per invocation),
// and its entry point `main`, which calls `tile`.

// w[j, c], with c clamped to the last class: a tile's classes past k compute values that are never stored, and no
// branch is taken per element.
fn wt(j: u32, c: u32) -> f32 {
    return w[j * step.k + min(c, step.k - 1u)];
}

// Windows over the features (WIN = 1, CPU adapters: window_uniform.wgsl): this dispatch walks features
// window · span .. + span (span: window_span()), reading W through the window; 0: every feature, W from storage.
override WIN: u32 = 0u;

// W[j, c] for the tile's walk: the window's row jj (feature j) where the walk is windowed.
fn wwin(jj: u32, j: u32, c: u32) -> f32 {
    if (WIN != 0u) {
        return window_at(jj * step.k + min(c, step.k - 1u));
    }
    return wt(j, c);
}

// Quads of classes (V4 = 1: CPU adapters where K is a multiple of 4, window_uniform.wgsl says why): the tile's W
// row is read as four vec4; 0: as 16 floats.
override V4: u32 = 0u;

// The tile's W row spread over the subgroup (SB = its size: CPU adapters with subgroups, spread_subgroup.wgsl says
// why; then V4 = 0): each lane reads 16 / SB classes and takes the rest from the others; 0: each lane reads all 16.
override SB: u32 = 0u;

// This lane's classes of W row j for the subgroup (SB > 0): 16 / SB of them from c0 + lane · 16 / SB.
fn wlane(jj: u32, j: u32, c0: u32, lane: u32) -> vec4<f32> {
    let per = 16u / max(SB, 1u);
    let c = c0 + lane * per;
    var v = vec4<f32>(wwin(jj, j, c), 0.0, 0.0, 0.0);
    if (per > 1u) {
        v.y = wwin(jj, j, c + 1u);
    }
    if (per > 2u) {
        v.z = wwin(jj, j, c + 2u);
        v.w = wwin(jj, j, c + 3u);
    }
    return v;
}

// W[j, c0 + l]: spread from the lane that read it (SB > 0, `s` this lane's wlane), else the value v read in a quad
// (V4 = 1), else read alone, where it is used (as without quads).
fn wpick(v: f32, s: vec4<f32>, jj: u32, j: u32, c0: u32, l: u32) -> f32 {
    if (SB != 0u) {
        return spread(s, l);
    }
    if (V4 != 0u) {
        return v;
    }
    return wwin(jj, j, c0 + l);
}

// The sums a previous window stored for the 4 rows from i0 and class c (rows past the batch and classes past k
// clamped: their sums are never stored).
fn resumed(i0: u32, c: u32) -> vec4<f32> {
    let n = step.rows - 1u;
    let cc = min(c, step.k - 1u);
    return vec4<f32>(z[min(i0, n) * step.k + cc], z[min(i0 + 1u, n) * step.k + cc],
        z[min(i0 + 2u, n) * step.k + cc], z[min(i0 + 3u, n) * step.k + cc]);
}

// Stores the 4 rows of one class: z[i0 + q, c] = acc[q] + b[c] (the bias added last, as the CPU mirror does), or
// before the last window the sums alone, for the next window to resume.
fn put(i0: u32, c: u32, acc: vec4<f32>, last: bool) {
    if (c >= step.k) {
        return;
    }
    for (var q = 0u; q < 4u; q = q + 1u) {
        if (i0 + q < step.rows) {
            z[(i0 + q) * step.k + c] = select(acc[q], acc[q] + b[c], last);
        }
    }
}

// Stores a class tile of the 4 rows from i0 (classes c0 .. c0 + 16, a<c> for class c0 + c).
fn put16(i0: u32, c0: u32, last: bool,
    a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>, a4: vec4<f32>, a5: vec4<f32>, a6: vec4<f32>,
    a7: vec4<f32>, a8: vec4<f32>, a9: vec4<f32>, a10: vec4<f32>, a11: vec4<f32>, a12: vec4<f32>, a13: vec4<f32>,
    a14: vec4<f32>, a15: vec4<f32>,
) {
    put(i0, c0 + 0u, a0, last);
    put(i0, c0 + 1u, a1, last);
    put(i0, c0 + 2u, a2, last);
    put(i0, c0 + 3u, a3, last);
    put(i0, c0 + 4u, a4, last);
    put(i0, c0 + 5u, a5, last);
    put(i0, c0 + 6u, a6, last);
    put(i0, c0 + 7u, a7, last);
    put(i0, c0 + 8u, a8, last);
    put(i0, c0 + 9u, a9, last);
    put(i0, c0 + 10u, a10, last);
    put(i0, c0 + 11u, a11, last);
    put(i0, c0 + 12u, a12, last);
    put(i0, c0 + 13u, a13, last);
    put(i0, c0 + 14u, a14, last);
    put(i0, c0 + 15u, a15, last);
}

// Quads of rows one invocation owns: 1 or 2 (the host's choice per adapter, kernels::tile_quads). A second quad
// shares each weight loaded for the first: per feature 4·TQ + 16 loads feed 64·TQ FMAs. Every (row, class) sum still
// runs over the features in index order, so the result is the same bitwise for either (tested).
override TQ: u32 = 1u;

// The register tile of invocation `gid` (each kernel file's `main` calls it).
fn tile(gid: vec3<u32>) {
    let i0 = gid.x * 4u * TQ;
    let c0 = gid.y * 16u;
    // With SB every lane of a subgroup stays to the end (the others take its classes): rows past the batch repeat
    // the last, computed and never stored.
    if ((i0 >= step.rows && SB == 0u) || c0 >= step.k) {
        return;
    }
    // The features this dispatch walks: its window's, or all.
    var j_first = 0u;
    var j_end = step.d;
    if (WIN != 0u) {
        j_first = window_index() * window_span();
        j_end = min(j_first + window_span(), step.d);
    }
    let last = j_end == step.d;
    let rows = rows_at(i0);
    if (j_first == 0u) {
        rows_done(i0, c0);
    }
    // The second quad (compiled out with TQ = 1); past the batch its rows repeat the last (computed, never stored).
    let i1 = i0 + 4u;
    let more = TQ > 1u && i1 < step.rows;
    var rows1 = rows;
    if (TQ > 1u) {
        rows1 = rows_at(min(i1, step.rows - 1u));
    }
    if (more && j_first == 0u) {
        rows_done(i1, c0);
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
    var b0 = vec4<f32>(0.0);
    var b1 = vec4<f32>(0.0);
    var b2 = vec4<f32>(0.0);
    var b3 = vec4<f32>(0.0);
    var b4 = vec4<f32>(0.0);
    var b5 = vec4<f32>(0.0);
    var b6 = vec4<f32>(0.0);
    var b7 = vec4<f32>(0.0);
    var b8 = vec4<f32>(0.0);
    var b9 = vec4<f32>(0.0);
    var b10 = vec4<f32>(0.0);
    var b11 = vec4<f32>(0.0);
    var b12 = vec4<f32>(0.0);
    var b13 = vec4<f32>(0.0);
    var b14 = vec4<f32>(0.0);
    var b15 = vec4<f32>(0.0);
    if (j_first > 0u) {
        a0 = resumed(i0, c0 + 0u);
        a1 = resumed(i0, c0 + 1u);
        a2 = resumed(i0, c0 + 2u);
        a3 = resumed(i0, c0 + 3u);
        a4 = resumed(i0, c0 + 4u);
        a5 = resumed(i0, c0 + 5u);
        a6 = resumed(i0, c0 + 6u);
        a7 = resumed(i0, c0 + 7u);
        a8 = resumed(i0, c0 + 8u);
        a9 = resumed(i0, c0 + 9u);
        a10 = resumed(i0, c0 + 10u);
        a11 = resumed(i0, c0 + 11u);
        a12 = resumed(i0, c0 + 12u);
        a13 = resumed(i0, c0 + 13u);
        a14 = resumed(i0, c0 + 14u);
        a15 = resumed(i0, c0 + 15u);
        if (TQ > 1u) {
            b0 = resumed(min(i1, step.rows - 1u), c0 + 0u);
            b1 = resumed(min(i1, step.rows - 1u), c0 + 1u);
            b2 = resumed(min(i1, step.rows - 1u), c0 + 2u);
            b3 = resumed(min(i1, step.rows - 1u), c0 + 3u);
            b4 = resumed(min(i1, step.rows - 1u), c0 + 4u);
            b5 = resumed(min(i1, step.rows - 1u), c0 + 5u);
            b6 = resumed(min(i1, step.rows - 1u), c0 + 6u);
            b7 = resumed(min(i1, step.rows - 1u), c0 + 7u);
            b8 = resumed(min(i1, step.rows - 1u), c0 + 8u);
            b9 = resumed(min(i1, step.rows - 1u), c0 + 9u);
            b10 = resumed(min(i1, step.rows - 1u), c0 + 10u);
            b11 = resumed(min(i1, step.rows - 1u), c0 + 11u);
            b12 = resumed(min(i1, step.rows - 1u), c0 + 12u);
            b13 = resumed(min(i1, step.rows - 1u), c0 + 13u);
            b14 = resumed(min(i1, step.rows - 1u), c0 + 14u);
            b15 = resumed(min(i1, step.rows - 1u), c0 + 15u);
        }
    }
    for (var j = j_first; j < j_end; j = j + 1u) {
        let jj = j - j_first;
        let xa = x4(rows, j);
        var xb = vec4<f32>(0.0);
        if (TQ > 1u) {
            xb = x4(rows1, j);
        }
        // The tile's 16 classes spread over the subgroup (SB > 0), or in four quads (V4 = 1), else read one by one
        // below.
        var wq0 = vec4<f32>(0.0);
        var wq1 = vec4<f32>(0.0);
        var wq2 = vec4<f32>(0.0);
        var wq3 = vec4<f32>(0.0);
        var sv = vec4<f32>(0.0);
        if (SB != 0u) {
            sv = wlane(jj, j, c0, gid.x % max(SB, 1u));
        }
        if (V4 != 0u) {
            wq0 = operand_quad(jj, j, c0);
            if (KT > 4u) { wq1 = operand_quad(jj, j, c0 + 4u); }
            if (KT > 8u) { wq2 = operand_quad(jj, j, c0 + 8u); }
            if (KT > 12u) { wq3 = operand_quad(jj, j, c0 + 12u); }
        }
        let w0 = vec4<f32>(wpick(wq0.x, sv, jj, j, c0, 0u));
        a0 = fma(xa, w0, a0);
        if (TQ > 1u) { b0 = fma(xb, w0, b0); }
        if (KT > 1u) {
            let w1 = vec4<f32>(wpick(wq0.y, sv, jj, j, c0, 1u));
            a1 = fma(xa, w1, a1);
            if (TQ > 1u) { b1 = fma(xb, w1, b1); }
        }
        if (KT > 2u) {
            let w2 = vec4<f32>(wpick(wq0.z, sv, jj, j, c0, 2u));
            a2 = fma(xa, w2, a2);
            if (TQ > 1u) { b2 = fma(xb, w2, b2); }
        }
        if (KT > 3u) {
            let w3 = vec4<f32>(wpick(wq0.w, sv, jj, j, c0, 3u));
            a3 = fma(xa, w3, a3);
            if (TQ > 1u) { b3 = fma(xb, w3, b3); }
        }
        if (KT > 4u) {
            let w4 = vec4<f32>(wpick(wq1.x, sv, jj, j, c0, 4u));
            a4 = fma(xa, w4, a4);
            if (TQ > 1u) { b4 = fma(xb, w4, b4); }
        }
        if (KT > 5u) {
            let w5 = vec4<f32>(wpick(wq1.y, sv, jj, j, c0, 5u));
            a5 = fma(xa, w5, a5);
            if (TQ > 1u) { b5 = fma(xb, w5, b5); }
        }
        if (KT > 6u) {
            let w6 = vec4<f32>(wpick(wq1.z, sv, jj, j, c0, 6u));
            a6 = fma(xa, w6, a6);
            if (TQ > 1u) { b6 = fma(xb, w6, b6); }
        }
        if (KT > 7u) {
            let w7 = vec4<f32>(wpick(wq1.w, sv, jj, j, c0, 7u));
            a7 = fma(xa, w7, a7);
            if (TQ > 1u) { b7 = fma(xb, w7, b7); }
        }
        if (KT > 8u) {
            let w8 = vec4<f32>(wpick(wq2.x, sv, jj, j, c0, 8u));
            a8 = fma(xa, w8, a8);
            if (TQ > 1u) { b8 = fma(xb, w8, b8); }
        }
        if (KT > 9u) {
            let w9 = vec4<f32>(wpick(wq2.y, sv, jj, j, c0, 9u));
            a9 = fma(xa, w9, a9);
            if (TQ > 1u) { b9 = fma(xb, w9, b9); }
        }
        if (KT > 10u) {
            let w10 = vec4<f32>(wpick(wq2.z, sv, jj, j, c0, 10u));
            a10 = fma(xa, w10, a10);
            if (TQ > 1u) { b10 = fma(xb, w10, b10); }
        }
        if (KT > 11u) {
            let w11 = vec4<f32>(wpick(wq2.w, sv, jj, j, c0, 11u));
            a11 = fma(xa, w11, a11);
            if (TQ > 1u) { b11 = fma(xb, w11, b11); }
        }
        if (KT > 12u) {
            let w12 = vec4<f32>(wpick(wq3.x, sv, jj, j, c0, 12u));
            a12 = fma(xa, w12, a12);
            if (TQ > 1u) { b12 = fma(xb, w12, b12); }
        }
        if (KT > 13u) {
            let w13 = vec4<f32>(wpick(wq3.y, sv, jj, j, c0, 13u));
            a13 = fma(xa, w13, a13);
            if (TQ > 1u) { b13 = fma(xb, w13, b13); }
        }
        if (KT > 14u) {
            let w14 = vec4<f32>(wpick(wq3.z, sv, jj, j, c0, 14u));
            a14 = fma(xa, w14, a14);
            if (TQ > 1u) { b14 = fma(xb, w14, b14); }
        }
        if (KT > 15u) {
            let w15 = vec4<f32>(wpick(wq3.w, sv, jj, j, c0, 15u));
            a15 = fma(xa, w15, a15);
            if (TQ > 1u) { b15 = fma(xb, w15, b15); }
        }
    }
    put16(i0, c0, last, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15);
    if (more) {
        put16(i1, c0, last, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15);
    }
}
