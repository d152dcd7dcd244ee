// Adds the per-segment partial sums fused_held.wgsl (or grad_tile.wgsl split over rows) wrote into the gradient
// sums (G, g_b; added to what they hold with flags bit 0) and the batch's (loss, hits) into its slot of the sums
// (with METRICS). CPU mirror: the last loop of cpu::fused (the same sums; numerics::tolerance bounds the order).
//
// A team of TEAM adjacent invocations per partial element f = class · (d + 1) + feature (the bias as feature d), 64
// elements a workgroup: lane p adds segments p, p + TEAM, p + 2 · TEAM, … in order, eight loads in flight, and the
// lanes' sums are then added by the butterfly of fused_held.wgsl's teams (at step m = 1, 2, 4 each lane adds lane
// p ^ m's sum to its own) through subgroup shuffles (SUBGROUPS = 1) or workgroup memory — the same additions either
// way. So no invocation walks more than ⌈segments / TEAM⌉ segments (118 of 938 at 60,000 × 784 × 10, full batch,
// with 8 lanes, where one invocation an element walked all 938). Each load instruction reads, for the 64 / (32 /
// TEAM) elements of a warp's teams, adjacent words of TEAM segments' partials (32-byte sectors with TEAM = 8). With
// TEAM = 1 (CPU adapters) an invocation adds every segment in order, as before the teams. A fixed order either way:
// the sums are bitwise reproducible. The first lane of the element past the last sums the metrics. With TRAIN = 0
// (an evaluation) only the metrics are summed.

override SEGS: u32 = 1024u;
override TRAIN: u32 = 1u;
// Rows of the units the segments are made of: fused_held.wgsl's tiles (its RT: 64, 32 or 16 rows), or grad_tile.wgsl's
// 256.
override UNIT: u32 = 64u;
// 0 where the partials come from grad_tile.wgsl (no loss or hits: metrics.wgsl sums them).
override METRICS: u32 = 1u;
// Lanes per element (1, 2, 4 or 8: kernels::Team, as fused_held.wgsl's), and whether they exchange through
// subgroup shuffles (team_subgroup.wgsl) or workgroup memory.
override TEAM: u32 = 1u;
override SUBGROUPS: u32 = 0u;

// Elements a workgroup.
const EW: u32 = 64u;
override WG: u32 = EW * TEAM;

@group(1) @binding(0) var<storage, read> gp: array<f32>;
@group(1) @binding(1) var<storage, read> mp: array<f32>;
@group(1) @binding(2) var<storage, read_write> g: array<f32>;
@group(1) @binding(3) var<storage, read_write> gb: array<f32>;
@group(1) @binding(4) var<storage, read_write> sums: array<f32>;

// The lanes' running sums, exchanged without subgroups (invocation t's at t; 64 elements × at most 8 lanes).
var<workgroup> lanes: array<f32, 512>;

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let f = (wid.x + wid.y * nwg.x) * EW + t / TEAM;
    let p = t % TEAM;
    let d = step.d;
    let k = step.k;
    let segs = segments(step.rows, UNIT, SEGS).y;
    let stride = d + 1u;
    let items = select(0u, k * stride, TRAIN != 0u);
    if (items > 0u) {
        // Elements past the last repeat it (computed, never stored), so that every lane reaches the exchange.
        let e = min(f, items - 1u);
        let j = e % stride;
        let c = e / stride;
        var acc = 0.0;
        // Eight of the lane's segments' loads in flight before their additions, which stay in segment order.
        let at = c * stride + j;
        let sk = k * stride;
        var s = p;
        for (; s + 7u * TEAM < segs; s = s + 8u * TEAM) {
            let q = s * sk + at;
            let p0 = gp[q];
            let p1 = gp[q + TEAM * sk];
            let p2 = gp[q + 2u * TEAM * sk];
            let p3 = gp[q + 3u * TEAM * sk];
            let p4 = gp[q + 4u * TEAM * sk];
            let p5 = gp[q + 5u * TEAM * sk];
            let p6 = gp[q + 6u * TEAM * sk];
            let p7 = gp[q + 7u * TEAM * sk];
            acc = acc + p0;
            acc = acc + p1;
            acc = acc + p2;
            acc = acc + p3;
            acc = acc + p4;
            acc = acc + p5;
            acc = acc + p6;
            acc = acc + p7;
        }
        for (; s < segs; s = s + TEAM) {
            acc = acc + gp[s * sk + at];
        }
        // The butterfly over the element's lanes: every lane ends with the element's sum.
        for (var m = 1u; m < TEAM; m = m << 1u) {
            if (SUBGROUPS != 0u) {
                acc = acc + shuffle_xor1(acc, m);
            } else {
                lanes[t] = acc;
                workgroupBarrier();
                acc = acc + lanes[t ^ m];
                workgroupBarrier();
            }
        }
        if (f < items && p == 0u) {
            let add = (step.flags & 1u) != 0u;
            if (j == d) {
                gb[c] = select(acc, gb[c] + acc, add);
            } else {
                let w = j * k + c;
                g[w] = select(acc, g[w] + acc, add);
            }
        }
    }
    if (f == items && p == 0u && METRICS != 0u) {
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
    }
}
