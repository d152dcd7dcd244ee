// Plain gradient step from gradient sums over step.rows rows: W ← W − lr·(G/rows + l2·W), then the L1 proximal step
// W ← sign(W)·max(|W| − lr·l1, 0) (exact zeros), and b ← b − lr·g_b/rows (the bias is not penalised). One invocation
// per parameter; elements [0, d·k) are W, [d·k, d·k + k) are b.

@group(1) @binding(0) var<storage, read> g: array<f32>;
@group(1) @binding(1) var<storage, read> gb: array<f32>;
@group(1) @binding(2) var<storage, read_write> w: array<f32>;
@group(1) @binding(3) var<storage, read_write> b: array<f32>;

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = flat_index(gid, nwg, WG);
    let nw = step.d * step.k;
    let rows = f32(step.rows);
    if (e < nw) {
        let v = w[e] - step.lr * (g[e] / rows + step.l2 * w[e]);
        let t = step.lr * step.l1;
        w[e] = select(v, sign(v) * max(abs(v) - t, 0.0), t > 0.0);
    } else if (e < nw + step.k) {
        let c = e - nw;
        b[c] = b[c] - step.lr * (gb[c] / rows);
    }
}
