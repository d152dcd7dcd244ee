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

fn label(i: u32) -> u32 {
    return labels[perm[step.perm_offset + i]];
}

// Where the rows are (held_rows.wgsl), then the tile, softmax, loss and residual (forward_tile.wgsl), appended at
// load time.
