// The fused forward pass of forward.wgsl, reading the batch's rows where they are held instead of from a gathered
// copy: row perm[perm_offset + i] of the held set, in the chunk slot that holds it. Same arithmetic in the same
// order as forward.wgsl over the gathered rows, so its results are bitwise equal (tested); CPU mirror: cpu::forward
// over the rows the permutation names.
//
// Why: on a software adapter the gather copy cost about half of a step (scattered writes of a feature-major copy);
// reading the rows in place costs the forward product nothing measurable there (each invocation's four rows are
// gathered loads either way). The host binds up to four chunks (unused slots repeat chunk 0) and the labels of the
// whole set; data of more chunks takes the gather path.

override WG: u32 = 64u;
// Classes of a tile that are computed (the host sets min(K, 16)); the accumulators past it stay unused and their
// FMAs are compiled out. Only a tile's class count changes, never a sum: results are the same for any KT ≥ K.
override KT: u32 = 16u;
// Chunks of the held set (1 to 4): slots past it are never read, and with one chunk no slot is chosen at all.
override SLOTS: u32 = 4u;

@group(1) @binding(0) var<storage, read> x0: array<f32>;
@group(1) @binding(1) var<storage, read> x1: array<f32>;
@group(1) @binding(2) var<storage, read> x2: array<f32>;
@group(1) @binding(3) var<storage, read> x3: array<f32>;
@group(1) @binding(4) var<storage, read> labels: array<u32>;
@group(1) @binding(5) var<storage, read> perm: array<u32>;
@group(1) @binding(6) var<uniform> held: HeldSet;
@group(1) @binding(7) var<storage, read> w: array<f32>;
@group(1) @binding(8) var<storage, read> b: array<f32>;
@group(1) @binding(9) var<storage, read_write> r: array<f32>;
@group(1) @binding(10) var<storage, read_write> stats: array<f32>;
// Class weights (all 1 without --class-weight): a row's residual and loss are scaled by the weight of its class.
@group(1) @binding(11) var<storage, read> cw: array<f32>;
// Sample weights of the batch's rows from sw_offset (read only with flags bit 3; 1 otherwise).
@group(1) @binding(12) var<storage, read> sw: array<f32>;

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

// Element `at` of the chunk in slot `c`.
fn xs(c: u32, at: u32) -> f32 {
    if (SLOTS == 1u || c == 0u) {
        return x0[at];
    } else if (SLOTS == 2u || c == 1u) {
        return x1[at];
    } else if (SLOTS == 3u || c == 2u) {
        return x2[at];
    }
    return x3[at];
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.x * 4u;
    if (i0 >= step.rows) {
        return;
    }
    // Each row's slot and its first element there; rows past the batch repeat the last row (computed, never stored).
    let n = step.rows;
    let s0 = held_row(perm[step.perm_offset + min(i0, n - 1u)], held.chunk_rows, step.d);
    let s1 = held_row(perm[step.perm_offset + min(i0 + 1u, n - 1u)], held.chunk_rows, step.d);
    let s2 = held_row(perm[step.perm_offset + min(i0 + 2u, n - 1u)], held.chunk_rows, step.d);
    let s3 = held_row(perm[step.perm_offset + min(i0 + 3u, n - 1u)], held.chunk_rows, step.d);
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
        let x4 = vec4<f32>(xs(s0.x, s0.y + j), xs(s1.x, s1.y + j), xs(s2.x, s2.y + j), xs(s3.x, s3.y + j));
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
        let label = labels[perm[step.perm_offset + i]];
        let wy = cw[label] * row_weight(i);
        for (var c = 0u; c < k; c = c + 1u) {
            r[i * k + c] = (e[c] * inv - select(0.0, 1.0, label == c)) * wy;
        }
        stats[2u * i] = ((m + log(sum)) - z[label]) * wy;
        stats[2u * i + 1u] = select(0.0, 1.0, arg == label);
    }
}
