// One pass over a batch's rows where they are held, for K ≤ 32: the logits, max-subtracted softmax, loss, hit and
// residual of each row and the row's share of the gradient Xᵀ·R, written as per-segment partial sums that
// reduce.wgsl adds in a fixed order. CPU mirror: cpu::fused (the same sums; numerics::tolerance::fused bounds the
// GPU's order of addition).
//
// Shape of the work (what a real GPU needs, see docs/ARCHITECTURE.md): the batch is cut into tiles of RT rows (64; 32
// or 16 with teams of 16 or 32 lanes, kernels::Team::tile_rows) and the tiles into at most SEGS segments of consecutive
// tiles, one workgroup of WG = RT · TEAM invocations per segment,
// so the invocations grow with the batch and no invocation walks more than `per` tiles (a few) in sequence. Within
// a tile:
// - Phase A (logits): row r of the tile is taken by a team of TEAM adjacent invocations (t = r · TEAM + lane). Lane
//   p walks the row's features p, p + TEAM, p + 2 · TEAM, … and sums x · W for every class group in vec4 registers,
//   reading X straight from where it is held: the team's lanes read TEAM adjacent words of the row at once
//   (coalesced: a 32-byte sector per team and load with TEAM = 8; the lane's next feature is in the same line), four
//   features' loads in flight before their fmas. W is staged in workgroup memory (once per segment when it fits,
//   else a block of features at a time); the lanes of a team read consecutive features' rows of it, WS vec4 apart
//   (WS odd: different banks). The team's partial logits are then added over its lanes by a butterfly: at step
//   m = 1, 2, 4, … each lane adds lane p ^ m's sum to its own, through subgroup shuffles where the device has them
//   (SUBGROUPS = 1; the host checks that a team is within a subgroup, lanes in order) or through workgroup memory —
//   the same additions in the same order, so the same bits, and every lane ends with the row's logits. A row's
//   chain is ⌈d / TEAM⌉ features, not d. With TEAM = 1 (CPU adapters: one invocation per row, its row read in place
//   and cached there, no exchange) the logits are forward.wgsl's, feature by feature.
// - Softmax: every lane of a team computes the max-subtracted softmax, loss, hit and weighted residual S − Y of its
//   row in registers (softmax.wgsl's arithmetic; lane 0 counts them and writes the residuals to workgroup memory).
// - Phase B (gradient): invocation t owns features t, t + WG, … and every class group in registers; for the tile's
//   rows in order it reads x[row, j] — adjacent invocations adjacent words of one row (coalesced; from cache, phase
//   A has just read the same rows) — times the row's residuals (a broadcast from workgroup memory), into the
//   segment's partial, laid out [segment][class][feature] so that adjacent invocations write adjacent words. The
//   bias (feature d) is summed by invocations t < CG.
// X is read from device memory once per step; the partials are the segment's own (no atomics), so results are
// bitwise reproducible on an adapter. The gradient's sums are the same in every shape; the logits' depend on TEAM
// (the butterfly's order), within numerics::tolerance::fused of each other.

// Chunks of the held set (1 to 4), as forward_held.wgsl.
override SLOTS: u32 = 4u;
// Class groups of four: ceil(K / 4), 1 to 8. Groups past it are compiled out.
override CG: u32 = 3u;
// Most segments (workgroups) a batch is cut into; the host derives it from the partials' memory.
override SEGS: u32 = 1024u;
// 0 for the forward pass only (evaluation): no residual, no gradient partials.
override TRAIN: u32 = 1u;
// Invocations per row in phase A (1, 2, 4, 8, 16 or 32), each taking every TEAM-th feature: on GPUs whose workgroups
// hold 512 invocations 32 (or 16) where subgroups hold the team, else 8; 1 on CPU adapters (kernels::Team).
override TEAM: u32 = 8u;
// 1: the team's lanes add their logits through subgroup shuffles (team_subgroup.wgsl); 0: through workgroup memory.
override SUBGROUPS: u32 = 0u;

