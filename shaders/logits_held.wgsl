// logits.wgsl reading the batch's rows where they are held instead of from a gathered copy — row
// perm[perm_offset + i] of the held set, in the chunk slot that holds it (held_rows.wgsl) — for K > 16, where the
// fused forward kernel's registers do not hold every class. Same arithmetic in the same order as logits.wgsl, so
// bitwise equal to it over a gathered copy (tested); CPU mirror: cpu::logits over the rows the permutation names.
// The tiles of the first 16 classes also copy their rows' labels into the batch's labels, which softmax.wgsl and
// residual.wgsl read (the gather's other product).
//
// Two shapes, as the other kernels (kernels::fused_gpu_shape):
// - STAGE = 0 (CPU adapters): the register tile, 4·TQ rows × 16 classes per invocation (logits_tile.wgsl); each
//   invocation reads its rows at feature j (loads D floats apart).
// - STAGE = 1 (GPUs, any K past the one-pass kernel's): a workgroup of 64 · CT invocations computes a tile of RT = 64
//   rows × CT class tiles of 16 (x of the grid: row tiles; y: groups of CT class tiles). Invocation t owns row
//   t % 64 and class tile t / 64 (4 vec4 accumulators over its 16 classes). X is staged DC = 32 features of the 64
//   rows at a time into workgroup memory, invocation t reading elements t, t + WG, … of the 64 × 32 block in
//   row-major order: adjacent invocations read adjacent words of one row (coalesced), stored feature-major with a
//   padded stride (RTP = 65); beside it the same 32 rows of W for the workgroup's classes (adjacent invocations,
//   adjacent class groups). Each invocation then reads its row's x from workgroup memory and the 4 class groups of W
//   (the same for the 64 invocations of a class tile: a broadcast). Every logit is the same fma chain over the
//   features in index order as the register tile's, then the bias: bitwise equal (tested). Invocations: batch ×
//   class tiles (rows × ⌈K / 16⌉), each walking the row's D features once.

override WG: u32 = 64u;
// 1: the staged GPU shape; 0: the register tile (above).
override STAGE: u32 = 0u;
// Class tiles of a staged workgroup (1 to 3; WG = 64 · CT).
override CT: u32 = 3u;
// Classes of a tile that are computed: 16 (the accumulators past it are compiled out).
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
@group(1) @binding(9) var<storage, read_write> z: array<f32>;
// The batch's labels, in batch order.
@group(1) @binding(10) var<storage, read_write> y: array<u32>;

// The first class tile's invocation copies its rows' labels.
fn rows_done(i0: u32, c0: u32) {
    if (c0 != 0u) {
        return;
    }
    for (var q = 0u; q < 4u; q = q + 1u) {
        let i = i0 + q;
        if (i < step.rows) {
            y[i] = labels[perm[step.perm_offset + i]];
        }
    }
}

const RT: u32 = 64u;
const DC: u32 = 32u;
const RTP: u32 = 65u;
// The staged block of X (DC features × RTP rows) and of W (DC features × 4 · CT class groups), and where the
// tile's rows are held (chunk slot << 30 | first element). Every element read is written first in the same block.
var<workgroup> sx: array<f32, 2080>;
var<workgroup> sw: array<vec4<f32>, 384>;
var<workgroup> srow: array<u32, 64>;

// Element e of the RT × DC block of X staged from feature j0 (row-major: adjacent e, adjacent words of a row), 0 past
// the last feature.
fn staged_x(e: u32, j0: u32) -> f32 {
    let j = j0 + e % DC;
    var v = 0.0;
    if (j < step.d) {
        v = x_at(srow[e / DC], j);
    }
    return v;
}

// Stores element e of the staged block: by feature, rows RTP apart.
fn put_x(e: u32, v: f32) {
    sx[(e % DC) * RTP + e / DC] = v;
}

@compute @workgroup_size(WG)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    if (STAGE != 0u) {
        staged(t, wid);
    } else {
        tile(gid);
    }
}

