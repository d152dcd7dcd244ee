// The one-pass kernel's exchange between the lanes of a row's team (fused_held.wgsl's `team_sum`) on a device
// without subgroup operations (the GL backend, some downlevel adapters): appended to fused_held.wgsl when it is
// compiled for such a device (src/gpu/kernels.rs). There the host builds it with SUBGROUPS = 0, which exchanges
// the lanes' sums through workgroup memory and never calls this; it only stands in for team_subgroup.wgsl's
// function, whose subgroup builtin such a device would refuse to compile.
fn shuffle_xor(v: vec4<f32>, m: u32) -> vec4<f32> {
    return v;
}
