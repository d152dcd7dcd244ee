// The adapter's arithmetic ceiling, for `bench`: every invocation runs step.rows rounds of 8 independent vec4
// fused multiply-adds (64 flops a round) on values it cannot predict, and writes the result.
// Mirror: cpu::ceiling_fma.

override WG: u32 = 64u;

@group(1) @binding(0) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let seed = f32(gid.x % 7u) * 1e-3;
    let m = vec4<f32>(0.999, 0.998, 0.997, 0.996);
    let c = vec4<f32>(seed);
    var a0 = vec4<f32>(seed);
    var a1 = a0 + 1.0;
    var a2 = a0 + 2.0;
    var a3 = a0 + 3.0;
    var a4 = a0 + 4.0;
    var a5 = a0 + 5.0;
    var a6 = a0 + 6.0;
    var a7 = a0 + 7.0;
    for (var r = 0u; r < step.rows; r = r + 1u) {
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);
    }
    let s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
    out[gid.x] = (s.x + s.y) + (s.z + s.w);
}
