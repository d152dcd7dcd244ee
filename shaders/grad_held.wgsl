// Reads the batch's rows where they are held (see forward_held.wgsl) instead of from a gathered copy; otherwise
// the sums of grad.wgsl, in the same row order, so bitwise equal to it (tested). CPU mirror: cpu::grad over the
// rows the permutation names.
//
// Two shapes, as the other kernels (kernels::fused_gpu_shape):
// - STAGE = 0: the register tile and row walk of grad.wgsl (grad_tile.wgsl), whole or split over rows (SEGS).
// - STAGE = 1 (GPUs, split over rows, any K past the one-pass kernel's): a workgroup of 64 invocations computes 16
//   feature quads (64 features; the bias's quad after the last) × 4 class tiles of 16 (x of the grid: feature
//   groups; y: segment × class-tile group). Invocation t owns feature quad t % 16 and class tile t / 16: the register
//   tile above (16 vec4 accumulators). The segment's rows are walked RC = 24 at a time: their 64 features of X
//   staged into workgroup memory by adjacent invocations reading adjacent words of one row (coalesced), and their 64
//   residuals likewise; then each invocation adds, row by row in order, its vec4 of X times each of its 16
//   residuals (a broadcast to the 16 invocations of a class tile). The same fma chains in the same row order as
//   the split register tile: bitwise equal (tested). X is read from device memory once per class-tile group
//   (⌈K / 64⌉ times a step, from cache on a card) instead of once per class tile.

override WG: u32 = 64u;
// 1: the staged GPU shape (needs SEGS > 0); 0: the register tile.
override STAGE: u32 = 0u;
// Classes of a tile that are computed (the host sets min(K, 16)); the accumulators past it stay unused and their
// FMAs are compiled out. Only a tile's class count changes, never a sum: results are the same for any KT ≥ K.
override KT: u32 = 16u;
// Chunks of the held set (1 to 4): slots past it are never read, and with one chunk no slot is chosen at all.
override SLOTS: u32 = 4u;

@group(1) @binding(0) var<storage, read> x0: array<f32>;
@group(1) @binding(1) var<storage, read> x1: array<f32>;
@group(1) @binding(2) var<storage, read> x2: array<f32>;
@group(1) @binding(3) var<storage, read> x3: array<f32>;
@group(1) @binding(4) var<storage, read> perm: array<u32>;
@group(1) @binding(5) var<uniform> held: HeldSet;
@group(1) @binding(6) var<storage, read> r: array<f32>;
@group(1) @binding(7) var<storage, read_write> g: array<f32>;
@group(1) @binding(8) var<storage, read_write> gb: array<f32>;

// Elements a.x, a.y, a.z, a.w of the chunk in slot `c` (the same slot for every invocation: a uniform branch).
fn xs4(c: u32, a: vec4<u32>) -> vec4<f32> {
    if (SLOTS == 1u || c == 0u) {
        return vec4<f32>(x0[a.x], x0[a.y], x0[a.z], x0[a.w]);
    } else if (SLOTS == 2u || c == 1u) {
        return vec4<f32>(x1[a.x], x1[a.y], x1[a.z], x1[a.w]);
    } else if (SLOTS == 3u || c == 2u) {
        return vec4<f32>(x2[a.x], x2[a.y], x2[a.z], x2[a.w]);
    }
    return vec4<f32>(x3[a.x], x3[a.y], x3[a.z], x3[a.w]);
}

// Where the batch's row i is held: its chunk slot (x) and first element there (y).
fn row_at(i: u32) -> vec2<u32> {
    return held_row(perm[step.perm_offset + i], held.chunk_rows, step.d);
}

// Features j..j + 4 of the row at `row`, features past d read as 0; the bias invocation (j ≥ d) reads 1.
fn x4(row: vec2<u32>, j: u32) -> vec4<f32> {
    let d = step.d;
    if (j >= d) {
        return vec4<f32>(1.0);
    }
    let base = row.y;
    let v = xs4(row.x, vec4<u32>(base + j, base + min(j + 1u, d - 1u), base + min(j + 2u, d - 1u),
        base + min(j + 3u, d - 1u)));
    return vec4<f32>(v.x, select(0.0, v.y, j + 1u < d), select(0.0, v.z, j + 2u < d), select(0.0, v.w, j + 3u < d));
}

