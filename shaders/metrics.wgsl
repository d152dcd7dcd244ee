// Sums the per-row (loss, correct) pairs that softmax wrote for one batch into out[2·slot], out[2·slot + 1], so a
// whole epoch's loss and accuracy stay on the device and are read back once. One workgroup; lanes sum fixed strides
// of rows in index order, then a fixed tree: deterministic.

@group(1) @binding(0) var<storage, read> stats: array<f32>;
@group(1) @binding(1) var<storage, read_write> out: array<f32>;

var<workgroup> loss_part: array<f32, 256>;
var<workgroup> hit_part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    var loss = 0.0;
    var hits = 0.0;
    for (var i = lid; i < step.rows; i = i + 256u) {
        loss = loss + stats[2u * i];
        hits = hits + stats[2u * i + 1u];
    }
    loss_part[lid] = loss;
    hit_part[lid] = hits;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half = half / 2u) {
        if (lid < half) {
            loss_part[lid] = loss_part[lid] + loss_part[lid + half];
            hit_part[lid] = hit_part[lid] + hit_part[lid + half];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[2u * step.slot] = loss_part[0];
        out[2u * step.slot + 1u] = hit_part[0];
    }
}