// The GPU shape (see above): no early return, every invocation reaches each barrier.
fn staged(t: u32, wid: vec3<u32>) {
    let n = step.rows;
    let d = step.d;
    let k = step.k;
    let tiles = (k + 15u) / 16u;
    let r = t % RT;
    let part = t / RT;
    let row0 = wid.x * RT;
    // This invocation's class tile, and its row (rows past the batch repeat the last, tiles past K the last:
    // computed, never stored).
    let ct = wid.y * CT + part;
    let c0 = min(ct, tiles - 1u) * 16u;
    let i = min(row0 + r, n - 1u);
    let live = row0 + r < n && ct < tiles;
    if (part == 0u) {
        srow[r] = held_at(i);
    }
    // The first class tile's invocations copy their rows' labels (the gather's other product).
    if (ct == 0u && row0 + r < n) {
        y[row0 + r] = labels[perm[step.perm_offset + row0 + r]];
    }
    // The workgroup's first class, and how many class groups of W it stages.
    let cw0 = wid.y * CT * 16u;
    let groups = 4u * CT;
    var z0 = vec4<f32>(0.0);
    var z1 = vec4<f32>(0.0);
    var z2 = vec4<f32>(0.0);
    var z3 = vec4<f32>(0.0);
    for (var j0 = 0u; j0 < d; j0 = j0 + DC) {
        // The rows' places are written (first block) and the last block is read (the others).
        workgroupBarrier();
        // The block's loads in flight before their stores: 12 an invocation, so one round trip to memory per block
        // with CT = 3 (WG = 192; 11 elements each, the 12th a repeat). An index past the block reads its last
        // element again and is not stored.
        for (var e = t; e < RT * DC; e = e + 12u * WG) {
            let v0 = staged_x(e, j0);
            let v1 = staged_x(min(e + 1u * WG, RT * DC - 1u), j0);
            let v2 = staged_x(min(e + 2u * WG, RT * DC - 1u), j0);
            let v3 = staged_x(min(e + 3u * WG, RT * DC - 1u), j0);
            let v4 = staged_x(min(e + 4u * WG, RT * DC - 1u), j0);
            let v5 = staged_x(min(e + 5u * WG, RT * DC - 1u), j0);
            let v6 = staged_x(min(e + 6u * WG, RT * DC - 1u), j0);
            let v7 = staged_x(min(e + 7u * WG, RT * DC - 1u), j0);
            let v8 = staged_x(min(e + 8u * WG, RT * DC - 1u), j0);
            let v9 = staged_x(min(e + 9u * WG, RT * DC - 1u), j0);
            let v10 = staged_x(min(e + 10u * WG, RT * DC - 1u), j0);
            let v11 = staged_x(min(e + 11u * WG, RT * DC - 1u), j0);
            put_x(e, v0);
            if (e + 1u * WG < RT * DC) { put_x(e + 1u * WG, v1); }
            if (e + 2u * WG < RT * DC) { put_x(e + 2u * WG, v2); }
            if (e + 3u * WG < RT * DC) { put_x(e + 3u * WG, v3); }
            if (e + 4u * WG < RT * DC) { put_x(e + 4u * WG, v4); }
            if (e + 5u * WG < RT * DC) { put_x(e + 5u * WG, v5); }
            if (e + 6u * WG < RT * DC) { put_x(e + 6u * WG, v6); }
            if (e + 7u * WG < RT * DC) { put_x(e + 7u * WG, v7); }
            if (e + 8u * WG < RT * DC) { put_x(e + 8u * WG, v8); }
            if (e + 9u * WG < RT * DC) { put_x(e + 9u * WG, v9); }
            if (e + 10u * WG < RT * DC) { put_x(e + 10u * WG, v10); }
            if (e + 11u * WG < RT * DC) { put_x(e + 11u * WG, v11); }
        }
        for (var e = t; e < DC * groups; e = e + WG) {
            let j = min(j0 + e / groups, d - 1u);
            let c = cw0 + 4u * (e % groups);
            sw[e] = vec4<f32>(wt(j, c), wt(j, c + 1u), wt(j, c + 2u), wt(j, c + 3u));
        }
        workgroupBarrier();
        let m = min(DC, d - j0);
        for (var jj = 0u; jj < m; jj = jj + 1u) {
            let x = vec4<f32>(sx[jj * RTP + r]);
            let wb = jj * groups + 4u * part;
            z0 = fma(x, sw[wb], z0);
            z1 = fma(x, sw[wb + 1u], z1);
            z2 = fma(x, sw[wb + 2u], z2);
            z3 = fma(x, sw[wb + 3u], z3);
        }
    }
    if (live) {
        let at = (row0 + r) * k;
        for (var l = 0u; l < 4u; l = l + 1u) {
            if (c0 + l < k) { z[at + c0 + l] = z0[l] + b[c0 + l]; }
            if (c0 + 4u + l < k) { z[at + c0 + 4u + l] = z1[l] + b[c0 + 4u + l]; }
            if (c0 + 8u + l < k) { z[at + c0 + 8u + l] = z2[l] + b[c0 + 8u + l]; }
            if (c0 + 12u + l < k) { z[at + c0 + 12u + l] = z3[l] + b[c0 + 12u + l]; }
        }
    }
}

// Where the rows are (held_rows.wgsl), then the tile (logits_tile.wgsl), appended at load time.
