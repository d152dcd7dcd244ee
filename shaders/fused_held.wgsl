// One pass over a batch's rows where they are held, for K ≤ 32: the logits, max-subtracted softmax, loss, hit and
// residual of each row and the row's share of the gradient Xᵀ·R, written as per-segment partial sums that
// reduce.wgsl adds in a fixed order. CPU mirror: cpu::fused (same tiles, segments and orders of addition).
//
// Shape of the work (what a real GPU needs, see shared notes): the batch is cut into tiles of RT = 64 rows and the
// tiles into at most SEGS segments of consecutive tiles, one workgroup of 256 invocations per segment, so the
// invocations grow with the batch (256 per 64-row tile up to SEGS workgroups) and no invocation walks more than
// `per` tiles (a few) in sequence. Within a tile:
// - Phase A (logits): the tile's rows are staged DC = 32 features at a time into workgroup memory, invocation t
//   reading element t, t + 256, … of the 64 × 32 block in row-major order: adjacent invocations read adjacent words
//   of one row of X (coalesced, 128 bytes per 32 lanes). Invocation (r = t % 64, q = t / 64) then accumulates row
//   r's logits for class groups q and q + 4 (four classes each, vec4) over the staged features, in feature order:
//   the same fma sequence per logit as forward.wgsl, so the logits are bitwise forward's.
// - Softmax: one invocation per row (q = 0) turns its logits into the weighted residual S − Y in workgroup memory
//   and adds its loss and hit to its running sums (softmax.wgsl's order of operations).
// - Phase B (gradient): invocation t owns feature quads t, t + 256, … (4 consecutive features of a row as a vec4,
//   and the bias as a last quad), reads them for the tile's rows — adjacent invocations adjacent 16-byte words,
//   coalesced, from cache: phase A has just read the same 64 rows — and, 16 classes at a time in registers, adds
//   Σ_rows x·R[row, c] (R a broadcast scalar) to the segment's partial, laid out [segment][class][quad] as vec4 so
//   that adjacent invocations write adjacent 16-byte words.
// X is read from device memory once per step; the partials are the segment's own (no atomics), so results are
// bitwise reproducible on an adapter.

// Chunks of the held set (1 to 4), as forward_held.wgsl.
override SLOTS: u32 = 4u;
// Class groups of four: ceil(K / 4), 1 to 8. Groups past it are compiled out.
override CG: u32 = 3u;
// Most segments (workgroups) a batch is cut into; the host derives it from the partials' memory.
override SEGS: u32 = 512u;
// 0 for the forward pass only (evaluation): no residual, no gradient partials.
override TRAIN: u32 = 1u;

const RT: u32 = 64u;
const DC: u32 = 32u;

@group(1) @binding(0) var<storage, read> x0: array<f32>;
@group(1) @binding(1) var<storage, read> x1: array<f32>;
@group(1) @binding(2) var<storage, read> x2: array<f32>;
@group(1) @binding(3) var<storage, read> x3: array<f32>;
@group(1) @binding(4) var<storage, read> labels: array<u32>;
@group(1) @binding(5) var<storage, read> perm: array<u32>;
@group(1) @binding(6) var<uniform> held: HeldSet;
@group(1) @binding(7) var<storage, read> w: array<f32>;
@group(1) @binding(8) var<storage, read> b: array<f32>;
@group(1) @binding(9) var<storage, read> cw: array<f32>;
@group(1) @binding(10) var<storage, read> sw: array<f32>;
// Per segment: K × (⌈d / 4⌉ + 1) vec4 of gradient sums (feature-fastest), and (loss, hits).
@group(1) @binding(11) var<storage, read_write> gp: array<vec4<f32>>;
@group(1) @binding(12) var<storage, read_write> mp: array<f32>;

// The staged 64 × 32 block of X, row-major; then the tile's logits / residuals, 32 per row.
var<workgroup> xs: array<f32, 2048>;
var<workgroup> zr: array<f32, 2048>;

fn xs_at(c: u32, at: u32) -> f32 {
    if (SLOTS == 1u || c == 0u) {
        return x0[at];
    } else if (SLOTS == 2u || c == 1u) {
        return x1[at];
    } else if (SLOTS == 3u || c == 2u) {
        return x2[at];
    }
    return x3[at];
}

// Where row i of the batch is held: its chunk slot and first element.
fn where_row(i: u32) -> vec2<u32> {
    return held_row(perm[step.perm_offset + i], held.chunk_rows, step.d);
}

fn wt(j: u32, c: u32) -> f32 {
    return w[j * step.k + min(c, step.k - 1u)];
}

fn w4(j: u32, g: u32) -> vec4<f32> {
    let c = 4u * g;
    return vec4<f32>(wt(j, c), wt(j, c + 1u), wt(j, c + 2u), wt(j, c + 3u));
}

