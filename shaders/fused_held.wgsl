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
// - Phase B (gradient): invocation t owns features t, t + 256, … (and the bias, as feature d with x = 1), reads
//   X[row, j] for the tile's rows — adjacent invocations adjacent features, coalesced, from cache: phase A has just
//   read the same 64 rows — and adds Σ_rows x·R[row, 4c..4c+4] to the segment's partial, laid out
//   [segment][class group][feature] as vec4 so that adjacent invocations write adjacent 16-byte words.
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
// Per segment: CG × (d + 1) vec4 of gradient sums (feature-fastest), and (loss, hits).
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

// Adds a tile's sums of class group g for feature j to the segment's partial (the first tile writes it).
fn put(s: u32, g: u32, j: u32, acc: vec4<f32>, first: bool) {
    let at = (s * CG + g) * (step.d + 1u) + j;
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
        // Phase B: this tile's Xᵀ·R for the invocation's features (and the bias, feature d).
        if (TRAIN != 0u) {
            let first = tile == first_tile;
            for (var j = t; j <= d; j = j + 256u) {
                var g0 = vec4<f32>(0.0);
                var g1 = vec4<f32>(0.0);
                var g2 = vec4<f32>(0.0);
                var g3 = vec4<f32>(0.0);
                var g4 = vec4<f32>(0.0);
                var g5 = vec4<f32>(0.0);
                var g6 = vec4<f32>(0.0);
                var g7 = vec4<f32>(0.0);
                for (var rr = 0u; rr < live; rr = rr + 1u) {
                    var xv = 1.0;
                    if (j < d) {
                        let at = where_row(row0 + rr);
                        xv = xs_at(at.x, at.y + j);
                    }
                    let x = vec4<f32>(xv);
                    g0 = fma(x, r4(rr, 0u), g0);
                    if (CG > 1u) { g1 = fma(x, r4(rr, 1u), g1); }
                    if (CG > 2u) { g2 = fma(x, r4(rr, 2u), g2); }
                    if (CG > 3u) { g3 = fma(x, r4(rr, 3u), g3); }
                    if (CG > 4u) { g4 = fma(x, r4(rr, 4u), g4); }
                    if (CG > 5u) { g5 = fma(x, r4(rr, 5u), g5); }
                    if (CG > 6u) { g6 = fma(x, r4(rr, 6u), g6); }
                    if (CG > 7u) { g7 = fma(x, r4(rr, 7u), g7); }
                }
                put(s, 0u, j, g0, first);
                if (CG > 1u) { put(s, 1u, j, g1, first); }
                if (CG > 2u) { put(s, 2u, j, g2, first); }
                if (CG > 3u) { put(s, 3u, j, g3, first); }
                if (CG > 4u) { put(s, 4u, j, g4, first); }
                if (CG > 5u) { put(s, 5u, j, g5, first); }
                if (CG > 6u) { put(s, 6u, j, g6, first); }
                if (CG > 7u) { put(s, 7u, j, g7, first); }
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
