#!/usr/bin/env bash
# Create .venv and install newsbot with its pinned dependencies; quiet and quick when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch==2.13.0 is pinned in pyproject.toml; where no CPU wheel is at hand, PyTorch's CPU index
  # provides it (see README), which avoids pulling the multi-GB CUDA build.
  .venv/bin/python -m pip install -q ${NEWSBOT_PIP_ARGS:-} -e ".[dev]"
  touch "$stamp"
fi
