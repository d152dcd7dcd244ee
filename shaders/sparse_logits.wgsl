// Z = X·W + b for a batch of sparse rows in CSR form: z[i, c] = b[c] + Σ x_ij·W[j, c] over the row's entries, in
// their (ascending column) order. W is feature-major (W[j, c] at j·k + c), as the update kernel keeps it.
// One invocation per element of Z: the k invocations of a row read the same entries (a broadcast) and k adjacent
// weights per entry. O(nnz·k) work; no workgroup memory, no atomics.

@group(1) @binding(0) var<storage, read> offsets: array<u32>;
@group(1) @binding(1) var<storage, read> indices: array<u32>;
@group(1) @binding(2) var<storage, read> values: array<f32>;
@group(1) @binding(3) var<storage, read> w: array<f32>;
@group(1) @binding(4) var<storage, read> b: array<f32>;
@group(1) @binding(5) var<storage, read_write> z: array<f32>;

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
    var acc = 0.0;
    for (var p = offsets[i]; p < offsets[i + 1u]; p = p + 1u) {
        acc = acc + values[p] * w[indices[p] * step.k + c];
    }
    z[e] = b[c] + acc;
}
