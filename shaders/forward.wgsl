// The fused forward pass for K ≤ 16 classes: Z = X·W + b, then for each row the max-subtracted softmax S, the loss
// −log S_y (as logsumexp(z) − z_y), the hit [argmax z = y] and the residual R = S − onehot(y), in one pass over the
// batch. It does exactly what logits.wgsl, softmax.wgsl and residual.wgsl do one after another (CPU mirror:
// cpu::forward, their composition), without writing Z and S to memory or launching two more kernels.
//
// One invocation per 4·TQ consecutive rows (TQ = 2 on CPU adapters, 1 on GPUs: kernels::tile_quads); all K ≤ 16
// classes of those rows in 16·TQ vec4 accumulators (classes × rows), as in logits.wgsl, reading X feature-major.
// The host uses it only when K ≤ 16.

override WG: u32 = 64u;
// Classes of a tile that are computed (the host sets min(K, 16)); the accumulators past it stay unused and their
// FMAs are compiled out. Only a tile's class count changes, never a sum: results are the same for any KT ≥ K.
override KT: u32 = 16u;

@group(1) @binding(0) var<storage, read> xt: array<f32>;
@group(1) @binding(1) var<storage, read> w: array<f32>;
@group(1) @binding(2) var<storage, read> b: array<f32>;
@group(1) @binding(3) var<storage, read> y: array<u32>;
@group(1) @binding(4) var<storage, read_write> r: array<f32>;
@group(1) @binding(5) var<storage, read_write> stats: array<f32>;
// Class weights (all 1 without --class-weight): a row's residual and loss are scaled by the weight of its class.
@group(1) @binding(6) var<storage, read> cw: array<f32>;
// Sample weights of the batch's rows from sw_offset (read only with flags bit 3; 1 otherwise).
@group(1) @binding(7) var<storage, read> sw: array<f32>;

fn label(i: u32) -> u32 {
    return y[i];
}

// Where the rows are (gathered_rows.wgsl), then the tile, softmax, loss and residual (forward_tile.wgsl), appended
// at load time.
