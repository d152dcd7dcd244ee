// The exchange between the lanes of a team (fused_held.wgsl's `team_sum` over a row's lanes, reduce.wgsl's butterfly
// over an element's), on a device with subgroup operations: appended to both when they are compiled for such a
// device (src/gpu/kernels.rs), where the host has checked that lane t ^ m of a team is the subgroup's lane
// (subgroup_invocation_id) ^ m.

// v of the invocation whose index in the workgroup is this one's ^ m (m < TEAM).
fn shuffle_xor(v: vec4<f32>, m: u32) -> vec4<f32> {
    return subgroupShuffleXor(v, m);
}

// The same for one float (reduce.wgsl's lanes): one shuffle, not four.
fn shuffle_xor1(v: f32, m: u32) -> f32 {
    return subgroupShuffleXor(v, m);
}
