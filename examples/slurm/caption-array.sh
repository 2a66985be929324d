#!/bin/bash
# A Slurm job array: 8 tasks caption the WebDataset shards of a shared folder, each its share of
# the samples (by a hash of the key; a task reads the headers of the other samples, not their
# images) into its own file. A task that is preempted or fails is requeued and skips what it
# wrote. SHARDS, OUT and MODEL may be set in the environment. Submit from the repository's root:
#   mkdir -p logs && sbatch examples/slurm/caption-array.sh
#   sbatch --dependency=afterok:JOBID --wrap "deno task caption merge out/part-*.jsonl \
#     --expect 'data/shards/{00000..00063}.tar' --output out/results.json --format coco"
#SBATCH --job-name=webcap
#SBATCH --array=0-7
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=logs/webcap-%A_%a.log
set -euo pipefail

DEFAULT_SHARDS='data/shards/{00000..00063}.tar' # a range webcap expands itself
SHARDS=${SHARDS:-$DEFAULT_SHARDS}
OUT=${OUT:-out}
MODEL=${MODEL:-nlpconnect/vit-gpt2-image-captioning}
mkdir -p "$OUT"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

# SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT say which share is this task's; arguments of
# the script are added to the command (e.g. --max-new-tokens 30).
exec deno run -A examples/caption.ts "$SHARDS" \
  --output "$OUT/part-${SLURM_ARRAY_TASK_ID}.jsonl" \
  --model "$MODEL" \
  --batch-size 32 --num-beams 3 --progress "$@"
