// The adapter's streaming-read ceiling, for `bench`: every invocation adds up a strided share of a large buffer of
// floats (consecutive invocations read consecutive floats — one vector load per round on SIMD hardware and on
// llvmpipe, which keeps a vec4 as four registers and would gather a vec4 array — with four independent loads in
// flight) and writes its sum, so the reads cannot be optimised away. step.rows holds the buffer's length in floats
// and step.d how many times the share is read (passes, so that one dispatch lasts long enough to time on a card:
// one pass over 256 MiB is ~60 µs on an H200; the host makes the buffer larger than the caches it knows of).
// Mirror: cpu::ceiling_read.

override WG: u32 = 64u;

@group(1) @binding(0) var<storage, read> data: array<f32>;
@group(1) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = nwg.x * WG;
    var a0 = 0.0;
    var a1 = 0.0;
    var a2 = 0.0;
    var a3 = 0.0;
    for (var p = 0u; p < step.d; p = p + 1u) {
        var i = gid.x;
        for (; i + 3u * total < step.rows; i = i + 4u * total) {
            a0 = a0 + data[i];
            a1 = a1 + data[i + total];
            a2 = a2 + data[i + 2u * total];
            a3 = a3 + data[i + 3u * total];
        }
        for (; i < step.rows; i = i + total) {
            a0 = a0 + data[i];
        }
    }
    out[gid.x] = (a0 + a1) + (a2 + a3);
}
