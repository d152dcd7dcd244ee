// The windows of the register tiles on CPU adapters (WIN = 1; src/gpu/kernels.rs: `Kernel::windows`), appended to
// logits.wgsl, logits_held.wgsl, grad.wgsl, grad_held.wgsl, forward.wgsl and forward_held.wgsl where the device
// reads them. llvmpipe loads a storage-buffer element whose index differs between lanes (or merely is not a
// constant) lane by lane, with a mask test, a bounds check and a branch for each, but a uniform buffer's with one
// unconditional load per lane. The operand every lane of a tile reads alike — W in the logits and the fused forward
// pass (the tile's classes at feature j), R in the gradient (the tile's classes at row i) — is therefore read
// through a uniform binding: a window of 64 KiB of that buffer, bound at a dynamic offset, one dispatch per window.
// A logits window is `window_span()` features of W (every class), a gradient window as many rows of R; the host
// dispatches the windows in order (window `window.index`), and each carries the tile's sums to the next (through z
// in the logits, through `window_acc` in the gradient), so every sum is the same chain of fma in the same order as
// one walk: bitwise equal (tested). The fused forward pass reads W through one window where all of it fits (its
// softmax needs every feature's sum), else from storage.
//
// Quads (V4 = 1 in the register tiles, where K is a multiple of 4): the tile's 16 classes of W or R are read as four
// vec4 — from a window, or from storage through `operand4`, the same buffer bound as vec4 — instead of 16 floats.
// llvmpipe's lane loop for a storage load fetches every component of one lane in one pass, so a vec4 costs about
// what one float does; the values, and every fma chain, are the same (tested against the walk without windows).

struct Window {
    index: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(1) @binding(20) var<uniform> window: Window;
@group(1) @binding(21) var<uniform> window_data: array<vec4<f32>, 4096>;
// The gradient tiles' sums between windows: [class][feature quad · 4 + q], the bias's quad after the last.
@group(1) @binding(22) var<storage, read_write> window_acc: array<f32>;

// The shared operand (W or R) as quads of floats, for the tiles' storage reads with V4 = 1.
@group(1) @binding(23) var<storage, read> operand4: array<vec4<f32>>;

// Floats of the device's uniform offset alignment (the host's `Kernels::window_span` computes the same).
override WQ: u32 = 8u;

fn window_index() -> u32 {
    return window.index;
}

// Features (logits) or rows (gradient) of a window: as many W or R rows as 16,384 floats hold, a multiple of WQ rows
// so that each window's offset stays on the alignment.
fn window_span() -> u32 {
    return (16384u / step.k) / WQ * WQ;
}

// Element e of the window (e < 16,384).
fn window_at(e: u32) -> f32 {
    return window_data[e / 4u][e % 4u];
}

// Classes c .. c + 4 of row `at` of the shared operand (feature `at` of W, row `at` of R), for the tiles' quads
// (V4 = 1: K and c multiples of 4), clamped to the last quad of classes (never stored past k): through the window
// (its row `local`) where the walk is windowed, else from storage.
fn operand_quad(local: u32, at: u32, c: u32) -> vec4<f32> {
    let cc = min(c, step.k - 4u);
    if (WIN != 0u) {
        return window_data[(local * step.k + cc) / 4u];
    }
    return operand4[(at * step.k + cc) / 4u];
}

fn window_acc_at(e: u32) -> f32 {
    return window_acc[e];
}

fn window_acc_put(e: u32, v: f32) {
    window_acc[e] = v;
}
