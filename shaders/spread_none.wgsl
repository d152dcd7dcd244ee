// spread_subgroup.wgsl's function where the device has no subgroup operations or reads no windows (GPUs, GL): SB
// is then 0 and it is never called.

fn spread(v: vec4<f32>, l: u32) -> f32 {
    return 0.0;
}
