// Momentum step from gradient sums over step.rows rows (PyTorch's heavy ball): with g the mean gradient (+ l2·W for
// W), v ← μ·v + g and W ← W − lr·v, or with Nesterov (flags bit 2) W ← W − lr·(g + μ·v); then W's L1 shrink. The
// bias takes no penalty. One invocation per parameter; v is flat over W then b. Mirror: cpu::optimizer_step.

@group(1) @binding(0) var<storage, read> g: array<f32>;
@group(1) @binding(1) var<storage, read> gb: array<f32>;
@group(1) @binding(2) var<storage, read_write> w: array<f32>;
@group(1) @binding(3) var<storage, read_write> b: array<f32>;
@group(1) @binding(4) var<storage, read_write> vel: array<f32>;

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = flat_index(gid, nwg, WG);
    let nw = step.d * step.k;
    if (e >= nw + step.k) {
        return;
    }
    let rows = f32(step.rows);
    let nesterov = (step.flags & 4u) != 0u;
    if (e < nw) {
        let grad = g[e] / rows + step.l2 * w[e];
        let v = step.beta1 * vel[e] + grad;
        vel[e] = v;
        let x = w[e] - step.lr * select(v, grad + step.beta1 * v, nesterov);
        let t = step.lr * step.l1;
        w[e] = select(x, sign(x) * max(abs(x) - t, 0.0), t > 0.0);
    } else {
        let c = e - nw;
        let grad = gb[c] / rows;
        let v = step.beta1 * vel[e] + grad;
        vel[e] = v;
        b[c] = b[c] - step.lr * select(v, grad + step.beta1 * v, nesterov);
    }
}
