// Whether a device's subgroup shuffles reach the invocations fused_held.wgsl's teams assume (team_subgroup.wgsl):
// in a workgroup of WG invocations, for each m = 1, 2, … < LANES, invocation t writes the workgroup index of the
// invocation subgroupShuffleXor(·, m) reaches from it, which must be t ^ m (a team of LANES lanes within one
// subgroup, lanes in index order). Run once per device, on first use (src/gpu/ops.rs, `team`); its CPU mirror is t ^ m.

override WG: u32 = 512u;
override LANES: u32 = 8u;

@group(0) @binding(0) var<storage, read_write> reached: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) t: u32) {
    var i = 0u;
    for (var m = 1u; m < LANES; m = m << 1u) {
        reached[i * WG + t] = subgroupShuffleXor(t, m);
        i = i + 1u;
    }
}