// Rows of a tile: 64 up to 8 lanes a row, 512 / TEAM past it (the workgroup stays at 512 invocations); at most 64
// (`rows` holds two tiles').
override RT: u32 = 64u;
override WG: u32 = RT * TEAM;
// vec4 of workgroup memory.
const SM: u32 = 992u;
// vec4 between consecutive features' rows of the staged W: CG made odd in the team shapes (the lanes of a team read
// consecutive features: an odd stride spreads them over the banks).
override WS: u32 = select(CG, CG | 1u, TEAM > 1u);
// Where the staged W starts: after the tile's residuals (RT · CG) or, where the lanes exchange their logits through
// workgroup memory, after the exchange's WG vec4 (the two share a place: the exchange is done before the residuals
// are written, and after the last tile's gradient has read its own).
override WB: u32 = max(RT * CG, select(0u, WG, TEAM > 1u && SUBGROUPS == 0u));
// Features of W staged at once: as many as fit, in whole rounds of the team's lanes (so lane p always takes the
// features ≡ p mod TEAM).
override DW: u32 = (SM - WB) / WS / TEAM * TEAM;

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

// The workgroup's memory, in vec4 (every element read is written first, so the pipeline skips zeroing it):
// - from 0: the tile's residuals R, row r's class group g at r · CG + g; before them, the lanes' logits exchanged
//   (without subgroups), invocation t's at t;
// - from WB: the staged W, feature j0 + jj's class group g at WB + jj · WS + g, DW features at a time;
// - at the end, the rows' (loss, hits) sums.
var<workgroup> sm: array<vec4<f32>, SM>;
// Where each row of the tile is held (its chunk slot << 30 | its first element), for even and odd tiles: the next
// tile's may be written while the last tile's gradient still reads them (RT apart).
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

// Stages W's rows j0 .. j0 + m (all class groups) at WB.
fn stage_w(t: u32, j0: u32, m: u32) {
    for (var e = t; e < m * CG; e = e + WG) {
        sm[WB + (e / CG) * WS + e % CG] = w4(j0 + e / CG, e % CG);
    }
}

// The sum of v over the TEAM lanes of invocation t's team, by the butterfly: at step m each lane adds lane p ^ m's
// running sum to its own (a + b and b + a are the same bits, so every lane ends with the same sum). Called by every
// invocation of the workgroup at once (the exchange through workgroup memory has barriers).
fn team_sum(v: vec4<f32>, t: u32) -> vec4<f32> {
    var s = v;
    for (var m = 1u; m < TEAM; m = m << 1u) {
        if (SUBGROUPS != 0u) {
            s = s + shuffle_xor(s, m);
        } else {
            sm[t] = s;
            workgroupBarrier();
            s = s + sm[t ^ m];
            workgroupBarrier();
        }
    }
    return s;
}

// Sums over class groups 0 .. CG: a row's (partial) logits in phase A, one feature's sums over a tile's rows in
// phase B.
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

