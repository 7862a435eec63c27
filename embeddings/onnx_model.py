"""Models shipped in the repository's ``models/`` folder, run on onnxruntime and tokenizers alone.

Each model is a folder ``models/<name>/`` holding ONNX file(s), a ``tokenizer.json`` and a
``model.json`` manifest (what the files are, their sha256, how to use the outputs), with a model card
(``README.md``) beside them. Nothing here imports torch: this is what a runtime install runs. The
functions are the pieces any such model needs (the encoder in ``models/minilm/``, a reader in
``models/reader/``): find the folder, read its manifest, check a file's hash, open a session with
this machine's thread settings, and load a tokenizer.

The folder is package data (``newsbot_models`` in pyproject.toml), so a non-editable install finds it
inside site-packages; a plain checkout finds ``models/`` beside ``embeddings/``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE = "newsbot_models"
MANIFEST = "model.json"
# "1" forces onnxruntime's U8U8 int8 kernels, "0" the faster U8S8 ones; unset: decided from the CPU.
X64_PRECISION_ENV = "NEWSBOT_ONNX_X64_PRECISION"


class ModelFileError(RuntimeError):
    """A shipped model file is missing or is not the file its manifest names."""


def models_root() -> Path:
    """The folder holding the shipped models: the installed package data, else the checkout's."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "models"


def model_dir(name: str) -> Path:
    folder = models_root() / name
    if not (folder / MANIFEST).is_file():
        raise ModelFileError(f"no shipped model {name!r}: {folder / MANIFEST} is missing")
    return folder


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelFileError(f"cannot read {folder / MANIFEST}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sha256"), dict):
        raise ModelFileError(f"{folder / MANIFEST} has no sha256 table")
    return data


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_checked(folder: Path, name: str, manifest: dict[str, Any] | None = None) -> bytes:
    """The bytes of ``folder/name``, after checking them against the manifest's sha256.

    Read once: the same bytes are hashed and handed to onnxruntime, so checking costs a hash
    (~40 ms for 23 MB), not a second read. A damaged or replaced file is a one-line error."""
    manifest = manifest if manifest is not None else read_manifest(folder)
    expected = manifest["sha256"].get(name)
    path = folder / name
    if expected is None:
        raise ModelFileError(f"{folder / MANIFEST} lists no sha256 for {name}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ModelFileError(f"cannot read model file {path}: {err.strerror or err}") from None
    if sha256_hex(data) != expected:
        raise ModelFileError(
            f"model file {path} is damaged (sha256 differs from {MANIFEST}): restore it, e.g. "
            "`git checkout -- models/` or reinstall newsbot"
        )
    return data


def default_threads() -> int:
    """The CPUs this process may run on (a container's limit, not the host's core count).

    Measured on 2 cores: 2 intra-op threads beat 1 both for one 15-token query (int8 0.9 vs 1.2 ms,
    fp32 2.1 vs 4.0 ms) and for batches of 256-token passages (82 vs 43 passages/s), so one session with
    every core serves both. Capped at 8: a 6-layer model on short inputs gains little from more threads,
    and the bot's own event loop and FAISS need cores too.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _cpu_has_vnni() -> bool | None:
    """Whether the x86-64 CPU has VNNI (AVX512-VNNI or AVX-VNNI); None when it cannot be told."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    return None


def needs_x64_precision() -> bool:
    """Whether an int8 model should run on onnxruntime's U8U8 kernels instead of U8S8.

    On x86-64 without VNNI (SSE4.1, AVX2, AVX-512 before Cascade Lake) onnxruntime multiplies uint8
    activations by int8 weights with VPMADDUBSW, which adds pairs of products into a saturating int16:
    with full-range weights (``reduce_range=False``, as used here for accuracy) a pair can overflow and
    be clipped. The session option ``session.x64quantprecision`` makes onnxruntime convert the weights to
    uint8 and use exact U8U8 kernels instead. It costs ~30% of int8 speed (measured on a VNNI CPU, where
    onnxruntime applies it too), so it is turned on only where the CPU lacks VNNI or cannot be checked.
    Other architectures (ARM's int8 dot products) have no such overflow; the option does nothing there.
    """
    forced = os.environ.get(X64_PRECISION_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if platform.machine().lower() not in ("x86_64", "amd64", "x64", "i386", "i686"):
        return False
    return _cpu_has_vnni() is not True


def open_session(model: Path | bytes, *, quantized: bool, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for a model file (or its bytes), with this machine's thread settings."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1  # the graphs are chains: nothing runs in parallel between ops
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One question runs two sessions in turn (the encoder, then the reader) on the same cores. A
    # session's idle workers spin for a while after each run and take the cores from the next one:
    # with spinning, ask took 94 ms at the median with the reader on; without, 51 ms (2 cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if quantized and needs_x64_precision():
        options.add_session_config_entry("session.x64quantprecision", "1")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class AloneRuns:
    """An int8 model fed one input per run, several runs at once.

    Dynamic int8 quantises activations with one scale per run, so an input batched with others came out
    differently with each company: each input runs alone. One short input keeps a second intra-op
    thread poorly busy (a 6-layer model's kernels on ~70 word pieces are small), so each run gets one
    thread and as many runs go at once as there are cores: on 2 cores 4 reader pairs take 12.8 ms
    this way and 28.1 ms one after another on 2 threads, with the same outputs to the bit. (The
    encoder gains little from it: BBC passages are long enough to keep two threads busy, and ingest
    needs a core free for chunking and writing beside the encoder.)
    """

    def __init__(self, model: Path | bytes, threads: int | None = None) -> None:
        self.session = open_session(model, quantized=True, threads=1)
        self.at_once = threads or default_threads()
        self._pool = ThreadPoolExecutor(self.at_once, thread_name_prefix="onnx-run")

    def run(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[np.ndarray]:
        """The model's first output for each feed, in order."""

        def one(feed: Mapping[str, np.ndarray]) -> np.ndarray:
            return self.session.run(None, dict(feed))[0]

        if len(feeds) < 2:
            return [one(feed) for feed in feeds]
        # Longest first, so the last runs to start are short and the cores finish together: 6
        # reader pairs on 2 cores, 29.8 ms p50 this way vs 31.5 ms in the order given.
        order = sorted(range(len(feeds)), key=lambda i: -max(a.size for a in feeds[i].values()))
        outputs: list[np.ndarray] = [np.empty(0)] * len(feeds)
        for i, output in zip(order, self._pool.map(one, [feeds[i] for i in order]), strict=True):
            outputs[i] = output
        return outputs


def load_tokenizer(path: Path, *, max_length: int | None = None) -> Any:
    """A ``tokenizers.Tokenizer`` from a tokenizer.json, without the file's own padding; truncated to
    ``max_length`` tokens (special ones included) when given, else not at all."""
    from tokenizers import Tokenizer

    if not path.is_file():
        raise ModelFileError(f"no tokenizer file {path}")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    if max_length is None:
        tokenizer.no_truncation()
    else:
        tokenizer.enable_truncation(max_length=max_length)
    return tokenizer
