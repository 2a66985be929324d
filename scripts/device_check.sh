#!/usr/bin/env bash
# One prepared run for a lent GPU machine (device time is scarce: everything in one call).
# Here:   ../shared/tools/gpu-carry && deno install && mkdir -p .fixtures && cp -r ../shared/fixtures/hf .fixtures/
# There:  run with carry [".gpu", "node_modules", ".fixtures"]:
#           . .gpu/enter.sh && bash scripts/device_check.sh
# Writes adapter.txt, parity.jsonl (f32, f16, q8, q4), parity-train.jsonl, bench.json and bench.txt under $OUT (or /tmp/webcap-device).
set -u
out=${OUT:-/tmp/webcap-device}
fixtures=${WEBCAP_FIXTURES:-.fixtures/hf}
mkdir -p "$out"
deno eval 'const a = await navigator.gpu.requestAdapter(); console.log(JSON.stringify({ info: a?.info, features: [...(a?.features ?? [])] }))' \
  > "$out/adapter.txt" 2>&1
for d in "$fixtures"/*/; do
  [ -f "$d/reference.safetensors" ] || continue
  timeout 120 deno task parity "$d" --json >> "$out/parity.jsonl" 2>> "$out/parity.err"
  for dtype in f16 q8 q4; do
    timeout 120 deno task parity "$d" --json --dtype "$dtype" >> "$out/parity.jsonl" 2>> "$out/parity.err"
  done
  if [ -f "$d/train-reference.safetensors" ]; then
    timeout 120 deno task parity "$d" --train --json >> "$out/parity-train.jsonl" 2>> "$out/parity.err"
  fi
done
WEBCAP_FIXTURES="$fixtures" timeout 300 deno task bench --kernels --strategies --reps 10 --json "$out/bench.json" > "$out/bench.txt" 2>&1
tail -n 40 "$out/bench.txt"
