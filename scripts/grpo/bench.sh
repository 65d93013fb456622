#!/usr/bin/env bash
# Side-by-side: wall time and peak RSS of GRPO steps, aha vs TRL's GRPOTrainer, on CPU, the same
# random Qwen2 model (DeepSeek-R1 tokenizer), the same GSM8K prompts (R1-Zero template),
# G = 8, the same completion length, beta 0.001. Results go to docs/benchmarks.md by hand.
# Usage: scripts/grpo/bench.sh [AHA_BIN] [MAX_TOKENS]
set -euo pipefail
AHA=${1:-target/debug/aha}
MAXT=${2:-64}
W=/tmp/aha-grpo
DATA=../shared/data/gsm8k/train.jsonl
mkdir -p $W
[ -f $W/tiny-qwen2/config.json ] || python3 scripts/grpo/make_tiny_qwen2.py $W/tiny-qwen2
for MB in 16 4; do  # micro-batches: the same update (gradients accumulated exactly), less memory
rm -rf $W/aha-bench
/usr/bin/time -v $AHA grpo --model $W/tiny-qwen2 --dataset $DATA --reward accuracy,format --template r1-zero \
  --group-size 8 --batch-prompts 2 --max-tokens $MAXT --steps 3 --beta 0.001 --lr 1e-6 --micro-batch $MB \
  --samples-every 0 --save-every 0 --out $W/aha-bench 2> $W/aha-bench.time
grep -E "Maximum resident|Elapsed" $W/aha-bench.time
python3 - <<PY
import json
ms=[json.loads(l) for l in open("$W/aha-bench/metrics.jsonl")]
for m in ms: print(json.dumps({"impl":"aha","micro_batch":$MB,"step":m["step"],"wall_s":m["time_total_s"],"sample_s":m["time_sample_s"],"train_s":m["time_train_s"]}))
PY
done
/usr/bin/time -v python3 scripts/grpo/bench_trl.py $W/tiny-qwen2 $DATA --max-tokens $MAXT --steps 3 2> $W/trl-bench.time | grep '^{'
grep -E "Maximum resident|Elapsed" $W/trl-bench.time
