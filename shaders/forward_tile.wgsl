// The body of the fused forward kernels forward.wgsl and forward_held.wgsl, appended to each when it is compiled
// (src/gpu/kernels.rs): the register tile over 4 rows × all K ≤ 16 classes, then each row's softmax, loss, hit and
// residual, written once. Each kernel file declares `WG`, `KT`, the buffers `w`, `b`, `r`, `stats`, `cw`, `sw`, and
// where its rows come from: `struct Rows`, `fn rows_at(i0)` (the invocation's 4 rows from i0), `fn x4(rows, j)`
// (feature j of those rows) and `fn label(i)` (the label of the batch's row i).

fn row_weight(i: u32) -> f32 {
    return select(1.0, sw[step.sw_offset + i], (step.flags & 8u) != 0u);
}

// w[j, c] with c clamped to the last class (classes past k are computed and never used).
fn wt(j: u32, c: u32) -> f32 {
    return w[j * step.k + min(c, step.k - 1u)];
}

fn bias(c: u32) -> f32 {
    return b[min(c, step.k - 1u)];
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.x * 4u;
    if (i0 >= step.rows) {
        return;
    }
    let rows = rows_at(i0);
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
        a0 = fma(x4, vec4<f32>(wt(j, 0u)), a0);
        if (KT > 1u) { a1 = fma(x4, vec4<f32>(wt(j, 1u)), a1); }
        if (KT > 2u) { a2 = fma(x4, vec4<f32>(wt(j, 2u)), a2); }
        if (KT > 3u) { a3 = fma(x4, vec4<f32>(wt(j, 3u)), a3); }
        if (KT > 4u) { a4 = fma(x4, vec4<f32>(wt(j, 4u)), a4); }
        if (KT > 5u) { a5 = fma(x4, vec4<f32>(wt(j, 5u)), a5); }
        if (KT > 6u) { a6 = fma(x4, vec4<f32>(wt(j, 6u)), a6); }
        if (KT > 7u) { a7 = fma(x4, vec4<f32>(wt(j, 7u)), a7); }
        if (KT > 8u) { a8 = fma(x4, vec4<f32>(wt(j, 8u)), a8); }
        if (KT > 9u) { a9 = fma(x4, vec4<f32>(wt(j, 9u)), a9); }
        if (KT > 10u) { a10 = fma(x4, vec4<f32>(wt(j, 10u)), a10); }
        if (KT > 11u) { a11 = fma(x4, vec4<f32>(wt(j, 11u)), a11); }
        if (KT > 12u) { a12 = fma(x4, vec4<f32>(wt(j, 12u)), a12); }
        if (KT > 13u) { a13 = fma(x4, vec4<f32>(wt(j, 13u)), a13); }
        if (KT > 14u) { a14 = fma(x4, vec4<f32>(wt(j, 14u)), a14); }
        if (KT > 15u) { a15 = fma(x4, vec4<f32>(wt(j, 15u)), a15); }
    }
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
