// Copies the rows of one batch, X[perm[perm_offset + i]] and y[...], from one resident chunk of the data set into the
// contiguous batch buffers: X both row-major (xb, for the gradient kernel) and feature-major (xbt[j·rows + i], for
// the logits kernel). Dispatched once per chunk; each copies the rows that live in its chunk, so a shuffled batch
// may draw from every chunk while no binding exceeds the adapter's max_storage_buffer_binding_size.

struct Chunk {
    first_row: u32,
    rows: u32,
}

@group(1) @binding(0) var<storage, read> perm: array<u32>;
@group(1) @binding(1) var<storage, read> xc: array<f32>;
@group(1) @binding(2) var<storage, read> yc: array<u32>;
@group(1) @binding(3) var<uniform> chunk: Chunk;
@group(1) @binding(4) var<storage, read_write> xb: array<f32>;
@group(1) @binding(5) var<storage, read_write> yb: array<u32>;
@group(1) @binding(6) var<storage, read_write> xbt: array<f32>;

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = flat_index(gid, nwg, WG);
    if (e >= step.rows * step.d) {
        return;
    }
    let i = e / step.d;
    let j = e % step.d;
    let row = perm[step.perm_offset + i];
    if (row < chunk.first_row || row - chunk.first_row >= chunk.rows) {
        return;
    }
    let local = row - chunk.first_row;
    let v = xc[local * step.d + j];
    xb[e] = v;
    xbt[j * step.rows + i] = v;
    if (j == 0u) {
        yb[i] = yc[local];
    }
}
