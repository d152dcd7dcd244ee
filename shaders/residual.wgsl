// R = S − Y, Y one-hot from the u32 class index of each row: ∂L/∂z for cross-entropy over softmax.
// One invocation per element of R.

struct Step {
    rows: u32,
    perm_offset: u32,
    d: u32,
    k: u32,
    lr: f32,
    l2: f32,
    slot: u32,
    flags: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(1) @binding(0) var<storage, read> s: array<f32>;
@group(1) @binding(1) var<storage, read> y: array<u32>;
@group(1) @binding(2) var<storage, read_write> r: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = gid.x + gid.y * nwg.x * 64u;
    if (e >= step.rows * step.k) {
        return;
    }
    let i = e / step.k;
    let c = e % step.k;
    r[e] = s[e] - select(0.0, 1.0, y[i] == c);
}
