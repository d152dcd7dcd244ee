// Copies the rows of one batch, X[perm[perm_offset + i]] and y[...], from one resident chunk of the data set into the
// contiguous batch buffers. Dispatched once per chunk; each copies the rows that live in its chunk, so a shuffled batch
// may draw from every chunk while no binding exceeds the adapter's max_storage_buffer_binding_size.
//
// Writes X both row-major (xb[i·d + j], for the gradient kernel) and feature-major (xbt[j·rows + i], for the logits
// kernel). Measured on llvmpipe: one pass writing both beats a second pass that walks rows to write xbt contiguously
// (the strided reads cost as much as the strided writes they save, and the extra pass costs its launches).

struct Chunk {
    first_row: u32,
    rows: u32,
}

override WG: u32 = 64u;

@group(1) @binding(0) var<storage, read> perm: array<u32>;
@group(1) @binding(1) var<storage, read> xc: array<f32>;
@group(1) @binding(2) var<storage, read> yc: array<u32>;
@group(1) @binding(3) var<uniform> chunk: Chunk;
@group(1) @binding(4) var<storage, read_write> xb: array<f32>;
@group(1) @binding(5) var<storage, read_write> yb: array<u32>;
@group(1) @binding(6) var<storage, read_write> xbt: array<f32>;

// A 2-D grid with no integer division (which SIMD hardware and llvmpipe do one lane at a time): x walks the
// features, y the batch's rows, each invocation looping over rows in steps of the grid's height (at most 64: a
// copy wants few, long-lived invocations, and a software adapter pays for every workgroup it launches).
@compute @workgroup_size(WG)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let j = gid.x;
    if (j >= step.d) {
        return;
    }
    for (var i = gid.y; i < step.rows; i = i + nwg.y) {
        let row = perm[step.perm_offset + i];
        if (row >= chunk.first_row && row - chunk.first_row < chunk.rows) {
            let local = row - chunk.first_row;
            let v = xc[local * step.d + j];
            xb[i * step.d + j] = v;
            xbt[j * step.rows + i] = v;
            if (j == 0u) {
                yb[i] = yc[local];
            }
        }
    }
}
