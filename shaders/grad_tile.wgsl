// The body of the gradient kernels grad.wgsl and grad_held.wgsl, appended to each when it is compiled
// (src/gpu/kernels.rs): the register tile and its row walk, written once. Each kernel file declares `WG`, `KT`, the buffers `r`, `g`, `gb`
// `fn row_at(i)`: where the batch's row i is, and `fn x4(row, j)`: features j..j + 4 of that row (1 for the bias
// invocation), from where it reads X, and its entry point `main`, which calls `tile`.
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

// Windows over the rows (WIN = 1, CPU adapters: window_uniform.wgsl): this dispatch walks rows window · span ..
// + span (span: window_span()), reading R through the window, and carries its sums to the next window through `window_acc`; 0: the
// rows of the batch (or of the segment), R from storage.
override WIN: u32 = 0u;

// R[i, c] for the tile's walk: the window's row ii (batch row i) where the walk is windowed.
fn rwin(ii: u32, i: u32, c: u32) -> f32 {
    if (WIN != 0u) {
        return window_at(ii * step.k + min(c, step.k - 1u));
    }
    return res(i, c);
}

// Quads of classes (V4 = 1: CPU adapters where K is a multiple of 4, window_uniform.wgsl says why): the tile's R
// row is read as four vec4; 0: as 16 floats.
override V4: u32 = 0u;

// The tile's R row spread over the subgroup (SB = its size: CPU adapters with subgroups, spread_subgroup.wgsl says
// why; then V4 = 0): each lane reads 16 / SB classes and takes the rest from the others; 0: each lane reads all 16.
override SB: u32 = 0u;

// This lane's classes of R row i for the subgroup (SB > 0): 16 / SB of them from c0 + lane · 16 / SB.
fn rlane(ii: u32, i: u32, c0: u32, lane: u32) -> vec4<f32> {
    let per = 16u / max(SB, 1u);
    let c = c0 + lane * per;
    var v = vec4<f32>(rwin(ii, i, c), 0.0, 0.0, 0.0);
    if (per > 1u) {
        v.y = rwin(ii, i, c + 1u);
    }
    if (per > 2u) {
        v.z = rwin(ii, i, c + 2u);
        v.w = rwin(ii, i, c + 3u);
    }
    return v;
}

// R[i, c0 + l]: spread from the lane that read it (SB > 0, `s` this lane's rlane), else the value v read in a quad
// (V4 = 1), else read alone, where it is used (as without quads).
fn rpick(v: f32, s: vec4<f32>, ii: u32, i: u32, c0: u32, l: u32) -> f32 {
    if (SB != 0u) {
        return spread(s, l);
    }
    if (V4 != 0u) {
        return v;
    }
    return rwin(ii, i, c0 + l);
}

// Where the sums of feature quad j0 / 4 (the bias's: the quad after the last) and class c wait between windows.
fn acc_at(j0: u32, c: u32) -> u32 {
    return (c * ((step.d + 3u) / 4u + 1u)) * 4u + j0;
}

// The sums a previous window left for the features from j0 and class c (a class past k: never stored, read as 0).
fn resumed(j0: u32, c: u32) -> vec4<f32> {
    if (c >= step.k) {
        return vec4<f32>(0.0);
    }
    let e = acc_at(j0, c);
    return vec4<f32>(window_acc_at(e), window_acc_at(e + 1u), window_acc_at(e + 2u), window_acc_at(e + 3u));
}

// Leaves the sums for the next window.
fn leave(j0: u32, c: u32, acc: vec4<f32>) {
    if (c >= step.k) {
        return;
    }
    let e = acc_at(j0, c);
    for (var q = 0u; q < 4u; q = q + 1u) {
        window_acc_put(e + q, acc[q]);
    }
}

