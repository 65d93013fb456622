#!/usr/bin/env bash
# Side by side: full fine-tuning (SFT) throughput of aha vs a plain PyTorch training loop on
# the same random Qwen2 (~40M params), the same token data (40 x 256 tokens, the first 64 of
# each masked), batch 8 in micro-batches of 4, f32, 2 threads, one warm-up + 4 timed steps.
# PyTorch runs twice: as installed, and with glibc set to keep freed memory (GLIBC_TUNABLES
# below: what aha set for itself before mimalloc, which it also keeps from returning memory).
# aha also times the step's matrix products alone (--roofline: the GEMM bound on a step).
# The three alternate RUNS times (scripts/bench/ab.py: median and range, load checked).
#   benches/sft.sh [MODEL_DIR] [RUNS]    (needs: cargo build --release; python3 with torch + transformers)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.cache/bench_qwen2_40m}"
runs="${2:-3}"
threads=2
export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
[ -f "$dir/sft_data.json" ] || python3 scripts/ref/bench_sft_torch.py --model-dir "$dir" --make-data --steps 0 --batch-size 1 >/dev/null
torch="python3 scripts/ref/bench_sft_torch.py --model-dir $dir --threads $threads"
tuned=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776:glibc.malloc.arena_max=1
python3 scripts/bench/ab.py --runs "$runs" --threads $threads \
  --job "aha=target/release/aha --threads $threads bench sft --model $dir --roofline" \
  --job "pytorch=$torch" \
  --job "pytorch_tuned_alloc=env GLIBC_TUNABLES=$tuned $torch"
