#!/usr/bin/env bash
# The fixture of `aha_quantized_files_give_llama_cpps_greedy_tokens` (crates/aha-model/tests/gguf.rs):
# a model aha trained, written by `aha quantize` as Q8_0 and Q4_0 GGUF, and llama.cpp's greedy
# tokens on each file (llama-cpp-python, f32 KV cache) for 12 arithmetic prompts.
#
# usage: make_aha_quantized_fixture.sh [MODEL_DIR]
#   MODEL_DIR: an HF model directory aha trained (default: runs/zero/model, from
#   `cargo run --release -- zero --out runs/zero`, the README's first command).
set -euo pipefail
cd "$(dirname "$0")/../.."
model="${1:-runs/zero/model}"
aha=target/release/aha
out=crates/aha-model/tests/fixtures/gguf_aha_quantized
mkdir -p "$out"
cargo build --release -p aha-cli
python3 - > "$out/prompts.json" <<'PY'
import json, random
random.seed(1)
# Problems like the built-in arithmetic task's at difficulty 2 (3 operands 1..9, values 0..30).
prompts = []
while len(prompts) < 12:
    n = 3
    nums = [random.randint(1, 9) for _ in range(n)]
    ops = [random.choice("+-*") for _ in range(n - 1)]
    expr = str(nums[0]) + "".join(f" {o} {x}" for o, x in zip(ops, nums[1:]))
    products_small = all(a * b <= 30 for a, o, b in zip(nums, ops, nums[1:]) if o == "*")
    if products_small and 0 <= eval(expr) <= 30:
        prompts.append(f"Compute {expr}.")
print(json.dumps(prompts))
PY
for ty in q8_0 q4_0; do
  "$aha" quantize --model "$model" --type "$ty" --out "$out/zero-$ty.gguf"
  python3 scripts/gguf/llama_cpp_greedy.py "$out/zero-$ty.gguf" "$out/zero-$ty.llama_cpp_greedy.json" 24 \
    --prompts="$out/prompts.json"
done
sha256sum "$model/model.safetensors" > "$out/source_model.sha256"