// Leaves a class tile's sums (classes c0 .. c0 + 16) for the next window.
fn leave16(j0: u32, c0: u32,
    a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>, a4: vec4<f32>, a5: vec4<f32>, a6: vec4<f32>,
    a7: vec4<f32>, a8: vec4<f32>, a9: vec4<f32>, a10: vec4<f32>, a11: vec4<f32>, a12: vec4<f32>, a13: vec4<f32>,
    a14: vec4<f32>, a15: vec4<f32>,
) {
    leave(j0, c0 + 0u, a0);
    leave(j0, c0 + 1u, a1);
    leave(j0, c0 + 2u, a2);
    leave(j0, c0 + 3u, a3);
    leave(j0, c0 + 4u, a4);
    leave(j0, c0 + 5u, a5);
    leave(j0, c0 + 6u, a6);
    leave(j0, c0 + 7u, a7);
    leave(j0, c0 + 8u, a8);
    leave(j0, c0 + 9u, a9);
    leave(j0, c0 + 10u, a10);
    leave(j0, c0 + 11u, a11);
    leave(j0, c0 + 12u, a12);
    leave(j0, c0 + 13u, a13);
    leave(j0, c0 + 14u, a14);
    leave(j0, c0 + 15u, a15);
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

// Stores the sums of a class tile (classes c0 .. c0 + 16, a<c> for class c0 + c) for the features from j0.
fn put16(j0: u32, c0: u32, add: bool, s: u32,
    a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>, a4: vec4<f32>, a5: vec4<f32>, a6: vec4<f32>,
    a7: vec4<f32>, a8: vec4<f32>, a9: vec4<f32>, a10: vec4<f32>, a11: vec4<f32>, a12: vec4<f32>, a13: vec4<f32>,
    a14: vec4<f32>, a15: vec4<f32>,
) {
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

// Quads of features one invocation owns: 1 or 2 (the host's choice per adapter, kernels::tile_quads). A second quad
// shares each residual loaded for the first: per row 4·TQ + 16 loads feed 64·TQ FMAs. The quad after the last
// feature quad is the bias's, stored once. Every sum still runs over the rows in order, so the result is the same
// bitwise for either (tested).
override TQ: u32 = 1u;

// The register tile of invocation `gid` and its row walk (each kernel file's `main` calls it).
fn tile(gid: vec3<u32>) {
    let q0 = gid.x * TQ;
    let j0 = q0 * 4u;
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
    // The window's rows (the host dispatches ⌈rows / span⌉ windows).
    var last = true;
    if (WIN != 0u) {
        first = window_index() * window_span();
        end = min(first + window_span(), step.rows);
        last = end == step.rows;
        if (first >= step.rows) {
            return;
        }
    }
    // Feature quads, then the bias's: quad `quads`.
    let quads = (step.d + 3u) / 4u;
    // With SB every lane of a subgroup stays to the end (the others take its classes): a quad past the bias's is
    // computed (its features read as the bias's 1) and never stored.
    let live = q0 <= quads;
    if ((!live && SB == 0u) || c0 >= step.k) {
        return;
    }
    // The second quad (compiled out with TQ = 1), when it is a feature quad or the bias's.
    let j1 = j0 + 4u;
    let more = TQ > 1u && q0 + 1u <= quads;
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
    if (first > 0u && WIN != 0u) {
        a0 = resumed(j0, c0 + 0u);
        a1 = resumed(j0, c0 + 1u);
        a2 = resumed(j0, c0 + 2u);
        a3 = resumed(j0, c0 + 3u);
        a4 = resumed(j0, c0 + 4u);
        a5 = resumed(j0, c0 + 5u);
        a6 = resumed(j0, c0 + 6u);
        a7 = resumed(j0, c0 + 7u);
        a8 = resumed(j0, c0 + 8u);
        a9 = resumed(j0, c0 + 9u);
        a10 = resumed(j0, c0 + 10u);
        a11 = resumed(j0, c0 + 11u);
        a12 = resumed(j0, c0 + 12u);
        a13 = resumed(j0, c0 + 13u);
        a14 = resumed(j0, c0 + 14u);
        a15 = resumed(j0, c0 + 15u);
        if (more) {
            b0 = resumed(j1, c0 + 0u);
            b1 = resumed(j1, c0 + 1u);
            b2 = resumed(j1, c0 + 2u);
            b3 = resumed(j1, c0 + 3u);
            b4 = resumed(j1, c0 + 4u);
            b5 = resumed(j1, c0 + 5u);
            b6 = resumed(j1, c0 + 6u);
            b7 = resumed(j1, c0 + 7u);
            b8 = resumed(j1, c0 + 8u);
            b9 = resumed(j1, c0 + 9u);
            b10 = resumed(j1, c0 + 10u);
            b11 = resumed(j1, c0 + 11u);
            b12 = resumed(j1, c0 + 12u);
            b13 = resumed(j1, c0 + 13u);
            b14 = resumed(j1, c0 + 14u);
            b15 = resumed(j1, c0 + 15u);
        }
    }
    for (var i = first; i < end; i = i + 1u) {
        let ii = i - first;
        let row = row_at(i);
        let xa = x4(row, j0);
        var xb = vec4<f32>(0.0);
        if (TQ > 1u) {
            xb = x4(row, j1);
        }
        // The tile's 16 classes spread over the subgroup (SB > 0), or in four quads (V4 = 1), else read one by one
        // below.
        var rq0 = vec4<f32>(0.0);
        var rq1 = vec4<f32>(0.0);
        var rq2 = vec4<f32>(0.0);
        var rq3 = vec4<f32>(0.0);
        var sv = vec4<f32>(0.0);
        if (SB != 0u) {
            sv = rlane(ii, i, c0, gid.x % max(SB, 1u));
        }
        if (V4 != 0u) {
            rq0 = operand_quad(ii, i, c0);
            if (KT > 4u) { rq1 = operand_quad(ii, i, c0 + 4u); }
            if (KT > 8u) { rq2 = operand_quad(ii, i, c0 + 8u); }
            if (KT > 12u) { rq3 = operand_quad(ii, i, c0 + 12u); }
        }
        let r0 = vec4<f32>(rpick(rq0.x, sv, ii, i, c0, 0u));
        a0 = fma(xa, r0, a0);
        if (TQ > 1u) { b0 = fma(xb, r0, b0); }
        if (KT > 1u) {
            let r1 = vec4<f32>(rpick(rq0.y, sv, ii, i, c0, 1u));
            a1 = fma(xa, r1, a1);
            if (TQ > 1u) { b1 = fma(xb, r1, b1); }
        }
        if (KT > 2u) {
            let r2 = vec4<f32>(rpick(rq0.z, sv, ii, i, c0, 2u));
            a2 = fma(xa, r2, a2);
            if (TQ > 1u) { b2 = fma(xb, r2, b2); }
        }
        if (KT > 3u) {
            let r3 = vec4<f32>(rpick(rq0.w, sv, ii, i, c0, 3u));
            a3 = fma(xa, r3, a3);
            if (TQ > 1u) { b3 = fma(xb, r3, b3); }
        }
        if (KT > 4u) {
            let r4 = vec4<f32>(rpick(rq1.x, sv, ii, i, c0, 4u));
            a4 = fma(xa, r4, a4);
            if (TQ > 1u) { b4 = fma(xb, r4, b4); }
        }
        if (KT > 5u) {
            let r5 = vec4<f32>(rpick(rq1.y, sv, ii, i, c0, 5u));
            a5 = fma(xa, r5, a5);
            if (TQ > 1u) { b5 = fma(xb, r5, b5); }
        }
        if (KT > 6u) {
            let r6 = vec4<f32>(rpick(rq1.z, sv, ii, i, c0, 6u));
            a6 = fma(xa, r6, a6);
            if (TQ > 1u) { b6 = fma(xb, r6, b6); }
        }
        if (KT > 7u) {
            let r7 = vec4<f32>(rpick(rq1.w, sv, ii, i, c0, 7u));
            a7 = fma(xa, r7, a7);
            if (TQ > 1u) { b7 = fma(xb, r7, b7); }
        }
        if (KT > 8u) {
            let r8 = vec4<f32>(rpick(rq2.x, sv, ii, i, c0, 8u));
            a8 = fma(xa, r8, a8);
            if (TQ > 1u) { b8 = fma(xb, r8, b8); }
        }
        if (KT > 9u) {
            let r9 = vec4<f32>(rpick(rq2.y, sv, ii, i, c0, 9u));
            a9 = fma(xa, r9, a9);
            if (TQ > 1u) { b9 = fma(xb, r9, b9); }
        }
        if (KT > 10u) {
            let r10 = vec4<f32>(rpick(rq2.z, sv, ii, i, c0, 10u));
            a10 = fma(xa, r10, a10);
            if (TQ > 1u) { b10 = fma(xb, r10, b10); }
        }
        if (KT > 11u) {
            let r11 = vec4<f32>(rpick(rq2.w, sv, ii, i, c0, 11u));
            a11 = fma(xa, r11, a11);
            if (TQ > 1u) { b11 = fma(xb, r11, b11); }
        }
        if (KT > 12u) {
            let r12 = vec4<f32>(rpick(rq3.x, sv, ii, i, c0, 12u));
            a12 = fma(xa, r12, a12);
            if (TQ > 1u) { b12 = fma(xb, r12, b12); }
        }
        if (KT > 13u) {
            let r13 = vec4<f32>(rpick(rq3.y, sv, ii, i, c0, 13u));
            a13 = fma(xa, r13, a13);
            if (TQ > 1u) { b13 = fma(xb, r13, b13); }
        }
        if (KT > 14u) {
            let r14 = vec4<f32>(rpick(rq3.z, sv, ii, i, c0, 14u));
            a14 = fma(xa, r14, a14);
            if (TQ > 1u) { b14 = fma(xb, r14, b14); }
        }
        if (KT > 15u) {
            let r15 = vec4<f32>(rpick(rq3.w, sv, ii, i, c0, 15u));
            a15 = fma(xa, r15, a15);
            if (TQ > 1u) { b15 = fma(xb, r15, b15); }
        }
    }
    if (!live) {
        return;
    }
    if (!last) {
        leave16(j0, c0, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15);
        if (more) {
            leave16(j1, c0, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15);
        }
        return;
    }
    let add = (step.flags & 1u) != 0u;
    put16(j0, c0, add, s, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15);
    if (more) {
        put16(j1, c0, add, s, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15);
    }
}
