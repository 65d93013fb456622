#!/usr/bin/env bash
# Side by side: batched generation throughput of aha vs transformers' generate, same random
# Qwen2 (~40M params), same prompts, f32, 2 threads, 128 new tokens, batch 1 and 32; the two
# alternated 3 times (scripts/bench/ab.py: median and range, load average checked before each
# run). aha also reports its roofline: the step's FLOPs at a large f32 GEMM's rate, or reading every
# weight once at the memory's streaming rate, whichever takes longer.
#   benches/generate.sh [MODEL_DIR] [RUNS]   (needs: cargo build --release; python3 with torch + transformers)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.cache/bench_qwen2_40m}"
runs="${2:-3}"
threads=2
# The Python script creates the model (seed 0) and prompts.json on first use.
[ -f "$dir/config.json" ] || python3 scripts/ref/bench_generate_hf.py --model-dir "$dir" --batch 1 --new-tokens 2 >/dev/null
export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
python3 scripts/bench/ab.py --runs "$runs" --threads $threads --key batch \
  --metric tokens_per_s --metric roofline_tokens_per_s --metric share_of_roofline --metric gemm_gflop_per_s \
  --metric achieved_gflop_per_s --metric compute_bound_tokens_per_s --metric memory_bound_tokens_per_s \
  --job "aha=target/release/aha --threads $threads bench generate --model $dir --batch 1 --batch 32 --new-tokens 128 --roofline" \
  --job "transformers=python3 scripts/ref/bench_generate_hf.py --model-dir $dir --batch 1 --batch 32 --new-tokens 128 --threads $threads"
