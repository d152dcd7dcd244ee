// The body of the fused forward kernels forward.wgsl and forward_held.wgsl, appended to each when it is compiled
// (src/gpu/kernels.rs): the register tile over 4·TQ rows × all K ≤ 16 classes, then each row's softmax, loss, hit and
// residual, written once. Each kernel file declares `WG`, `KT`, the buffers `w`, `b`, `r`, `stats`, `cw`, `sw`, and
// where its rows come from: `struct Rows`, `fn rows_at(i0)` (the invocation's 4 rows from i0), `fn x4(rows, j)`
// (feature j of those rows) and `fn label(i)` (the label of the batch's row i).

fn row_weight(i: u32) -> f32 {
    return select(1.0, sw[step.sw_offset + i], (step.flags & 8u) != 0u);
}

// w[j, c] with c clamped to the last class (classes past k are computed and never used): on CPU adapters where the
// whole of W fits one window (WIN = 1; window_uniform.wgsl), through the window, else from storage.
override WIN: u32 = 0u;

fn wt(j: u32, c: u32) -> f32 {
    if (WIN != 0u) {
        return window_at(j * step.k + min(c, step.k - 1u));
    }
    return w[j * step.k + min(c, step.k - 1u)];
}

fn bias(c: u32) -> f32 {
    return b[min(c, step.k - 1u)];
}

// Quads of rows one invocation owns: 1 or 2 (the host's choice per adapter, kernels::tile_quads). A second quad
// shares each weight loaded for the first: per feature 4·TQ + KT loads feed 4·TQ·KT FMAs. Every row's sums still run
// over the features in index order, so the result is the same bitwise for either (tested).
override TQ: u32 = 1u;