const GQ: u32 = 16u;
const GT: u32 = 4u;
const RC: u32 = 24u;
// The staged rows' features (RC rows × GQ vec4) and residuals (RC rows × 4 · GT vec4), and where those rows are
// held: 12.5 KiB. Every element read is written first for the same rows.
var<workgroup> sx: array<vec4<f32>, 384>;
var<workgroup> sr: array<vec4<f32>, 384>;
var<workgroup> srow: array<vec2<u32>, 24>;

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

// Feature j of the row at `row` for the staged block: x, 1 for the bias's first "feature" (4 · quads), 0 past d.
fn x_one(row: vec2<u32>, j: u32, bias: u32) -> f32 {
    if (j < step.d) {
        let at = row.y + j;
        if (SLOTS == 1u || row.x == 0u) {
            return x0[at];
        } else if (SLOTS == 2u || row.x == 1u) {
            return x1[at];
        } else if (SLOTS == 3u || row.x == 2u) {
            return x2[at];
        }
        return x3[at];
    }
    return select(0.0, 1.0, j == bias);
}

// Element e of the block of X staged from feature jw (row e / 64, feature e % 64 of the block; rows where srow
// says), clamped to the block's last element `lim` − 1 (read again, never stored).
fn block_x(e: u32, lim: u32, jw: u32, bias: u32) -> f32 {
    let p = min(e, lim - 1u);
    return x_one(srow[p / (GQ * 4u)], jw + p % (GQ * 4u), bias);
}

// Residual e of the block staged from row i0 and class cw (row e / 64, class e % 64 of the class-tile group),
// clamped as block_x.
fn block_r(e: u32, lim: u32, i0: u32, cw: u32) -> f32 {
    let q = min(e, lim - 1u);
    return res(i0 + q / (GT * 16u), cw + q % (GT * 16u));
}

// Stores element e of the staged block of X (row e / 64, feature e % 64 of the block).
fn put_x(e: u32, v: f32) {
    let jj = e % (GQ * 4u);
    sx[(e / (GQ * 4u)) * GQ + jj / 4u][jj % 4u] = v;
}

// Stores element e of the staged block of residuals (row e / 64, class e % 64 of the class-tile group).
fn put_r(e: u32, v: f32) {
    let cc = e % (GT * 16u);
    sr[(e / (GT * 16u)) * GT * 4u + cc / 4u][cc % 4u] = v;
}

