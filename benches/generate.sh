#!/usr/bin/env bash
# Side by side: batched generation throughput of aha vs transformers' generate, same random
# Qwen2 (~40M params), same prompts, f32, 2 threads, 128 new tokens, batch 1 and 32.
#   benches/generate.sh [MODEL_DIR]     (needs: cargo build --release; python3 with torch + transformers)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.cache/bench_qwen2_40m}"
threads=2
# The Python script creates the model (seed 0) and prompts.json on first use.
[ -f "$dir/config.json" ] || python3 scripts/ref/bench_generate_hf.py --model-dir "$dir" --batch 1 --new-tokens 2 >/dev/null
export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
for b in 1 32; do
  target/release/aha --threads $threads bench generate --model "$dir" --batch $b --new-tokens 128
  python3 scripts/ref/bench_generate_hf.py --model-dir "$dir" --batch $b --new-tokens 128 --threads $threads 2>/dev/null | grep '"impl"'
done
