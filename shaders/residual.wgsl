// R = (S − Y)·w, Y one-hot from the u32 class index of each row, w the row's weight — the weight of its class times
// its sample weight, each 1 when absent: ∂L/∂z for the (weighted) cross-entropy over softmax.
// One invocation per element of R.

@group(1) @binding(0) var<storage, read> s: array<f32>;
@group(1) @binding(1) var<storage, read> y: array<u32>;
@group(1) @binding(2) var<storage, read_write> r: array<f32>;
@group(1) @binding(3) var<storage, read> cw: array<f32>;
// Sample weights of the batch's rows from sw_offset (read only with flags bit 3; 1 otherwise).
@group(1) @binding(4) var<storage, read> sw: array<f32>;

fn row_weight(i: u32) -> f32 {
    return select(1.0, sw[step.sw_offset + i], (step.flags & 8u) != 0u);
}

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = flat_index(gid, nwg, WG);
    if (e >= step.rows * step.k) {
        return;
    }
    let i = e / step.k;
    let c = e % step.k;
    r[e] = (s[e] - select(0.0, 1.0, y[i] == c)) * (cw[y[i]] * row_weight(i));
}