// The GPU shape (see above): no early return, every invocation reaches each barrier.
fn staged(t: u32, wid: vec3<u32>) {
    let n = step.rows;
    let d = step.d;
    let k = step.k;
    let tiles = (k + 15u) / 16u;
    let groups = (tiles + GT - 1u) / GT;
    let s = wid.y / groups;
    let q = t % GQ;
    let ct = (wid.y % groups) * GT + t / GQ;
    let quads = (d + 3u) / 4u;
    // This invocation's first feature (past the bias's quad: computed, never stored) and first class (tiles past
    // K repeat the last: computed, never stored).
    let j0 = (wid.x * GQ + q) * 4u;
    let c0 = min(ct, tiles - 1u) * 16u;
    let live = wid.x * GQ + q <= quads && ct < tiles;
    let per = segments(n, UNIT, SEGS).x;
    let first = min(s * per * UNIT, n);
    let end = min(first + per * UNIT, n);
    // The workgroup's first staged feature and class.
    let jw = wid.x * GQ * 4u;
    let cw = (wid.y % groups) * GT * 16u;
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
    for (var i0 = first; i0 < end; i0 = i0 + RC) {
        let m = min(RC, end - i0);
        // The last block's rows are read (and, first time round, nothing is).
        workgroupBarrier();
        if (t < m) {
            srow[t] = row_at(i0 + t);
        }
        workgroupBarrier();
        // Eight elements of X and eight residuals in flight before their stores (elements e, e + WG, … of each
        // block: with WG = 64, one row of each per step, so a block of 24 rows is three round trips to memory). An
        // index past a block reads its last element again and is not stored.
        let bias = quads * 4u;
        let lx = m * GQ * 4u;
        let lr = m * GT * 16u;
        for (var e = t; e < max(lx, lr); e = e + 8u * WG) {
            let x0v = block_x(e, lx, jw, bias);
            let x1v = block_x(e + 1u * WG, lx, jw, bias);
            let x2v = block_x(e + 2u * WG, lx, jw, bias);
            let x3v = block_x(e + 3u * WG, lx, jw, bias);
            let x4v = block_x(e + 4u * WG, lx, jw, bias);
            let x5v = block_x(e + 5u * WG, lx, jw, bias);
            let x6v = block_x(e + 6u * WG, lx, jw, bias);
            let x7v = block_x(e + 7u * WG, lx, jw, bias);
            let r0v = block_r(e, lr, i0, cw);
            let r1v = block_r(e + 1u * WG, lr, i0, cw);
            let r2v = block_r(e + 2u * WG, lr, i0, cw);
            let r3v = block_r(e + 3u * WG, lr, i0, cw);
            let r4v = block_r(e + 4u * WG, lr, i0, cw);
            let r5v = block_r(e + 5u * WG, lr, i0, cw);
            let r6v = block_r(e + 6u * WG, lr, i0, cw);
            let r7v = block_r(e + 7u * WG, lr, i0, cw);
            if (e < lx) { put_x(e, x0v); }
            if (e + 1u * WG < lx) { put_x(e + 1u * WG, x1v); }
            if (e + 2u * WG < lx) { put_x(e + 2u * WG, x2v); }
            if (e + 3u * WG < lx) { put_x(e + 3u * WG, x3v); }
            if (e + 4u * WG < lx) { put_x(e + 4u * WG, x4v); }
            if (e + 5u * WG < lx) { put_x(e + 5u * WG, x5v); }
            if (e + 6u * WG < lx) { put_x(e + 6u * WG, x6v); }
            if (e + 7u * WG < lx) { put_x(e + 7u * WG, x7v); }
            if (e < lr) { put_r(e, r0v); }
            if (e + 1u * WG < lr) { put_r(e + 1u * WG, r1v); }
            if (e + 2u * WG < lr) { put_r(e + 2u * WG, r2v); }
            if (e + 3u * WG < lr) { put_r(e + 3u * WG, r3v); }
            if (e + 4u * WG < lr) { put_r(e + 4u * WG, r4v); }
            if (e + 5u * WG < lr) { put_r(e + 5u * WG, r5v); }
            if (e + 6u * WG < lr) { put_r(e + 6u * WG, r6v); }
            if (e + 7u * WG < lr) { put_r(e + 7u * WG, r7v); }
        }
        workgroupBarrier();
        let rb = (t / GQ) * 4u;
        for (var rr = 0u; rr < m; rr = rr + 1u) {
            let x = sx[rr * GQ + q];
            let r0 = sr[rr * GT * 4u + rb];
            let r1 = sr[rr * GT * 4u + rb + 1u];
            let r2 = sr[rr * GT * 4u + rb + 2u];
            let r3 = sr[rr * GT * 4u + rb + 3u];
            a0 = fma(x, vec4<f32>(r0.x), a0);
            a1 = fma(x, vec4<f32>(r0.y), a1);
            a2 = fma(x, vec4<f32>(r0.z), a2);
            a3 = fma(x, vec4<f32>(r0.w), a3);
            a4 = fma(x, vec4<f32>(r1.x), a4);
            a5 = fma(x, vec4<f32>(r1.y), a5);
            a6 = fma(x, vec4<f32>(r1.z), a6);
            a7 = fma(x, vec4<f32>(r1.w), a7);
            a8 = fma(x, vec4<f32>(r2.x), a8);
            a9 = fma(x, vec4<f32>(r2.y), a9);
            a10 = fma(x, vec4<f32>(r2.z), a10);
            a11 = fma(x, vec4<f32>(r2.w), a11);
            a12 = fma(x, vec4<f32>(r3.x), a12);
            a13 = fma(x, vec4<f32>(r3.y), a13);
            a14 = fma(x, vec4<f32>(r3.z), a14);
            a15 = fma(x, vec4<f32>(r3.w), a15);
        }
    }
    if (live && first < n) {
        let add = (step.flags & 1u) != 0u;
        put16(j0, c0, add, s, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15);
    }
}

// The tile and its row walk: grad_tile.wgsl, appended at load time.
