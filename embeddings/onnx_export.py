"""Export a sentence-transformers model to ONNX (and int8) with torch: the ``torch`` extra's side.

Two users: ``scripts/export_encoder.py`` builds the int8 file shipped in ``models/minilm/`` at
development time, and the ``onnx`` backend (fp32) or a model folder of your own exports at first use
into a cache. A runtime install has neither torch nor this module's other imports; it runs the shipped
file (see onnx_model.py).

sentence-transformers 6's own ONNX backend needs ``optimum-onnx``, which cannot be installed next to
transformers 5, so the model is exported here with ``torch.onnx.export`` and quantised with onnxruntime's
own tool.

Cache layout: ``$NEWSBOT_ONNX_CACHE`` (default ``~/.cache/newsbot/onnx``) /
``<model folder name>-<first 16 hex of sha256(model.safetensors)>/model.onnx`` and ``model_int8.onnx``.
Each file records the export recipe in its ONNX metadata, so a change to the recipe below re-exports
instead of silently reusing an old file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embeddings.encoder import EncoderError, short_hash, weights_file

CACHE_ENV = "NEWSBOT_ONNX_CACHE"
DEFAULT_CACHE = Path("~/.cache/newsbot/onnx")

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_OPSET = 17
# Per-channel symmetric int8 weights, and the attention MatMuls (two activations) quantised too. The
# quantiser's defaults (per-tensor, asymmetric) bring the cosine to torch's vectors down to ~0.95.
_QUANT_OPTIONS: dict[str, Any] = {
    "per_channel": True,
    "reduce_range": False,
    "extra_options": {"MatMulConstBOnly": False, "WeightSymmetric": True},
}
# Stored in each exported file; bump "revision" whenever the export or quantisation code changes.
_RECIPE = json.dumps({"revision": 1, "opset": _OPSET, "quant": _QUANT_OPTIONS}, sort_keys=True)
_RECIPE_KEY = "newsbot_recipe"

log = logging.getLogger(__name__)


def cache_folder(model_dir: Path, cache_dir: Path | None = None) -> Path:
    """Where the ONNX files for the model in ``model_dir`` live; the weights' hash keeps models apart."""
    root = cache_dir if cache_dir is not None else Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)
    return root.expanduser() / f"{model_dir.name}-{short_hash(weights_file(model_dir))}"


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` across processes, so only one of them exports."""
    with lock_path.open("a+b") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no fcntl; os.replace still keeps readers from torn files
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _temp_path(target: Path) -> Path:
    """A unique name next to ``target``: same file system, so os.replace onto it is atomic."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return Path(name)


def _recipe_of(path: Path) -> str | None:
    if not path.is_file():
        return None
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # a truncated or foreign file: treat as absent and export again
        return None
    return next((p.value for p in proto.metadata_props if p.key == _RECIPE_KEY), None)


def _save_with_recipe(proto: Any, target: Path, source_hash: str) -> None:
    import onnx

    del proto.metadata_props[:]
    for key, value in ((_RECIPE_KEY, _RECIPE), ("newsbot_source_sha256", source_hash)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    tmp = _temp_path(target)
    try:
        onnx.save(proto, str(tmp))
        tmp.chmod(0o644)  # mkstemp makes files private; a shared cache must stay readable by all users
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


class _DropQuantiserChatter(logging.Filter):
    """onnxruntime's quantiser logs through the root logger: one line per tensor at INFO, and a hint to
    run shape pre-processing (which only static quantisation needs) at WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        quantiser = f"onnxruntime{os.sep}quantization" in record.pathname
        return not quantiser or record.levelno >= logging.ERROR


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporters' known, harmless warnings for a one-off export (checked by the tests instead).

    Tracing warns about Python-side branches and index ops: the graph is verified against torch on
    padded batches of other lengths (tests/test_onnx_encoder.py).
    """
    hint = _DropQuantiserChatter()
    root = logging.getLogger()
    root.addFilter(hint)
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated, and says so several ways; it is chosen on purpose.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=r"Converting a tensor to a Python")
            warnings.filterwarnings("ignore", message=r"Exporting aten::index operator")
            yield
    finally:
        root.removeFilter(hint)


def _export_fp32(model_dir: Path, target: Path, source_hash: str) -> None:
    """Trace the HF BertModel into ONNX: token ids and mask in, last hidden state out.

    Pooling and normalisation stay in numpy, where they match sentence-transformers line for line.
    """
    import onnx
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Loading weights" bar in the middle of a bot's log helps no one
    try:
        # Eager attention traces into plain MatMul/Softmax, which the quantiser knows; SDPA would not.
        bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()

    class HiddenStates(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    # A padded example, so the traced graph takes the masking path real batches need.
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    axes = {0: "batch", 1: "sequence"}
    tmp = _temp_path(target)
    try:
        with torch.no_grad(), _quiet_export():
            torch.onnx.export(
                HiddenStates(bert),
                (),
                str(tmp),
                kwargs={"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)},
                input_names=list(INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes={name: axes for name in (*INPUTS, "last_hidden_state")},
                opset_version=_OPSET,
                do_constant_folding=True,
                dynamo=False,  # the dynamo exporter needs onnxscript, which newsbot does not ship
            )
        _save_with_recipe(onnx.load(str(tmp)), target, source_hash)
    finally:
        tmp.unlink(missing_ok=True)


def _quantize(source: Path, target: Path, source_hash: str) -> None:
    """Dynamic int8: weights quantised once here, activations per call; no calibration data needed."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = _temp_path(target)
    try:
        with _quiet_export():
            quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, **_QUANT_OPTIONS)
        _save_with_recipe(onnx.load(str(tmp)), target, source_hash)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_exported(model_dir: Path, folder: Path, quantized: bool) -> Path:
    """The path of an up-to-date ONNX file for the model, exporting it first if needed.

    Safe to call from several processes at once: one exports under a file lock while the others wait,
    then find the file done. Files appear only whole, by os.replace, so a reader never sees half a file.
    """
    fp32 = folder / "model.onnx"
    target = folder / "model_int8.onnx" if quantized else fp32
    if _recipe_of(target) == _RECIPE:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder / ".lock"):
        if _recipe_of(target) == _RECIPE:  # another process finished while this one waited
            return target
        source_hash = short_hash(weights_file(model_dir))
        if _recipe_of(fp32) != _RECIPE:
            log.info("exporting %s to %s (once per model)", model_dir, fp32)
            _export_fp32(model_dir, fp32, source_hash)
        if quantized:
            log.info("quantising %s to %s (once per model)", fp32, target)
            _quantize(fp32, target, source_hash)
    return target


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def export_shipped(model_dir: Path, out: Path, *, name: str, source: dict[str, str]) -> dict[str, Any]:
    """Build the int8 model shipped in ``out`` (``models/minilm/``) from the weights in ``model_dir``:
    the very file the ``onnx-int8`` backend used to export at first use, its tokenizer, and a
    ``model.json`` manifest with each file's sha256 (checked at every load)."""
    import shutil

    from embeddings.onnx_model import MANIFEST, sha256_hex

    pooling = read_json(model_dir / "1_Pooling" / "config.json")
    if not pooling.get("pooling_mode_mean_tokens", False):
        raise EncoderError(f"{model_dir} does not use mean pooling; OnnxEncoder implements only that")
    with tempfile.TemporaryDirectory(prefix="newsbot-export-") as tmp:
        exported = ensure_exported(model_dir, Path(tmp), quantized=True)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(exported, out / "model_int8.onnx")
    shutil.copyfile(model_dir / "tokenizer.json", out / "tokenizer.json")
    files = ("model_int8.onnx", "tokenizer.json")
    manifest: dict[str, Any] = {
        "name": name,
        "onnx": "model_int8.onnx",
        "tokenizer": "tokenizer.json",
        "quantized": True,
        "inputs": list(INPUTS),
        "output": "last_hidden_state",
        "pooling": "mean",
        "normalize": True,
        "dim": int(pooling["word_embedding_dimension"]),
        "max_tokens": int(read_json(model_dir / "sentence_bert_config.json").get("max_seq_length", 256)),
        "source": {**source, "weights_sha256": sha256_hex(weights_file(model_dir).read_bytes())},
        "recipe": json.loads(_RECIPE),
        "built_with": {p: _version(p) for p in ("torch", "transformers", "onnx", "onnxruntime")},
        "sha256": {f: sha256_hex((out / f).read_bytes()) for f in files},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
