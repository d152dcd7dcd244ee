// Where a batch's rows are held, for the kernels that read them in place (forward_held.wgsl, logits_held.wgsl,
// fused_held.wgsl), appended to each when it is compiled (src/gpu/kernels.rs): row perm[perm_offset + i] of the
// held set, in the chunk slot that holds it. Each kernel file declares `SLOTS`, the chunks x0..x3, `perm` and `held`.

// Element `at` of the chunk in slot `c`.
fn xs(c: u32, at: u32) -> f32 {
    if (SLOTS == 1u || c == 0u) {
        return x0[at];
    } else if (SLOTS == 2u || c == 1u) {
        return x1[at];
    } else if (SLOTS == 3u || c == 2u) {
        return x2[at];
    }
    return x3[at];
}

// Where the batch's row i is held, packed in one word (for workgroup memory): its chunk slot << 30 | its first
// element there.
fn held_at(i: u32) -> u32 {
    let h = held_row(perm[step.perm_offset + i], held.chunk_rows, step.d);
    return (h.x << 30u) | h.y;
}

// Element `j` of the row held at `at` (held_at's packing), from its chunk slot.
fn x_at(at: u32, j: u32) -> f32 {
    return xs(at >> 30u, (at & 0x3fffffffu) + j);
}

// The invocation's 4 rows: each one's slot and first element there. Rows past the batch repeat the last row
// (computed, never stored).
struct Rows {
    s0: vec2<u32>,
    s1: vec2<u32>,
    s2: vec2<u32>,
    s3: vec2<u32>,
}

fn rows_at(i0: u32) -> Rows {
    let n = step.rows;
    return Rows(
        held_row(perm[step.perm_offset + min(i0, n - 1u)], held.chunk_rows, step.d),
        held_row(perm[step.perm_offset + min(i0 + 1u, n - 1u)], held.chunk_rows, step.d),
        held_row(perm[step.perm_offset + min(i0 + 2u, n - 1u)], held.chunk_rows, step.d),
        held_row(perm[step.perm_offset + min(i0 + 3u, n - 1u)], held.chunk_rows, step.d),
    );
}

// Feature j of the invocation's 4 rows.
fn x4(rows: Rows, j: u32) -> vec4<f32> {
    return vec4<f32>(xs(rows.s0.x, rows.s0.y + j), xs(rows.s1.x, rows.s1.y + j), xs(rows.s2.x, rows.s2.y + j),
        xs(rows.s3.x, rows.s3.y + j));
}
