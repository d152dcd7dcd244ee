// window_uniform.wgsl's functions where the device reads no windows (GPUs, and devices whose uniform bindings hold
// less than 64 KiB): WIN and V4 are then 0 and none of them is called.

fn window_index() -> u32 {
    return 0u;
}

fn window_span() -> u32 {
    return 1u;
}

fn window_at(e: u32) -> f32 {
    return 0.0;
}

fn operand_quad(local: u32, at: u32, c: u32) -> vec4<f32> {
    return vec4<f32>(0.0);
}

fn window_acc_at(e: u32) -> f32 {
    return 0.0;
}

fn window_acc_put(e: u32, v: f32) {
}
