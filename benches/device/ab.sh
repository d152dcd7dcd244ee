#!/usr/bin/env bash
# A/B of two builds of softmax-wgpu on a GPU machine without a Rust toolchain (the device tool's), alternated round
# by round so that drift and noise hit both: .dev/sw-before (the build before a change) and .dev/softmax-wgpu.
#
# Here, from the project's root:
#   git worktree add /tmp/before REV && (cd /tmp/before && cargo build --release)
#   mkdir -p .dev && strip -o .dev/sw-before /tmp/before/target/release/softmax-wgpu
#   bash ../shared/device/prepare.sh      # builds .dev/softmax-wgpu from the working tree, fetches .gl/
# There (the device tool's `run`, carrying .dev and .gl; this file travels with the tracked tree):
#   bash benches/device/ab.sh [ROUNDS] [bench args…]
# Default args: the issue-20 shapes at the batches where a card's kernels are latency-bound and at full batch.
# Tables go to $OUT; a summary (epoch medians and the time in kernels) to stdout. About 40 s a round for the
# defaults on an H200 (data generation and the ceilings included): keep ROUNDS × that within the run's limit.
set -u
. "$(dirname "$0")/env.sh"
rounds=2
case "${1:-}" in '' | *[!0-9]*) ;; *) rounds=$1; shift ;; esac
[ $# -gt 0 ] || set -- --shape 60000,784,10 --shape 200000,256,32 --batch 256 --batch 4096 --batch 0
for i in $(seq "$rounds"); do
  for v in sw-before softmax-wgpu; do
    [ -x ".dev/$v" ] || { echo "no .dev/$v"; continue; }
    # NVIDIA's GL adapter through EGL is listed but cannot be opened on a headless card: Vulkan only.
    timeout 240 "./.dev/$v" bench --device gpu --backend vulkan --epochs 3 --out "$OUT/$v-$i.md" "$@" >/dev/null 2>&1
    echo "## $v round $i rc $?"
    grep -E '^\| [^d-]' "$OUT/$v-$i.md" | cut -d'|' -f2-6
    grep 'in kernels' "$OUT/$v-$i.md"
  done
done
