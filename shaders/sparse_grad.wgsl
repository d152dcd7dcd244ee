// The gradient sums of a sparse batch: G = Xᵀ·R and g_b = colsum(R), from the batch's transposed layout (each
// column's entries with their batch row, rows ascending). One invocation per element of G (and k more for g_b):
// g[j, c] = Σ x_ij·r[i, c] over column j's entries in row order, a fixed order, so the result is bitwise
// reproducible with no atomics. Columns no row of the batch touches get 0 (or keep their sums when adding).
// With bit 0 of step.flags set the batch's sums are added to what G and g_b hold (a step in several parts).

@group(1) @binding(0) var<storage, read> col_ptr: array<u32>;
@group(1) @binding(1) var<storage, read> col_rows: array<u32>;
@group(1) @binding(2) var<storage, read> col_vals: array<f32>;
@group(1) @binding(3) var<storage, read> r: array<f32>;
@group(1) @binding(4) var<storage, read_write> g: array<f32>;
@group(1) @binding(5) var<storage, read_write> gb: array<f32>;

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = flat_index(gid, nwg, WG);
    let k = step.k;
    let add = (step.flags & 1u) != 0u;
    if (e < step.d * k) {
        let j = e / k;
        let c = e % k;
        var acc = 0.0;
        for (var p = col_ptr[j]; p < col_ptr[j + 1u]; p = p + 1u) {
            acc = acc + col_vals[p] * r[col_rows[p] * k + c];
        }
        g[e] = select(acc, g[e] + acc, add);
    } else if (e < step.d * k + k) {
        let c = e - step.d * k;
        var acc = 0.0;
        for (var i = 0u; i < step.rows; i = i + 1u) {
            acc = acc + r[i * k + c];
        }
        gb[c] = select(acc, gb[c] + acc, add);
    }
}
