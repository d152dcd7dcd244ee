// The one-pass kernel's exchange between the lanes of a row's team (fused_held.wgsl's `team_sum`), on a device with
// subgroup operations: appended to fused_held.wgsl when it is compiled for such a device (src/gpu/kernels.rs), where
// the host has checked that lane t ^ m of a team is the subgroup's lane (subgroup_invocation_id) ^ m.

// v of the invocation whose index in the workgroup is this one's ^ m (m < TEAM).
fn shuffle_xor(v: vec4<f32>, m: u32) -> vec4<f32> {
    return subgroupShuffleXor(v, m);
}
