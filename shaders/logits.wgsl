// Z = X·W + b for one batch.
// X: [rows, d] row-major, W: [d, k] row-major, b: [k], Z: [rows, k].
// One invocation per output element; the 8 lanes of a workgroup row walk 8 consecutive classes, so the W reads are
// contiguous and the X read is shared. The sum over features runs in index order: deterministic.

@group(1) @binding(0) var<storage, read> x: array<f32>;
@group(1) @binding(1) var<storage, read> w: array<f32>;
@group(1) @binding(2) var<storage, read> b: array<f32>;
@group(1) @binding(3) var<storage, read_write> z: array<f32>;

override TX: u32 = 8u; // classes per workgroup
override TY: u32 = 8u; // rows per workgroup

@compute @workgroup_size(TX, TY)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let i = gid.y;
    if (c >= step.k || i >= step.rows) {
        return;
    }
    let row = i * step.d;
    var acc = b[c];
    for (var j = 0u; j < step.d; j = j + 1u) {
        acc = fma(x[row + j], w[j * step.k + c], acc);
    }
    z[i * step.k + c] = acc;
}
