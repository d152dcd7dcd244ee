// One pass over a batch's rows where they are held, for K ≤ 32: the logits, max-subtracted softmax, loss, hit and
// residual of each row and the row's share of the gradient Xᵀ·R, written as per-segment partial sums that
// reduce.wgsl adds in a fixed order. CPU mirror: cpu::fused (same sums; numerics::tolerance::fused bounds the GPU's
// order of addition).
//
// Shape of the work (what a real GPU needs, see shared notes): the batch is cut into tiles of RT = 64 rows and the
// tiles into at most SEGS segments of consecutive tiles, one workgroup of WG = 64 · SPLIT invocations per segment,
// so the invocations grow with the batch and no invocation walks more than `per` tiles (a few) in sequence. Within
// a tile:
// - Phase A (logits): invocation t owns row r = t % 64 of the tile and class groups part, part + SPLIT, … (part =
//   t / 64), in vec4 accumulators, and walks the row's features in order with the same fma sequence per logit as
//   forward.wgsl (bitwise its logits). W is staged in workgroup memory, a block of features at a time, read by
//   every invocation at the same address (a broadcast). X comes from:
//   - STAGE = 1 (GPUs): DC = 32 features of the tile's 64 rows staged into workgroup memory, invocation t reading
//     elements t, t + WG, … of the 64 × 32 block in row-major order: adjacent invocations read adjacent words of
//     one row of X (coalesced: 128 bytes per 32 lanes); stored by feature quads with a padded row stride (RTP = 65).
//   - STAGE = 0 (CPU adapters): each row's invocation reads its row in place (cached there), and W is staged in
//     blocks as large as fit, for fewer barriers.
// - Softmax: with SPLIT = 2 the row's two invocations exchange their class groups through workgroup memory; the
//   row's first invocation then computes the max-subtracted softmax, loss, hit and the weighted residual S − Y in
//   registers (softmax.wgsl's arithmetic) and writes the residuals to workgroup memory.
// - Phase B (gradient): invocation t owns features t, t + WG, … and every class group in registers; for the tile's
//   rows in order it reads x[row, j] — adjacent invocations adjacent words of one row (coalesced; from cache, phase
//   A has just read the same rows) — times the row's residuals (a broadcast from workgroup memory), into the
//   segment's partial, laid out [segment][class][feature] so that adjacent invocations write adjacent words. The
//   bias (feature d) is summed by invocations t < CG.
// X is read from device memory once per step; the partials are the segment's own (no atomics), so results are
// bitwise reproducible on an adapter, and the two shapes add the same products in the same order.

// Chunks of the held set (1 to 4), as forward_held.wgsl.
override SLOTS: u32 = 4u;
// Class groups of four: ceil(K / 4), 1 to 8. Groups past it are compiled out.
override CG: u32 = 3u;
// Most segments (workgroups) a batch is cut into; the host derives it from the partials' memory.
override SEGS: u32 = 1024u;
// 0 for the forward pass only (evaluation): no residual, no gradient partials.
override TRAIN: u32 = 1u;
// 1: phase A stages X through workgroup memory (GPUs); 0: each row's invocation reads it in place (CPU adapters).
override STAGE: u32 = 1u;
// Invocations per row of a tile in phase A (1 or 2), each taking every SPLIT-th class group: 2 on GPUs (twice the
// invocations in flight, the logits exchanged through workgroup memory for the softmax), 1 on CPU adapters (the
// whole row in one invocation's registers, no exchange).
override SPLIT: u32 = 2u;

const RT: u32 = 64u;
override WG: u32 = RT * SPLIT;
const DC: u32 = 32u;
const RTP: u32 = 65u;
// vec4 of workgroup memory, and those the staged block of X takes (DC / 4 feature quads × RTP rows).
const SM: u32 = 992u;
const XB: u32 = DC / 4u * RTP;

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
// Per segment: K × (d + 1) gradient sums (feature-fastest, the bias last), and (loss, hits).
@group(1) @binding(11) var<storage, read_write> gp: array<f32>;
@group(1) @binding(12) var<storage, read_write> mp: array<f32>;

