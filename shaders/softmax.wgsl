// S = softmax(Z) row-wise, with the row maximum subtracted before exp so that no exp overflows.
// Also writes, per row, the cross-entropy −log S_y computed as logsumexp(z) − z_y (never log of a rounded-to-zero
// probability) times the row's weight — the weight of class y times its sample weight, each 1 when absent — and
// whether argmax(z) == y (first maximum on ties), as stats[2i] and stats[2i + 1].
// One invocation per row: the cost is O(rows·k), small beside the O(rows·d·k) products around it.
// With TRAIN = 1 (a training step's) it writes the residual R = (S − Y)·w into `s` in place of S — Y one-hot from the
// row's label, w its weight as above: ∂L/∂z for the (weighted) cross-entropy over softmax — in the expression and
// order forward_tile.wgsl and fused_held.wgsl use, (e · inv − [c = y]) · w, so the three give the same bits. A step
// then needs no separate pass over S (the residual kernel this replaced: one dispatch, and a read and a write of
// S, fewer). CPU mirror: cpu::softmax, then cpu::residual.

@group(1) @binding(0) var<storage, read> z: array<f32>;
@group(1) @binding(1) var<storage, read> y: array<u32>;
@group(1) @binding(2) var<storage, read_write> s: array<f32>;
@group(1) @binding(3) var<storage, read_write> stats: array<f32>;
@group(1) @binding(4) var<storage, read> cw: array<f32>;
// Sample weights of the batch's rows from sw_offset (read only with flags bit 3; 1 otherwise).
@group(1) @binding(5) var<storage, read> sw: array<f32>;

fn row_weight(i: u32) -> f32 {
    return select(1.0, sw[step.sw_offset + i], (step.flags & 8u) != 0u);
}

override WG: u32 = 64u;
// 1: write R instead of S (above).
override TRAIN: u32 = 0u;

@compute @workgroup_size(WG)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg, WG);
    if (i >= step.rows) {
        return;
    }
    let base = i * step.k;
    var m = z[base];
    var arg = 0u;
    for (var c = 1u; c < step.k; c = c + 1u) {
        let v = z[base + c];
        if (v > m) {
            m = v;
            arg = c;
        }
    }
    var sum = 0.0;
    for (var c = 0u; c < step.k; c = c + 1u) {
        let e = exp(z[base + c] - m);
        s[base + c] = e;
        sum = sum + e;
    }
    let inv = 1.0 / sum;
    let label = y[i];
    let wy = cw[label] * row_weight(i);
    for (var c = 0u; c < step.k; c = c + 1u) {
        if (TRAIN != 0u) {
            s[base + c] = (s[base + c] * inv - select(0.0, 1.0, label == c)) * wy;
        } else {
            s[base + c] = s[base + c] * inv;
        }
    }
    stats[2u * i] = ((m + log(sum)) - z[base + label]) * wy;
    stats[2u * i + 1u] = select(0.0, 1.0, arg == label);
}