fn b4(g: u32) -> vec4<f32> {
    let k = step.k - 1u;
    let c = 4u * g;
    return vec4<f32>(b[min(c, k)], b[min(c + 1u, k)], b[min(c + 2u, k)], b[min(c + 3u, k)]);
}

fn row_weight(i: u32) -> f32 {
    return select(1.0, sw[step.sw_offset + i], (step.flags & 8u) != 0u);
}

fn r4(row: u32, g: u32) -> vec4<f32> {
    let at = row * 32u + 4u * g;
    return vec4<f32>(zr[at], zr[at + 1u], zr[at + 2u], zr[at + 3u]);
}

// Adds a tile's sums of class c for feature quad jq to the segment's partial (the first tile writes it). Layout:
// [segment][class][quad] of vec4 over the quad's 4 features, the quad past the last holding the bias in .x.
fn put(s: u32, c: u32, jq: u32, acc: vec4<f32>, first: bool) {
    let at = (s * step.k + c) * ((step.d + 3u) / 4u + 1u) + jq;
    gp[at] = select(gp[at] + acc, acc, first);
}

@compute @workgroup_size(256)
fn main(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let s = wid.x + wid.y * nwg.x;
    let n = step.rows;
    let d = step.d;
    let k = step.k;
    let tiles = (n + RT - 1u) / RT;
    let per = (tiles + SEGS - 1u) / SEGS;
    let segs = (tiles + per - 1u) / per;
    if (s >= segs) {
        return;
    }
    let r = t % RT;
    let q = t / RT;
    var loss = 0.0;
    var hits = 0.0;
    let first_tile = s * per;
    let end_tile = min(first_tile + per, tiles);
    for (var tile = first_tile; tile < end_tile; tile = tile + 1u) {
        let row0 = tile * RT;
        let live = min(RT, n - row0);
        // Phase A: logits of the tile's rows.
        var z0 = vec4<f32>(0.0);
        var z1 = vec4<f32>(0.0);
        for (var j0 = 0u; j0 < d; j0 = j0 + DC) {
            for (var e = t; e < RT * DC; e = e + 256u) {
                let rr = e / DC;
                let j = j0 + e % DC;
                var v = 0.0;
                if (j < d) {
                    let at = where_row(row0 + min(rr, live - 1u));
                    v = xs_at(at.x, at.y + j);
                }
                xs[e] = v;
            }
            workgroupBarrier();
            let m = min(DC, d - j0);
            for (var jj = 0u; jj < m; jj = jj + 1u) {
                let x = vec4<f32>(xs[r * DC + jj]);
                let j = j0 + jj;
                if (q < CG) {
                    z0 = fma(x, w4(j, q), z0);
                }
                if (q + 4u < CG) {
                    z1 = fma(x, w4(j, q + 4u), z1);
                }
            }
            workgroupBarrier();
        }
        if (q < CG) {
            let z = z0 + b4(q);
            let at = r * 32u + 4u * q;
            zr[at] = z.x;
            zr[at + 1u] = z.y;
            zr[at + 2u] = z.z;
            zr[at + 3u] = z.w;
        }
        if (q + 4u < CG) {
            let z = z1 + b4(q + 4u);
            let at = r * 32u + 4u * (q + 4u);
            zr[at] = z.x;
            zr[at + 1u] = z.y;
            zr[at + 2u] = z.z;
            zr[at + 3u] = z.w;
        }
        workgroupBarrier();
        // Softmax, loss, hit and residual of row r (softmax.wgsl's order: the first maximum, exp(z − m) summed in
        // class order, one division, then scaling). Rows past the batch get zero residuals.
        if (q == 0u) {
            let zb = r * 32u;
            if (r < live) {
                let i = row0 + r;
                var m = zr[zb];
                var arg = 0u;
                for (var c = 1u; c < k; c = c + 1u) {
                    if (zr[zb + c] > m) {
                        m = zr[zb + c];
                        arg = c;
                    }
                }
                let label = labels[perm[step.perm_offset + i]];
                let zl = zr[zb + label];
                var sum = 0.0;
                for (var c = 0u; c < k; c = c + 1u) {
                    let e = exp(zr[zb + c] - m);
                    zr[zb + c] = e;
                    sum = sum + e;
                }
                let inv = 1.0 / sum;
                let wy = cw[label] * row_weight(i);
                for (var c = 0u; c < k; c = c + 1u) {
                    zr[zb + c] = (zr[zb + c] * inv - select(0.0, 1.0, label == c)) * wy;
                }
                loss = loss + ((m + log(sum)) - zl) * wy;
                hits = hits + select(0.0, 1.0, arg == label);
            } else {
                for (var c = 0u; c < k; c = c + 1u) {
                    zr[zb + c] = 0.0;
                }
            }
            for (var c = k; c < 4u * CG; c = c + 1u) {
                zr[zb + c] = 0.0;
            }
        }
        workgroupBarrier();
        // Phase B: this tile's Xᵀ·R, register-tiled as grad_tile.wgsl: invocation t owns feature quads t, t + 256,
        // … (4 consecutive features of a row as a vec4; the quad past the last is the bias, x = (1, 0, 0, 0)) and
        // 16 classes at a time, each row's residual read once per class as a broadcast scalar.
        if (TRAIN != 0u) {
            let first = tile == first_tile;
            let quads = (d + 3u) / 4u;
            for (var jq = t; jq <= quads; jq = jq + 256u) {
                let j = 4u * jq;
                for (var c0 = 0u; c0 < k; c0 = c0 + 16u) {
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
                    let kt = min(16u, k - c0);
                    for (var rr = 0u; rr < live; rr = rr + 1u) {
                        var x = vec4<f32>(1.0, 0.0, 0.0, 0.0);
                        if (jq < quads) {
                            let at = where_row(row0 + rr);
                            let e = at.y + j;
                            let last = at.y + d - 1u;
                            x = vec4<f32>(xs_at(at.x, e), xs_at(at.x, min(e + 1u, last)),
                                xs_at(at.x, min(e + 2u, last)), xs_at(at.x, min(e + 3u, last)));
                            x = select(vec4<f32>(0.0), x, vec4<u32>(j, j + 1u, j + 2u, j + 3u) < vec4<u32>(d));
                        }
                        let rb = rr * 32u + c0;
                        a0 = fma(x, vec4<f32>(zr[rb]), a0);
                        if (kt > 1u) { a1 = fma(x, vec4<f32>(zr[rb + 1u]), a1); }
                        if (kt > 2u) { a2 = fma(x, vec4<f32>(zr[rb + 2u]), a2); }
                        if (kt > 3u) { a3 = fma(x, vec4<f32>(zr[rb + 3u]), a3); }
                        if (kt > 4u) { a4 = fma(x, vec4<f32>(zr[rb + 4u]), a4); }
                        if (kt > 5u) { a5 = fma(x, vec4<f32>(zr[rb + 5u]), a5); }
                        if (kt > 6u) { a6 = fma(x, vec4<f32>(zr[rb + 6u]), a6); }
                        if (kt > 7u) { a7 = fma(x, vec4<f32>(zr[rb + 7u]), a7); }
                        if (kt > 8u) { a8 = fma(x, vec4<f32>(zr[rb + 8u]), a8); }
                        if (kt > 9u) { a9 = fma(x, vec4<f32>(zr[rb + 9u]), a9); }
                        if (kt > 10u) { a10 = fma(x, vec4<f32>(zr[rb + 10u]), a10); }
                        if (kt > 11u) { a11 = fma(x, vec4<f32>(zr[rb + 11u]), a11); }
                        if (kt > 12u) { a12 = fma(x, vec4<f32>(zr[rb + 12u]), a12); }
                        if (kt > 13u) { a13 = fma(x, vec4<f32>(zr[rb + 13u]), a13); }
                        if (kt > 14u) { a14 = fma(x, vec4<f32>(zr[rb + 14u]), a14); }
                        if (kt > 15u) { a15 = fma(x, vec4<f32>(zr[rb + 15u]), a15); }
                    }
                    put(s, c0, jq, a0, first);
                    if (kt > 1u) { put(s, c0 + 1u, jq, a1, first); }
                    if (kt > 2u) { put(s, c0 + 2u, jq, a2, first); }
                    if (kt > 3u) { put(s, c0 + 3u, jq, a3, first); }
                    if (kt > 4u) { put(s, c0 + 4u, jq, a4, first); }
                    if (kt > 5u) { put(s, c0 + 5u, jq, a5, first); }
                    if (kt > 6u) { put(s, c0 + 6u, jq, a6, first); }
                    if (kt > 7u) { put(s, c0 + 7u, jq, a7, first); }
                    if (kt > 8u) { put(s, c0 + 8u, jq, a8, first); }
                    if (kt > 9u) { put(s, c0 + 9u, jq, a9, first); }
                    if (kt > 10u) { put(s, c0 + 10u, jq, a10, first); }
                    if (kt > 11u) { put(s, c0 + 11u, jq, a11, first); }
                    if (kt > 12u) { put(s, c0 + 12u, jq, a12, first); }
                    if (kt > 13u) { put(s, c0 + 13u, jq, a13, first); }
                    if (kt > 14u) { put(s, c0 + 14u, jq, a14, first); }
                    if (kt > 15u) { put(s, c0 + 15u, jq, a15, first); }
                }
            }
        }
        workgroupBarrier();
    }
    // The segment's loss and hits: each row invocation's running sums, added in row order.
    if (q == 0u) {
        zr[r] = loss;
        zr[RT + r] = hits;
    }
    workgroupBarrier();
    if (t == 0u) {
        var l = 0.0;
        var h = 0.0;
        for (var i = 0u; i < RT; i = i + 1u) {
            l = l + zr[i];
            h = h + zr[RT + i];
        }
        mp[2u * s] = l;
        mp[2u * s + 1u] = h;
    }
}
