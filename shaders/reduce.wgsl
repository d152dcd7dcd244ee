// Adds the per-segment partial sums fused_held.wgsl (or grad_tile.wgsl split over rows) wrote, in segment order,
// into the gradient sums (G, g_b; added to what they hold with flags bit 0) and the batch's (loss, hits) into its
// slot of the sums (with METRICS). CPU mirror: the last loop of cpu::fused.
//
// One invocation per partial element: f = class · (d + 1) + feature (the bias as feature d), so adjacent
// invocations read adjacent words of each segment's partial (coalesced); each loops over the segments (at most
// SEGS) in order — a fixed order, so the sums are bitwise reproducible. The last invocation sums the metrics. With
// TRAIN = 0 (an evaluation) only the metrics are summed.

override WG: u32 = 64u;
override SEGS: u32 = 1024u;
override TRAIN: u32 = 1u;
// Rows of the units the segments are made of: fused_held.wgsl's 64-row tiles, or grad_tile.wgsl's 256.
override UNIT: u32 = 64u;
// 0 where the partials come from grad_tile.wgsl (no loss or hits: metrics.wgsl sums them).
override METRICS: u32 = 1u;

@group(1) @binding(0) var<storage, read> gp: array<f32>;
@group(1) @binding(1) var<storage, read> mp: array<f32>;
@group(1) @binding(2) var<storage, read_write> g: array<f32>;
@group(1) @binding(3) var<storage, read_write> gb: array<f32>;
@group(1) @binding(4) var<storage, read_write> sums: array<f32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let f = flat_index(gid, nwg, WG);
    let d = step.d;
    let k = step.k;
    let segs = segments(step.rows, UNIT, SEGS).y;
    let stride = d + 1u;
    let items = select(0u, k * stride, TRAIN != 0u);
    if (f == items && METRICS != 0u) {
        var l = 0.0;
        var h = 0.0;
        var s = 0u;
        for (; s + 4u <= segs; s = s + 4u) {
            let m0 = vec2<f32>(mp[2u * s], mp[2u * s + 1u]);
            let m1 = vec2<f32>(mp[2u * s + 2u], mp[2u * s + 3u]);
            let m2 = vec2<f32>(mp[2u * s + 4u], mp[2u * s + 5u]);
            let m3 = vec2<f32>(mp[2u * s + 6u], mp[2u * s + 7u]);
            l = l + m0.x; h = h + m0.y;
            l = l + m1.x; h = h + m1.y;
            l = l + m2.x; h = h + m2.y;
            l = l + m3.x; h = h + m3.y;
        }
        for (; s < segs; s = s + 1u) {
            l = l + mp[2u * s];
            h = h + mp[2u * s + 1u];
        }
        sums[2u * step.slot] = l;
        sums[2u * step.slot + 1u] = h;
        return;
    }
    if (f >= items) {
        return;
    }
    let j = f % stride;
    let c = f / stride;
    var acc = 0.0;
    // Eight segments' loads in flight before their additions, which stay in segment order (the same sums).
    let at = c * stride + j;
    let sk = k * stride;
    var s = 0u;
    for (; s + 8u <= segs; s = s + 8u) {
        let p = s * sk + at;
        let p0 = gp[p];
        let p1 = gp[p + sk];
        let p2 = gp[p + 2u * sk];
        let p3 = gp[p + 3u * sk];
        let p4 = gp[p + 4u * sk];
        let p5 = gp[p + 5u * sk];
        let p6 = gp[p + 6u * sk];
        let p7 = gp[p + 7u * sk];
        acc = acc + p0;
        acc = acc + p1;
        acc = acc + p2;
        acc = acc + p3;
        acc = acc + p4;
        acc = acc + p5;
        acc = acc + p6;
        acc = acc + p7;
    }
    for (; s < segs; s = s + 1u) {
        acc = acc + gp[s * sk + at];
    }
    let add = (step.flags & 1u) != 0u;
    if (j == d) {
        gb[c] = select(acc, gb[c] + acc, add);
    } else {
        let e = j * k + c;
        g[e] = select(acc, g[e] + acc, add);
    }
}
