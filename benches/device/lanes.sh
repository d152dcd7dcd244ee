#!/usr/bin/env bash
# The one-pass kernel's teams compared on a GPU machine (the device tool's): .dev/softmax-wgpu's bench with
# `--lanes 8`, `16` and `32` (tiles of 64, 32 and 16 rows) and with the default (the device's widest, narrowed for
# large batches: kernels::Team::for_rows), alternated round by round so that drift and noise hit all of them.
#
# Here: bash ../shared/device/prepare.sh (builds .dev/softmax-wgpu from the working tree, fetches .gl/).
# There (the device tool's `run`, carrying .dev and .gl): bash benches/device/lanes.sh [ROUNDS] [bench args…]
# Default args: 60,000 × 784 × 10 at batches 256, 4,096 and full. Tables go to $OUT; a summary to stdout. About
# 20 s a variant and round on an H200: keep ROUNDS × 4 × that within the run's limit.
set -u
. "$(dirname "$0")/env.sh"
rounds=2
case "${1:-}" in '' | *[!0-9]*) ;; *) rounds=$1; shift ;; esac
[ $# -gt 0 ] || set -- --shape 60000,784,10 --batch 256 --batch 4096 --batch 0
[ -x .dev/softmax-wgpu ] || { echo "no .dev/softmax-wgpu"; exit 1; }
for i in $(seq "$rounds"); do
  for lanes in default 8 16 32; do
    flag=()
    [ "$lanes" = default ] || flag=(--lanes "$lanes")
    # NVIDIA's GL adapter through EGL is listed but cannot be opened on a headless card: Vulkan only.
    timeout 240 ./.dev/softmax-wgpu bench --device gpu --backend vulkan --epochs 3 "${flag[@]}" \
      --out "$OUT/lanes-$lanes-$i.md" "$@" >/dev/null 2>&1
    echo "## lanes $lanes round $i rc $?"
    grep -E '^\| [^d-]' "$OUT/lanes-$lanes-$i.md" | cut -d'|' -f2-6
    grep -E 'in kernels|fused_held' "$OUT/lanes-$lanes-$i.md"
  done
done