// The workgroup's memory, in vec4 (every element read is written first in the same tile, so the pipeline skips
// zeroing it):
// - the tile's residuals R, row r's class group g at r · CG + g, from 0;
// - with STAGE = 1, phase A's staged block of X at 0 (DC / 4 feature quads × RTP rows: the residuals take its place
//   once the logits are done), and the staged W rows after it, at XB (DC features × CG groups);
// - with STAGE = 0, the staged W rows after the residuals, as many features as fit at once (fewer barriers);
// - at the end, the rows' (loss, hits) sums.
var<workgroup> sm: array<vec4<f32>, SM>;
// Where each row of the tile is held (its chunk slot << 30 | its first element), for even and odd tiles: the next
// tile's may be written while the last tile's gradient still reads them.
var<workgroup> rows: array<u32, 128>;

fn wt(j: u32, c: u32) -> f32 {
    return w[j * step.k + min(c, step.k - 1u)];
}

// W[j, 4g .. 4g + 4], classes past k repeating the last (their logits are never used).
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

// Which of classes 4g .. 4g + 4 exist.
fn live4(g: u32) -> vec4<bool> {
    return vec4<u32>(4u * g) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(step.k);
}

// The classes of group g as numbers, to compare with a label or an index.
fn class4(g: u32) -> vec4<u32> {
    return vec4<u32>(4u * g) + vec4<u32>(0u, 1u, 2u, 3u);
}

fn max4(v: vec4<f32>) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}

// exp(z − m) of the live classes of a group, 0 for the others.
fn exp4(z: vec4<f32>, m: f32, g: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), exp(z - vec4<f32>(m)), live4(g));
}

// The lowest class of a group whose logit equals the maximum m (k if none).
fn first4(z: vec4<f32>, m: f32, g: u32) -> u32 {
    let c = select(vec4<u32>(step.k), class4(g), live4(g) & (z == vec4<f32>(m)));
    return min(min(c.x, c.y), min(c.z, c.w));
}

// The residual of a group: (e · inv − [c = label]) · wy, 0 for classes past k.
fn res4(e: vec4<f32>, inv: f32, label: u32, wy: f32, g: u32) -> vec4<f32> {
    let y = select(vec4<f32>(0.0), vec4<f32>(1.0), class4(g) == vec4<u32>(label));
    return select(vec4<f32>(0.0), (e * inv - y) * wy, live4(g));
}

// Adds a tile's sums of classes 4g .. 4g + 4 for feature j (d: the bias) to the segment's partial (the first tile
// writes it).
fn put(s: u32, g: u32, j: u32, acc: vec4<f32>, first: bool) {
    let k = step.k;
    let stride = step.d + 1u;
    for (var l = 0u; l < 4u; l = l + 1u) {
        let c = 4u * g + l;
        if (c < k) {
            let at = (s * k + c) * stride + j;
            gp[at] = select(gp[at] + acc[l], acc[l], first);
        }
    }
}

// Element e of the 64 × DC block of X staged from feature j0 (row-major: adjacent e, adjacent words of a row), 0
// past the last feature; the tile's rows are held where rows[rp ..] says.
fn staged_x(rp: u32, e: u32, j0: u32) -> f32 {
    let j = j0 + e % DC;
    var v = 0.0;
    if (j < step.d) {
        v = x_at(rows[rp + e / DC], j);
    }
    return v;
}

// Stores element e of the staged block by feature quads, rows RTP apart.
fn stage_x(e: u32, v: f32) {
    let jj = e % DC;
    sm[(jj / 4u) * RTP + e / DC][jj % 4u] = v;
}

