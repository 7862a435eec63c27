#!/usr/bin/env bash
# Create .venv and install newsbot with its pinned dependencies; quiet and quick when already done.
#   bash scripts/setup.sh        what running newsbot needs (onnxruntime, no torch)
#   bash scripts/setup.sh dev    and what testing it needs (pytest, ruff, mypy, the torch and ray extras)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extras=${1:-}
spec=.${extras:+[$extras]}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
fresh() { [ -f "$1" ] && [ ! pyproject.toml -nt "$1" ]; }
# A dev install covers the plain one.
if ! fresh ".venv/.installed${extras:+-$extras}" && ! fresh .venv/.installed-dev; then
  # pip's own bytecode (8 MB) is not needed to run newsbot; newsbot's dependencies are byte-compiled
  # at install, since where PYTHONDONTWRITEBYTECODE is set Python would recompile them at every start.
  .venv/bin/python -m pip install -q --no-compile --upgrade pip
  # The torch extra (in dev) pins torch==2.13.0; where no CPU wheel is at hand, PyTorch's CPU index
  # provides it (NEWSBOT_PIP_ARGS, see README), which avoids pulling the multi-GB CUDA build.
  .venv/bin/python -m pip install -q ${NEWSBOT_PIP_ARGS:-} -e "$spec"
  # An editable install leaves newsbot's own modules uncompiled: compiled here once, not at every start.
  .venv/bin/python -m compileall -q embeddings bot >/dev/null
  touch ".venv/.installed${extras:+-$extras}"
fi
