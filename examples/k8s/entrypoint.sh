#!/bin/sh
# Runs `deno task caption` with the arguments given. Points the Vulkan loader at the NVIDIA ICD
# where GKE installs the driver (other clusters' NVIDIA runtime mounts it where the loader looks).
set -eu
gke_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$gke_icd" ]; then export VK_DRIVER_FILES="$gke_icd"; fi
exec deno run -A /app/examples/caption.ts "$@"
