// logits.wgsl reading the batch's rows where they are held instead of from a gathered copy — row
// perm[perm_offset + i] of the held set, in the chunk slot that holds it (held_rows.wgsl) — for K > 16, where the
// fused forward kernel's registers do not hold every class. Same arithmetic in the same order as logits.wgsl, so
// bitwise equal to it over a gathered copy (tested); CPU mirror: cpu::logits over the rows the permutation names.
// The tiles of the first 16 classes also copy their rows' labels into the batch's labels, which softmax.wgsl and
// residual.wgsl read (the gather's other product).
//
// Register tiling: 4·TQ rows × 16 classes per invocation (logits_tile.wgsl); each invocation reads its rows at
// feature j (4 loads D floats apart: on a GPU one cache line each, shared by the next features' loads).

override WG: u32 = 64u;
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

// Where the rows are (held_rows.wgsl), then the tile (logits_tile.wgsl), appended at load time.
