#!/usr/bin/env bash
# Set up, then answer a question about the shipped sample article (indexing it on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
if [ $# -eq 0 ]; then set -- "Who opposed the ABM amendment?"; fi
exec .venv/bin/newsbot ask "$@"
