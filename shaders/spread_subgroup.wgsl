// Spreading the register tiles' shared operand over a subgroup (SB = the subgroup size, on CPU adapters whose
// subgroups hold their lanes in index order: src/gpu/kernels.rs, `Kernels::with_windows`), appended to logits.wgsl,
// logits_held.wgsl, grad.wgsl and grad_held.wgsl where the device has subgroup operations. Every lane of a tile
// reads the same 16 classes of W (the logits, at feature j) or R (the gradient, at row i); llvmpipe loads an element
// whose index is not a constant lane by lane, so 16 loads in each lane cost 16 × (subgroup size) scalar loads. With
// SB each lane loads only 16 / SB of them (lane l: classes c0 + l · 16 / SB ..) and takes the others from the lane
// that loaded them: on llvmpipe with AVX2 a shuffle is one permute of the 8-lane vector. The values, and every fma
// chain, are the same: bitwise equal to the tile without it (tested).

// Class l (0..16) of the tile's row of the shared operand: component l % (16 / SB) of what lane l / (16 / SB)
// loaded (`v`, this lane's classes).
fn spread(v: vec4<f32>, l: u32) -> f32 {
    let per = 16u / max(SB, 1u);
    return subgroupShuffle(v[l % per], l / per);
}