// Phase B's sums of one feature over a tile's rows, class groups 0 .. CG.
struct Acc {
    a0: vec4<f32>,
    a1: vec4<f32>,
    a2: vec4<f32>,
    a3: vec4<f32>,
    a4: vec4<f32>,
    a5: vec4<f32>,
    a6: vec4<f32>,
    a7: vec4<f32>,
}

// Adds one row's feature xv times the row's residuals (at rb in workgroup memory) to the sums.
fn acc_row(a: Acc, xv: f32, rb: u32) -> Acc {
    let x = vec4<f32>(xv);
    var o = a;
    o.a0 = fma(x, sm[rb], o.a0);
    if (CG > 1u) { o.a1 = fma(x, sm[rb + 1u], o.a1); }
    if (CG > 2u) { o.a2 = fma(x, sm[rb + 2u], o.a2); }
    if (CG > 3u) { o.a3 = fma(x, sm[rb + 3u], o.a3); }
    if (CG > 4u) { o.a4 = fma(x, sm[rb + 4u], o.a4); }
    if (CG > 5u) { o.a5 = fma(x, sm[rb + 5u], o.a5); }
    if (CG > 6u) { o.a6 = fma(x, sm[rb + 6u], o.a6); }
    if (CG > 7u) { o.a7 = fma(x, sm[rb + 7u], o.a7); }
    return o;
}

