// The exchange between the lanes of a team (fused_held.wgsl's `team_sum`, reduce.wgsl's butterfly) on a device
// without subgroup operations (the GL backend, some downlevel adapters): appended to both when they are compiled for
// such a device (src/gpu/kernels.rs). There the host builds them with SUBGROUPS = 0, which exchanges the lanes' sums
// through workgroup memory and never calls these; they only stand in for team_subgroup.wgsl's functions, whose
// subgroup builtin such a device would refuse to compile.
fn shuffle_xor(v: vec4<f32>, m: u32) -> vec4<f32> {
    return v;
}

fn shuffle_xor1(v: f32, m: u32) -> f32 {
    return v;
}
