// The plain gradient step over the columns a sparse step touched: W[j, :] ← W[j, :] − lr·(G[j, :]/rows + l2·W[j, :])
// for the j in `cols` (step.d of them), b ← b − lr·g_b/rows, and the sums consumed are zeroed, so that G and g_b hold
// zeros again for the next step's sparse gradient to add to. With l2 = 0 the untouched columns do not move (their
// G is zero), so this is the whole update; with l2 > 0 the dense update runs first and this only zeroes (flags bit 1).

@group(1) @binding(0) var<storage, read> cols: array<u32>;
@group(1) @binding(1) var<storage, read_write> g: array<f32>;
@group(1) @binding(2) var<storage, read_write> gb: array<f32>;
@group(1) @binding(3) var<storage, read_write> w: array<f32>;
@group(1) @binding(4) var<storage, read_write> b: array<f32>;

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = flat_index(gid, nwg, WG);
    let k = step.k;
    let apply = (step.flags & 2u) == 0u;
    let rows = f32(step.rows);
    if (e < step.d * k) {
        let at = cols[e / k] * k + e % k;
        if (apply) {
            w[at] = w[at] - step.lr * (g[at] / rows + step.l2 * w[at]);
        }
        g[at] = 0.0;
    } else if (e < step.d * k + k) {
        let c = e - step.d * k;
        if (apply) {
            b[c] = b[c] - step.lr * (gb[c] / rows);
        }
        gb[c] = 0.0;
    }
}
