// The gradient sums of a sparse batch, added to G and g_b: G += Xᵀ·R and g_b += colsum(R), over the columns the batch
// touches only. The batch's transpose comes without its empty columns: `cols` lists the touched columns, `ptr` where
// each one's entries start (rows ascending), so step.d here is the number of touched columns, not the model's width.
// One invocation per (touched column, class), and k more for g_b: each is one sum in a fixed order, so the result is
// bitwise reproducible with no atomics. G and g_b hold zeros outside what this step has added (the sparse update
// zeroes what it consumes), so adding is right for the first part of a step as for the next.

@group(1) @binding(0) var<storage, read> cols: array<u32>;
@group(1) @binding(1) var<storage, read> ptr: array<u32>;
@group(1) @binding(2) var<storage, read> col_rows: array<u32>;
@group(1) @binding(3) var<storage, read> col_vals: array<f32>;
@group(1) @binding(4) var<storage, read> r: array<f32>;
@group(1) @binding(5) var<storage, read_write> g: array<f32>;
@group(1) @binding(6) var<storage, read_write> gb: array<f32>;

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = flat_index(gid, nwg, WG);
    let k = step.k;
    let touched = step.d;
    if (e < touched * k) {
        let t = e / k;
        let c = e % k;
        var acc = 0.0;
        for (var p = ptr[t]; p < ptr[t + 1u]; p = p + 1u) {
            acc = acc + col_vals[p] * r[col_rows[p] * k + c];
        }
        let at = cols[t] * k + c;
        g[at] = g[at] + acc;
    } else if (e < touched * k + k) {
        let c = e - touched * k;
        var acc = 0.0;
        for (var i = 0u; i < step.rows; i = i + 1u) {
            acc = acc + r[i * k + c];
        }
        gb[c] = gb[c] + acc;
    }
}
