#!/usr/bin/env bash
# One prepared run for a lent GPU machine (device time is scarce: everything in one call).
# Here:   ../shared/tools/gpu-carry && deno install && mkdir -p .fixtures && cp -r ../shared/fixtures/hf .fixtures/
#         && cp ../shared/tools/torch_caption_bench.py .fixtures/
# There:  run with carry [".gpu", "node_modules", ".fixtures"]:
#           . .gpu/enter.sh && bash scripts/device_check.sh [speed]
# Writes adapter.txt, parity.jsonl (f32, f16, q8, q4), parity-train.jsonl, bench.json and bench.txt under $OUT (or /tmp/webcap-device),
# then, on the same GPU, webcap at real sizes (webcap.json: `bench --caption --real --all`, every strategy of ViT-GPT2
# and BLIP-base, where it exists, else the fixture models' caption rows, and `--train --train-real`) and PyTorch (torch.json: torch_caption_bench.py) with
# side_by_side.md, the section scripts/side_by_side.ts makes of the two. `speed`: only this second part.
# Back here, from the repository root, append that section to BENCHMARKS.md:
#   deno run -A scripts/side_by_side.ts FILES_AT/webcap.json FILES_AT/torch.json
set -u
out=${OUT:-/tmp/webcap-device}
fixtures=${WEBCAP_FIXTURES:-.fixtures/hf}
mkdir -p "$out"
deno eval 'const a = await navigator.gpu.requestAdapter(); console.log(JSON.stringify({ info: a?.info, features: [...(a?.features ?? [])] }))' \
  > "$out/adapter.txt" 2>&1
if [ "${1:-}" != speed ]; then
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
fi
# webcap and PyTorch side by side, same GPU, same call
caption=(--caption)
[ -f bench/real_caption.ts ] && caption=(--caption --real --all)
WEBCAP_FIXTURES="$fixtures" timeout 300 deno task bench "${caption[@]}" --train --train-real --reps 5 \
  --json "$out/webcap.json" > "$out/webcap.txt" 2>&1
torch_bench=${WEBCAP_TORCH_BENCH:-.fixtures/torch_caption_bench.py}
[ -f "$torch_bench" ] || torch_bench=../shared/tools/torch_caption_bench.py
timeout 300 python3 "$torch_bench" "$out/torch.json" > "$out/torch.txt" 2>&1
if [ -f "$out/webcap.json" ] && [ -f "$out/torch.json" ]; then
  deno run -A scripts/side_by_side.ts "$out/webcap.json" "$out/torch.json" > "$out/side_by_side.md" 2>&1
  cat "$out/side_by_side.md"
else
  echo "side by side: missing $out/webcap.json or $out/torch.json (see webcap.txt, torch.txt)"
  tail -n 20 "$out/webcap.txt" "$out/torch.txt"
fi