@compute @workgroup_size(WG)
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
    let cut = segments(n, RT, SEGS);
    let per = cut.x;
    if (s >= cut.y) {
        return;
    }
    // Where the staged W rows start and how many features are staged at once (see sm).
    var wbase = RT * CG;
    var dw = (SM - RT * CG) / CG;
    if (STAGE != 0u) {
        wbase = XB;
        dw = DC;
    }
    // This invocation's row of a tile, and which of the class groups it takes in phase A: part, part + SPLIT, ….
    let r = t % RT;
    let part = select(0u, t / RT, SPLIT > 1u);
    var loss = 0.0;
    var hits = 0.0;
    let first_tile = s * per;
    let end_tile = min(first_tile + per, tiles);
    for (var tile = first_tile; tile < end_tile; tile = tile + 1u) {
        let row0 = tile * RT;
        let live = min(RT, n - row0);
        // Row r of the tile (rows past the batch repeat its last: computed, never counted) and where it is held.
        let i = row0 + min(r, live - 1u);
        let at = held_at(i);
        let rp = (tile & 1u) * RT;
        if (part == 0u) {
            rows[rp + r] = at;
        }
        if (STAGE != 0u) {
            // The block about to be staged holds the last tile's residuals until its gradient is done.
            workgroupBarrier();
        }
        // Phase A: the logits of row r of the tile, class groups part, part + SPLIT, … (zi holds group
        // part + SPLIT · i), dw features at a time.
        var z0 = vec4<f32>(0.0);
        var z1 = vec4<f32>(0.0);
        var z2 = vec4<f32>(0.0);
        var z3 = vec4<f32>(0.0);
        var z4 = vec4<f32>(0.0);
        var z5 = vec4<f32>(0.0);
        var z6 = vec4<f32>(0.0);
        var z7 = vec4<f32>(0.0);
        for (var j0 = 0u; j0 < d; j0 = j0 + dw) {
            if (STAGE != 0u) {
                // The block's loads all in flight before their stores: 16 an invocation in the GPU shape (WG = 128),
                // one round trip to memory per block. An element past the block (never, when WG divides RT · DC
                // by 16) reads the block's last element again and is not stored.
                for (var e = t; e < RT * DC; e = e + 16u * WG) {
                    let v0 = staged_x(rp, e, j0);
                    let v1 = staged_x(rp, min(e + 1u * WG, RT * DC - 1u), j0);
                    let v2 = staged_x(rp, min(e + 2u * WG, RT * DC - 1u), j0);
                    let v3 = staged_x(rp, min(e + 3u * WG, RT * DC - 1u), j0);
                    let v4 = staged_x(rp, min(e + 4u * WG, RT * DC - 1u), j0);
                    let v5 = staged_x(rp, min(e + 5u * WG, RT * DC - 1u), j0);
                    let v6 = staged_x(rp, min(e + 6u * WG, RT * DC - 1u), j0);
                    let v7 = staged_x(rp, min(e + 7u * WG, RT * DC - 1u), j0);
                    let v8 = staged_x(rp, min(e + 8u * WG, RT * DC - 1u), j0);
                    let v9 = staged_x(rp, min(e + 9u * WG, RT * DC - 1u), j0);
                    let v10 = staged_x(rp, min(e + 10u * WG, RT * DC - 1u), j0);
                    let v11 = staged_x(rp, min(e + 11u * WG, RT * DC - 1u), j0);
                    let v12 = staged_x(rp, min(e + 12u * WG, RT * DC - 1u), j0);
                    let v13 = staged_x(rp, min(e + 13u * WG, RT * DC - 1u), j0);
                    let v14 = staged_x(rp, min(e + 14u * WG, RT * DC - 1u), j0);
                    let v15 = staged_x(rp, min(e + 15u * WG, RT * DC - 1u), j0);
                    stage_x(e, v0);
                    if (e + 1u * WG < RT * DC) { stage_x(e + 1u * WG, v1); }
                    if (e + 2u * WG < RT * DC) { stage_x(e + 2u * WG, v2); }
                    if (e + 3u * WG < RT * DC) { stage_x(e + 3u * WG, v3); }
                    if (e + 4u * WG < RT * DC) { stage_x(e + 4u * WG, v4); }
                    if (e + 5u * WG < RT * DC) { stage_x(e + 5u * WG, v5); }
                    if (e + 6u * WG < RT * DC) { stage_x(e + 6u * WG, v6); }
                    if (e + 7u * WG < RT * DC) { stage_x(e + 7u * WG, v7); }
                    if (e + 8u * WG < RT * DC) { stage_x(e + 8u * WG, v8); }
                    if (e + 9u * WG < RT * DC) { stage_x(e + 9u * WG, v9); }
                    if (e + 10u * WG < RT * DC) { stage_x(e + 10u * WG, v10); }
                    if (e + 11u * WG < RT * DC) { stage_x(e + 11u * WG, v11); }
                    if (e + 12u * WG < RT * DC) { stage_x(e + 12u * WG, v12); }
                    if (e + 13u * WG < RT * DC) { stage_x(e + 13u * WG, v13); }
                    if (e + 14u * WG < RT * DC) { stage_x(e + 14u * WG, v14); }
                    if (e + 15u * WG < RT * DC) { stage_x(e + 15u * WG, v15); }
                }
            }
            let m = min(dw, d - j0);
            for (var e = t; e < m * CG; e = e + WG) {
                sm[wbase + e] = w4(j0 + e / CG, e % CG);
            }
            workgroupBarrier();
            for (var jj = 0u; jj < m; jj = jj + 1u) {
                var xv: f32;
                if (STAGE != 0u) {
                    xv = sm[(jj / 4u) * RTP + r][jj % 4u];
                } else {
                    xv = x_at(at, j0 + jj);
                }
                let x = vec4<f32>(xv);
                let wb = wbase + jj * CG + part;
                if (part < CG) { z0 = fma(x, sm[wb], z0); }
                if (part + SPLIT < CG) { z1 = fma(x, sm[wb + SPLIT], z1); }
                if (part + 2u * SPLIT < CG) { z2 = fma(x, sm[wb + 2u * SPLIT], z2); }
                if (part + 3u * SPLIT < CG) { z3 = fma(x, sm[wb + 3u * SPLIT], z3); }
                if (part + 4u * SPLIT < CG) { z4 = fma(x, sm[wb + 4u * SPLIT], z4); }
                if (part + 5u * SPLIT < CG) { z5 = fma(x, sm[wb + 5u * SPLIT], z5); }
                if (part + 6u * SPLIT < CG) { z6 = fma(x, sm[wb + 6u * SPLIT], z6); }
                if (part + 7u * SPLIT < CG) { z7 = fma(x, sm[wb + 7u * SPLIT], z7); }
            }
            // The next block of W (or X) takes this one's place; the residuals have their own place when X is not
            // staged.
            if (STAGE != 0u || j0 + dw < d || TRAIN == 0u) {
                workgroupBarrier();
            }
        }
        if (SPLIT > 1u) {
            // The row's class groups meet in workgroup memory (where its residuals will be: the staged blocks are
            // done with), and its first invocation takes them all.
            let zb = r * CG;
            if (part < CG) { sm[zb + part] = z0 + b4(part); }
            if (part + SPLIT < CG) { sm[zb + part + SPLIT] = z1 + b4(part + SPLIT); }
            if (part + 2u * SPLIT < CG) { sm[zb + part + 2u * SPLIT] = z2 + b4(part + 2u * SPLIT); }
            if (part + 3u * SPLIT < CG) { sm[zb + part + 3u * SPLIT] = z3 + b4(part + 3u * SPLIT); }
            workgroupBarrier();
            z0 = sm[zb];
            if (CG > 1u) { z1 = sm[zb + 1u]; }
            if (CG > 2u) { z2 = sm[zb + 2u]; }
            if (CG > 3u) { z3 = sm[zb + 3u]; }
            if (CG > 4u) { z4 = sm[zb + 4u]; }
            if (CG > 5u) { z5 = sm[zb + 5u]; }
            if (CG > 6u) { z6 = sm[zb + 6u]; }
            if (CG > 7u) { z7 = sm[zb + 7u]; }
        } else {
            z0 = z0 + b4(0u);
            z1 = z1 + b4(1u);
            z2 = z2 + b4(2u);
            z3 = z3 + b4(3u);
            z4 = z4 + b4(4u);
            z5 = z5 + b4(5u);
            z6 = z6 + b4(6u);
            z7 = z7 + b4(7u);
        }
        // Softmax, loss, hit and residual of row t in registers (softmax.wgsl's arithmetic: the first maximum,
        // exp(z − m) summed in class order, one division, then scaling); classes past k count for nothing.
        var m = z0.x;
        m = max(m, max4(select(vec4<f32>(m), z0, live4(0u))));
        if (CG > 1u) { m = max(m, max4(select(vec4<f32>(m), z1, live4(1u)))); }
        if (CG > 2u) { m = max(m, max4(select(vec4<f32>(m), z2, live4(2u)))); }
        if (CG > 3u) { m = max(m, max4(select(vec4<f32>(m), z3, live4(3u)))); }
        if (CG > 4u) { m = max(m, max4(select(vec4<f32>(m), z4, live4(4u)))); }
        if (CG > 5u) { m = max(m, max4(select(vec4<f32>(m), z5, live4(5u)))); }
        if (CG > 6u) { m = max(m, max4(select(vec4<f32>(m), z6, live4(6u)))); }
        if (CG > 7u) { m = max(m, max4(select(vec4<f32>(m), z7, live4(7u)))); }
        var arg = first4(z0, m, 0u);
        if (CG > 1u) { arg = min(arg, first4(z1, m, 1u)); }
        if (CG > 2u) { arg = min(arg, first4(z2, m, 2u)); }
        if (CG > 3u) { arg = min(arg, first4(z3, m, 3u)); }
        if (CG > 4u) { arg = min(arg, first4(z4, m, 4u)); }
        if (CG > 5u) { arg = min(arg, first4(z5, m, 5u)); }
        if (CG > 6u) { arg = min(arg, first4(z6, m, 6u)); }
        if (CG > 7u) { arg = min(arg, first4(z7, m, 7u)); }
        let label = labels[perm[step.perm_offset + i]];
        let e0 = exp4(z0, m, 0u);
        let e1 = exp4(z1, m, 1u);
        let e2 = exp4(z2, m, 2u);
        let e3 = exp4(z3, m, 3u);
        let e4 = exp4(z4, m, 4u);
        let e5 = exp4(z5, m, 5u);
        let e6 = exp4(z6, m, 6u);
        let e7 = exp4(z7, m, 7u);
        // In class order, one at a time (adding the 0 of a class past k changes nothing).
        var sum = 0.0;
        sum = sum + e0.x; sum = sum + e0.y; sum = sum + e0.z; sum = sum + e0.w;
        if (CG > 1u) { sum = sum + e1.x; sum = sum + e1.y; sum = sum + e1.z; sum = sum + e1.w; }
        if (CG > 2u) { sum = sum + e2.x; sum = sum + e2.y; sum = sum + e2.z; sum = sum + e2.w; }
        if (CG > 3u) { sum = sum + e3.x; sum = sum + e3.y; sum = sum + e3.z; sum = sum + e3.w; }
        if (CG > 4u) { sum = sum + e4.x; sum = sum + e4.y; sum = sum + e4.z; sum = sum + e4.w; }
        if (CG > 5u) { sum = sum + e5.x; sum = sum + e5.y; sum = sum + e5.z; sum = sum + e5.w; }
        if (CG > 6u) { sum = sum + e6.x; sum = sum + e6.y; sum = sum + e6.z; sum = sum + e6.w; }
        if (CG > 7u) { sum = sum + e7.x; sum = sum + e7.y; sum = sum + e7.z; sum = sum + e7.w; }
        // The label's logit: one term, the others 0.
        var zl = dot(select(vec4<f32>(0.0), z0, class4(0u) == vec4<u32>(label)), vec4<f32>(1.0));
        if (CG > 1u) { zl = zl + dot(select(vec4<f32>(0.0), z1, class4(1u) == vec4<u32>(label)), vec4<f32>(1.0)); }
        if (CG > 2u) { zl = zl + dot(select(vec4<f32>(0.0), z2, class4(2u) == vec4<u32>(label)), vec4<f32>(1.0)); }
        if (CG > 3u) { zl = zl + dot(select(vec4<f32>(0.0), z3, class4(3u) == vec4<u32>(label)), vec4<f32>(1.0)); }
        if (CG > 4u) { zl = zl + dot(select(vec4<f32>(0.0), z4, class4(4u) == vec4<u32>(label)), vec4<f32>(1.0)); }
        if (CG > 5u) { zl = zl + dot(select(vec4<f32>(0.0), z5, class4(5u) == vec4<u32>(label)), vec4<f32>(1.0)); }
        if (CG > 6u) { zl = zl + dot(select(vec4<f32>(0.0), z6, class4(6u) == vec4<u32>(label)), vec4<f32>(1.0)); }
        if (CG > 7u) { zl = zl + dot(select(vec4<f32>(0.0), z7, class4(7u) == vec4<u32>(label)), vec4<f32>(1.0)); }
        let inv = 1.0 / sum;
        // Only the row's first invocation counts it (with SPLIT = 2 the other computed the same).
        let counted = r < live && part == 0u;
        // Rows past the batch: weight 0, so zero residuals and no loss.
        let wy = select(0.0, cw[label] * row_weight(i), counted);
        loss = loss + select(0.0, ((m + log(sum)) - zl) * wy, counted);
        hits = hits + select(0.0, 1.0, counted && arg == label);
        if (TRAIN != 0u) {
            if (part == 0u) {
                let rb = r * CG;
                sm[rb] = res4(e0, inv, label, wy, 0u);
                if (CG > 1u) { sm[rb + 1u] = res4(e1, inv, label, wy, 1u); }
                if (CG > 2u) { sm[rb + 2u] = res4(e2, inv, label, wy, 2u); }
                if (CG > 3u) { sm[rb + 3u] = res4(e3, inv, label, wy, 3u); }
                if (CG > 4u) { sm[rb + 4u] = res4(e4, inv, label, wy, 4u); }
                if (CG > 5u) { sm[rb + 5u] = res4(e5, inv, label, wy, 5u); }
                if (CG > 6u) { sm[rb + 6u] = res4(e6, inv, label, wy, 6u); }
                if (CG > 7u) { sm[rb + 7u] = res4(e7, inv, label, wy, 7u); }
            }
            workgroupBarrier();
            // Phase B: this tile's Xᵀ·R: invocation t takes features t, t + WG, … (clamped to the last: a repeat is
            // computed, never stored), each row's feature times its residuals (a broadcast), rows in order.
            let first = tile == first_tile;
            for (var j0 = 0u; j0 < d; j0 = j0 + WG) {
                let j = min(j0 + t, d - 1u);
                var a = Acc();
                // In the GPU shape, eight rows' loads are issued before their FMAs (in flight together: a card's
                // load latency is paid once per eight rows, not per row; measured 2× on an H200); the FMAs stay in
                // row order, so the sums do not change. The CPU adapters' shape keeps the plain loop below: the
                // unrolled loads cost llvmpipe compile time and buy it nothing.
                var rr = 0u;
                if (STAGE != 0u) {
                    for (; rr + 8u <= live; rr = rr + 8u) {
                        let q = rp + rr;
                        let v0 = x_at(rows[q], j);
                        let v1 = x_at(rows[q + 1u], j);
                        let v2 = x_at(rows[q + 2u], j);
                        let v3 = x_at(rows[q + 3u], j);
                        let v4 = x_at(rows[q + 4u], j);
                        let v5 = x_at(rows[q + 5u], j);
                        let v6 = x_at(rows[q + 6u], j);
                        let v7 = x_at(rows[q + 7u], j);
                        a = acc_row(a, v0, rr * CG);
                        a = acc_row(a, v1, (rr + 1u) * CG);
                        a = acc_row(a, v2, (rr + 2u) * CG);
                        a = acc_row(a, v3, (rr + 3u) * CG);
                        a = acc_row(a, v4, (rr + 4u) * CG);
                        a = acc_row(a, v5, (rr + 5u) * CG);
                        a = acc_row(a, v6, (rr + 6u) * CG);
                        a = acc_row(a, v7, (rr + 7u) * CG);
                    }
                }
                for (; rr < live; rr = rr + 1u) {
                    a = acc_row(a, x_at(rows[rp + rr], j), rr * CG);
                }
                if (j0 + t < d) {
                    put(s, 0u, j, a.a0, first);
                    if (CG > 1u) { put(s, 1u, j, a.a1, first); }
                    if (CG > 2u) { put(s, 2u, j, a.a2, first); }
                    if (CG > 3u) { put(s, 3u, j, a.a3, first); }
                    if (CG > 4u) { put(s, 4u, j, a.a4, first); }
                    if (CG > 5u) { put(s, 5u, j, a.a5, first); }
                    if (CG > 6u) { put(s, 6u, j, a.a6, first); }
                    if (CG > 7u) { put(s, 7u, j, a.a7, first); }
                }
            }
            // The bias: invocation t < CG sums class group t's residuals over the rows, in order.
            if (t < CG) {
                var a = vec4<f32>(0.0);
                for (var rr = 0u; rr < live; rr = rr + 1u) {
                    a = a + sm[rr * CG + t];
                }
                put(s, t, d, a, first);
            }
        }
    }
    // The segment's loss and hits: each row invocation's running sums, added in row order.
    workgroupBarrier();
    sm[t] = vec4<f32>(loss, hits, 0.0, 0.0);
    workgroupBarrier();
    if (t == 0u) {
        var l = vec4<f32>(0.0);
        for (var u = 0u; u < WG; u = u + 1u) {
            l = l + sm[u];
        }
        mp[2u * s] = l.x;
        mp[2u * s + 1u] = l.y;
    }
}

// Where rows are held (held_rows.wgsl's `xs`), appended at load time.
