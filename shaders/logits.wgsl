// Z = X·W + b for one batch. X is read feature-major (xt[j·rows + i], the copy the gather kernel writes beside the
// row-major one), W is [d, k] row-major, b is [k], Z is [rows, k]. The tile is logits_tile.wgsl, appended at load
// time (logits_held.wgsl reads the rows where they are held instead).
//
// Register tiling for the tall-skinny shape: one invocation per 4·TQ consecutive rows (TQ vec4s of xt per feature;
// TQ = 2 on CPU adapters, 1 on GPUs: kernels::tile_quads) and tile of 16 classes (y of the grid), 16·TQ vec4
// accumulators (rows × classes) in registers. Per feature it loads TQ vec4s of X and 16 weights (the same for every
// invocation: a broadcast) for 16·TQ vec4 FMAs. The accumulators are named
// variables, not an array: a private array indexed at run time would live in memory. The sum over features runs in
// index order: deterministic.

override WG: u32 = 64u;
// Classes of a tile that are computed: 16 (the accumulators past it are compiled out).
override KT: u32 = 16u;

@group(1) @binding(0) var<storage, read> xt: array<f32>;
@group(1) @binding(1) var<storage, read> w: array<f32>;
@group(1) @binding(2) var<storage, read> b: array<f32>;
@group(1) @binding(3) var<storage, read_write> z: array<f32>;

// Nothing beside the logits: the batch's labels are where the gather put them.
fn rows_done(i0: u32, c0: u32) {}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    tile(gid);
}

// Where the rows are (gathered_rows.wgsl), then the tile (logits_tile.wgsl), appended at load time.
