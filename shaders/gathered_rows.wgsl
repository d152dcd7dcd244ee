// Where a gathered batch's rows are, for the kernels that read the feature-major copy the gather kernel writes
// (forward.wgsl, logits.wgsl), appended to each when it is compiled (src/gpu/kernels.rs). Each kernel file declares
// the buffer `xt`.

// The invocation's rows: the first of its 4 consecutive rows of the feature-major batch.
struct Rows {
    i0: u32,
}

fn rows_at(i0: u32) -> Rows {
    return Rows(i0);
}

// xt[j, i0..i0 + 4], rows past the batch read as 0 (never stored).
fn x4(rows: Rows, j: u32) -> vec4<f32> {
    let i = rows.i0;
    let base = j * step.rows;
    let n = step.rows;
    return vec4<f32>(
        select(0.0, xt[base + min(i, n - 1u)], i < n),
        select(0.0, xt[base + min(i + 1u, n - 1u)], i + 1u < n),
        select(0.0, xt[base + min(i + 2u, n - 1u)], i + 2u < n),
        select(0.0, xt[base + min(i + 3u, n - 1u)], i + 3u < n),
    );
}
