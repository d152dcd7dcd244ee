# Sourced by the scripts beside it on a GPU machine without a Rust toolchain (the device tool's): $OUT for the
# tables, the Vulkan loader and GL libraries from .gl/ (../shared/device/prepare.sh fetches them here), NVIDIA's ICD
# and EGL vendor files where the machine has them. DEVICE_DRY=1 skips the installation (a dry run here).
OUT=${OUT:-./gpu-results}
mkdir -p "$OUT"
if [ -z "${DEVICE_DRY:-}" ]; then
  for f in .gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
  ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