// The softmax, loss, hit and residual of the 4 rows from i0 (those in the batch), from their logits without the
// bias: a<c>[q] for class c of row i0 + q.
fn finish(
    i0: u32,
    a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>, a4: vec4<f32>, a5: vec4<f32>, a6: vec4<f32>,
    a7: vec4<f32>, a8: vec4<f32>, a9: vec4<f32>, a10: vec4<f32>, a11: vec4<f32>, a12: vec4<f32>, a13: vec4<f32>,
    a14: vec4<f32>, a15: vec4<f32>,
) {
    let k = step.k;
    var z: array<f32, 16>;
    for (var q = 0u; q < 4u; q = q + 1u) {
        let i = i0 + q;
        if (i >= step.rows) {
            break;
        }
        z[0] = a0[q] + bias(0u);
        z[1] = a1[q] + bias(1u);
        z[2] = a2[q] + bias(2u);
        z[3] = a3[q] + bias(3u);
        z[4] = a4[q] + bias(4u);
        z[5] = a5[q] + bias(5u);
        z[6] = a6[q] + bias(6u);
        z[7] = a7[q] + bias(7u);
        z[8] = a8[q] + bias(8u);
        z[9] = a9[q] + bias(9u);
        z[10] = a10[q] + bias(10u);
        z[11] = a11[q] + bias(11u);
        z[12] = a12[q] + bias(12u);
        z[13] = a13[q] + bias(13u);
        z[14] = a14[q] + bias(14u);
        z[15] = a15[q] + bias(15u);
        // softmax.wgsl's order: the first maximum, exp(z − m) summed in class order, one division, then scaling.
        var m = z[0];
        var arg = 0u;
        for (var c = 1u; c < k; c = c + 1u) {
            if (z[c] > m) {
                m = z[c];
                arg = c;
            }
        }
        var e: array<f32, 16>;
        var sum = 0.0;
        for (var c = 0u; c < k; c = c + 1u) {
            e[c] = exp(z[c] - m);
            sum = sum + e[c];
        }
        let inv = 1.0 / sum;
        let label = label(i);
        let wy = cw[label] * row_weight(i);
        for (var c = 0u; c < k; c = c + 1u) {
            r[i * k + c] = (e[c] * inv - select(0.0, 1.0, label == c)) * wy;
        }
        stats[2u * i] = ((m + log(sum)) - z[label]) * wy;
        stats[2u * i + 1u] = select(0.0, 1.0, arg == label);
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.x * 4u * TQ;
    if (i0 >= step.rows) {
        return;
    }
    let rows = rows_at(i0);
    // The second quad (compiled out with TQ = 1); past the batch its rows repeat the last (computed, never stored).
    let i1 = i0 + 4u;
    var rows1 = rows;
    if (TQ > 1u) {
        rows1 = rows_at(min(i1, step.rows - 1u));
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
    for (var j = 0u; j < step.d; j = j + 1u) {
        let xa = x4(rows, j);
        var xb = vec4<f32>(0.0);
        if (TQ > 1u) {
            xb = x4(rows1, j);
        }
        let w0 = vec4<f32>(wt(j, 0u));
        a0 = fma(xa, w0, a0);
        if (TQ > 1u) { b0 = fma(xb, w0, b0); }
        if (KT > 1u) {
            let w1 = vec4<f32>(wt(j, 1u));
            a1 = fma(xa, w1, a1);
            if (TQ > 1u) { b1 = fma(xb, w1, b1); }
        }
        if (KT > 2u) {
            let w2 = vec4<f32>(wt(j, 2u));
            a2 = fma(xa, w2, a2);
            if (TQ > 1u) { b2 = fma(xb, w2, b2); }
        }
        if (KT > 3u) {
            let w3 = vec4<f32>(wt(j, 3u));
            a3 = fma(xa, w3, a3);
            if (TQ > 1u) { b3 = fma(xb, w3, b3); }
        }
        if (KT > 4u) {
            let w4 = vec4<f32>(wt(j, 4u));
            a4 = fma(xa, w4, a4);
            if (TQ > 1u) { b4 = fma(xb, w4, b4); }
        }
        if (KT > 5u) {
            let w5 = vec4<f32>(wt(j, 5u));
            a5 = fma(xa, w5, a5);
            if (TQ > 1u) { b5 = fma(xb, w5, b5); }
        }
        if (KT > 6u) {
            let w6 = vec4<f32>(wt(j, 6u));
            a6 = fma(xa, w6, a6);
            if (TQ > 1u) { b6 = fma(xb, w6, b6); }
        }
        if (KT > 7u) {
            let w7 = vec4<f32>(wt(j, 7u));
            a7 = fma(xa, w7, a7);
            if (TQ > 1u) { b7 = fma(xb, w7, b7); }
        }
        if (KT > 8u) {
            let w8 = vec4<f32>(wt(j, 8u));
            a8 = fma(xa, w8, a8);
            if (TQ > 1u) { b8 = fma(xb, w8, b8); }
        }
        if (KT > 9u) {
            let w9 = vec4<f32>(wt(j, 9u));
            a9 = fma(xa, w9, a9);
            if (TQ > 1u) { b9 = fma(xb, w9, b9); }
        }
        if (KT > 10u) {
            let w10 = vec4<f32>(wt(j, 10u));
            a10 = fma(xa, w10, a10);
            if (TQ > 1u) { b10 = fma(xb, w10, b10); }
        }
        if (KT > 11u) {
            let w11 = vec4<f32>(wt(j, 11u));
            a11 = fma(xa, w11, a11);
            if (TQ > 1u) { b11 = fma(xb, w11, b11); }
        }
        if (KT > 12u) {
            let w12 = vec4<f32>(wt(j, 12u));
            a12 = fma(xa, w12, a12);
            if (TQ > 1u) { b12 = fma(xb, w12, b12); }
        }
        if (KT > 13u) {
            let w13 = vec4<f32>(wt(j, 13u));
            a13 = fma(xa, w13, a13);
            if (TQ > 1u) { b13 = fma(xb, w13, b13); }
        }
        if (KT > 14u) {
            let w14 = vec4<f32>(wt(j, 14u));
            a14 = fma(xa, w14, a14);
            if (TQ > 1u) { b14 = fma(xb, w14, b14); }
        }
        if (KT > 15u) {
            let w15 = vec4<f32>(wt(j, 15u));
            a15 = fma(xa, w15, a15);
            if (TQ > 1u) { b15 = fma(xb, w15, b15); }
        }
    }
    finish(i0, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15);
    if (TQ > 1u && i1 < step.rows) {
        finish(i1, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15);
    }
}
