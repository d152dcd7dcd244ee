// Reads the batch's rows where they are held (see forward_held.wgsl) instead of from a gathered copy; otherwise
// the sums of grad.wgsl, in the same row order, so bitwise equal to it (tested). CPU mirror: cpu::grad over the
// rows the permutation names.
//
// Register tiling and row walk as in grad.wgsl (grad_tile.wgsl).

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

// The tile and its row walk: grad_tile.wgsl, appended at load time.
