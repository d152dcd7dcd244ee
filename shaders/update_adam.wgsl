// Adam step from gradient sums over step.rows rows: with g the mean gradient (+ l2·W for W), m ← β₁m + (1 − β₁)g,
// v ← β₂v + (1 − β₂)g², and W ← W − lr·(m/c1 / (√(v/c2) + ε) + wd·W) with the bias corrections c1 = 1 − β₁ᵗ,
// c2 = 1 − β₂ᵗ computed on the host and wd AdamW's decoupled decay (not on the bias); then W's L1 shrink. One
// invocation per parameter; m and v are flat over W then b. Mirror: cpu::optimizer_step.

@group(1) @binding(0) var<storage, read> g: array<f32>;
@group(1) @binding(1) var<storage, read> gb: array<f32>;
@group(1) @binding(2) var<storage, read_write> w: array<f32>;
@group(1) @binding(3) var<storage, read_write> b: array<f32>;
@group(1) @binding(4) var<storage, read_write> m: array<f32>;
@group(1) @binding(5) var<storage, read_write> v: array<f32>;

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
    let is_w = e < nw;
    var param: f32;
    var grad: f32;
    if (is_w) {
        param = w[e];
        grad = g[e] / rows + step.l2 * param;
    } else {
        param = b[e - nw];
        grad = gb[e - nw] / rows;
    }
    let m1 = step.beta1 * m[e] + (1.0 - step.beta1) * grad;
    let v1 = step.beta2 * v[e] + (1.0 - step.beta2) * grad * grad;
    m[e] = m1;
    v[e] = v1;
    let wd = select(0.0, step.weight_decay * param, is_w);
    let x = param - step.lr * ((m1 / step.c1) / (sqrt(v1 / step.c2) + step.eps) + wd);
    if (is_w) {
        let t = step.lr * step.l1;
        w[e] = select(x, sign(x) * max(abs(x) - t, 0.0), t > 0.0);
    } else {
        b[e - nw] = x;
    }
}