// Adds xv times the class groups at `rb` in workgroup memory to the sums: in phase A a feature's x times its W row,
// in phase B a row's feature times the row's residuals.
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
    // This invocation's row of a tile and its lane in the row's team.
    let r = t / TEAM;
    let p = t % TEAM;
    // W staged once for the whole segment when it fits.
    let resident = d <= DW;
    if (resident) {
        stage_w(t, 0u, d);
        workgroupBarrier();
    }
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
        if (p == 0u) {
            rows[rp + r] = at;
        }
        // The last tile is done with what this one overwrites: its gradient with the residuals' place (where W is
        // staged by blocks, the barrier after the first block's staging waits for it), or, evaluating, its phase A
        // with the staged block of W.
        if (tile != first_tile && resident == (TRAIN != 0u)) {
            workgroupBarrier();
        }
        // Phase A: lane p's share of row r's logits, features j ≡ p (mod TEAM) in order, DW at a time.
        var z = Acc();
        for (var j0 = 0u; j0 < d; j0 = j0 + DW) {
            let m = min(DW, d - j0);
            if (!resident) {
                stage_w(t, j0, m);
                workgroupBarrier();
            }
            var jj = p;
            if (TEAM > 1u) {
                // Four features' loads in flight before their fmas (a card's load latency paid once per four).
                for (; jj + 3u * TEAM < m; jj = jj + 4u * TEAM) {
                    let v0 = x_at(at, j0 + jj);
                    let v1 = x_at(at, j0 + jj + TEAM);
                    let v2 = x_at(at, j0 + jj + 2u * TEAM);
                    let v3 = x_at(at, j0 + jj + 3u * TEAM);
                    z = acc_row(z, v0, WB + jj * WS);
                    z = acc_row(z, v1, WB + (jj + TEAM) * WS);
                    z = acc_row(z, v2, WB + (jj + 2u * TEAM) * WS);
                    z = acc_row(z, v3, WB + (jj + 3u * TEAM) * WS);
                }
            }
            for (; jj < m; jj = jj + TEAM) {
                z = acc_row(z, x_at(at, j0 + jj), WB + jj * WS);
            }
            // The next block of W takes this one's place.
            if (!resident && j0 + DW < d) {
                workgroupBarrier();
            }
        }
        // The lanes' sums added over the team: each lane has the row's logits.
        var z0 = z.a0;
        var z1 = z.a1;
        var z2 = z.a2;
        var z3 = z.a3;
        var z4 = z.a4;
        var z5 = z.a5;
        var z6 = z.a6;
        var z7 = z.a7;
        if (TEAM > 1u) {
            z0 = team_sum(z0, t);
            if (CG > 1u) { z1 = team_sum(z1, t); }
            if (CG > 2u) { z2 = team_sum(z2, t); }
            if (CG > 3u) { z3 = team_sum(z3, t); }
            if (CG > 4u) { z4 = team_sum(z4, t); }
            if (CG > 5u) { z5 = team_sum(z5, t); }
            if (CG > 6u) { z6 = team_sum(z6, t); }
            if (CG > 7u) { z7 = team_sum(z7, t); }
        }
        z0 = z0 + b4(0u);
        z1 = z1 + b4(1u);
        z2 = z2 + b4(2u);
        z3 = z3 + b4(3u);
        z4 = z4 + b4(4u);
        z5 = z5 + b4(5u);
        z6 = z6 + b4(6u);
        z7 = z7 + b4(7u);
        // Softmax, loss, hit and residual of row r in registers, in every lane of its team (softmax.wgsl's
        // arithmetic: the first maximum, exp(z − m) summed in class order, one division, then scaling); classes past
        // k count for nothing.
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
        // Only the row's first lane counts it (the others computed the same).
        let counted = r < live && p == 0u;
        // Rows past the batch: weight 0, so zero residuals and no loss.
        let wy = select(0.0, cw[label] * row_weight(i), counted);
        loss = loss + select(0.0, ((m + log(sum)) - zl) * wy, counted);
        hits = hits + select(0.0, 1.0, counted && arg == label);
        if (TRAIN != 0u) {
            if (p == 0u) {
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
                // In the team shapes, four rows' loads are issued before their FMAs (in flight together: a card's
                // load latency is paid once per four rows, not per row); the FMAs stay in row order, so the sums do
                // not change. With 8 lanes a row a workgroup keeps 512 × 4 loads in flight, where the 128 invocations
                // of the shape before it kept 128 × 8 (measured 2× faster on an H200 than one at a time). The CPU
                // adapters' shape keeps the plain loop below: llvmpipe pays for unrolled loads in compile time (the
                // eight-row unroll took 11 s of a 15 s compile at K = 32) and they buy it nothing.
                var rr = 0u;
                if (TEAM > 1u) {
                    for (; rr + 4u <= live; rr = rr + 4u) {
                        let q = rp + rr;
                        let v0 = x_at(rows[q], j);
                        let v1 = x_at(rows[q + 1u], j);
                        let v2 = x_at(rows[q + 2u], j);
                        let v3 = x_at(rows[q + 3u], j);
                        a = acc_row(a, v0, rr * CG);
                        a = acc_row(a, v1, (rr + 1u) * CG);
                        a = acc_row(a, v2, (rr + 2u) * CG);
                        a = acc_row(a, v3, (rr + 3u) * CG);
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
    // The segment's loss and hits: each row's first lane's running sums, added in row order.
    workgroupBarrier();
    sm[t] = vec4<f32>(loss, hits, 0.0, 0.0);
    workgroupBarrier();
    if (t == 0u) {
        var l = vec4<f32>(0.0);
        for (var u = 0u; u < WG; u = u + TEAM) {
            l = l + sm[u];
        }
        mp[2u * s] = l.x;
        mp[2u * s + 1u] = l.y;
    }
}

// Where rows are held (held_rows.wgsl's `xs`), appended at load time.
