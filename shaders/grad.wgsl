// G = Xᵀ·R and g_b = colsum(R): the gradient sums of the batch's cross-entropy (the update divides by the row count,
// so that sums over several batches or processes can be added first). With bit 0 of step.flags set, the batch's sums
// are added to what G and g_b already hold (accumulation over the chunks of a full-batch objective).
// A parallel reduction over the batch. Each workgroup owns one feature j (j == d stands for the bias, whose "feature"
// is 1) and a tile of TK classes. Its TB lanes per class each sum a fixed stride of rows (i ≡ lane mod TB, in index
// order), then a fixed-shape tree in workgroup memory adds the TB partial sums. No atomics: the order of every
// addition is fixed, so the result is bitwise reproducible on a given adapter.

const TK: u32 = 8u;
const TB: u32 = 32u;

@group(1) @binding(0) var<storage, read> x: array<f32>;
@group(1) @binding(1) var<storage, read> r: array<f32>;
@group(1) @binding(2) var<storage, read_write> g: array<f32>;
@group(1) @binding(3) var<storage, read_write> gb: array<f32>;

var<workgroup> partial: array<f32, 256>; // TK * TB

@compute @workgroup_size(8, 32)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let tiles = (step.k + TK - 1u) / TK;
    let flat = wid.x + wid.y * nwg.x;
    // Workgroup-uniform: a whole workgroup past the end leaves together, before any barrier.
    if (flat >= tiles * (step.d + 1u)) {
        return;
    }
    let j = flat / tiles;
    let c = (flat % tiles) * TK + lid.x;
    let is_bias = j == step.d;

    var acc = 0.0;
    if (c < step.k) {
        for (var i = lid.y; i < step.rows; i = i + TB) {
            let xv = select(x[i * step.d + j], 1.0, is_bias);
            acc = fma(xv, r[i * step.k + c], acc);
        }
    }
    partial[lid.y * TK + lid.x] = acc;
    workgroupBarrier();
    for (var half = TB / 2u; half > 0u; half = half / 2u) {
        if (lid.y < half) {
            partial[lid.y * TK + lid.x] = partial[lid.y * TK + lid.x] + partial[(lid.y + half) * TK + lid.x];
        }
        workgroupBarrier();
    }
    if (lid.y == 0u && c < step.k) {
        let add = (step.flags & 1u) != 0u;
        let v = partial[lid.x];
        if (is_bias) {
            gb[c] = select(v, gb[c] + v, add);
        } else {
            let e = j * step.k + c;
            g[e] = select(v, g[e] + v, add);
        }
    }
}
