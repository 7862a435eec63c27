"""all-MiniLM-L6-v2 on onnxruntime: the same vectors as ``TorchEncoder``, faster on a CPU.

On 2 cores (benchmarks/encoders.py), passages/s: torch ~25, fp32 ~47, int8 ~80; one short query:
torch ~7 ms, fp32 ~2 ms, int8 ~1 ms. fp32 gives torch's vectors to float rounding, int8 to a cosine
of ~0.99.

sentence-transformers 6's own ONNX backend needs ``optimum-onnx``, which cannot be installed next to
transformers 5, so the model is exported here with ``torch.onnx.export`` and quantised with onnxruntime's
own tool. The export happens once per model and is cached on disk; after that, only ``tokenizers``,
``onnxruntime`` and numpy run per call (torch is imported only to export).

Cache layout: ``$NEWSBOT_ONNX_CACHE`` (default ``~/.cache/newsbot/onnx``) /
``<model folder name>-<first 16 hex of sha256(model.safetensors)>/model.onnx`` and ``model_int8.onnx``.
Each file records the export recipe in its ONNX metadata, so a change to the recipe below re-exports
instead of silently reusing an old file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.encoder import DEFAULT_MODEL, EncoderError, model_path, pool_spans, unit_rows

CACHE_ENV = "NEWSBOT_ONNX_CACHE"
# "1" forces onnxruntime's U8U8 int8 kernels, "0" the faster U8S8 ones; unset: decided from the CPU.
X64_PRECISION_ENV = "NEWSBOT_ONNX_X64_PRECISION"
DEFAULT_CACHE = Path("~/.cache/newsbot/onnx")

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
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
    """Whether the int8 model should run on onnxruntime's U8U8 kernels instead of U8S8.

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


def _weights_file(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise EncoderError(f"no model.safetensors or pytorch_model.bin in {folder}")


def _short_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def cache_folder(model_dir: Path, cache_dir: Path | None = None) -> Path:
    """Where the ONNX files for the model in ``model_dir`` live; the weights' hash keeps models apart."""
    root = cache_dir if cache_dir is not None else Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)
    return root.expanduser() / f"{model_dir.name}-{_short_hash(_weights_file(model_dir))}"


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
                input_names=list(_INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes={name: axes for name in (*_INPUTS, "last_hidden_state")},
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
        source_hash = _short_hash(_weights_file(model_dir))
        if _recipe_of(fp32) != _RECIPE:
            log.info("exporting %s to %s (once per model)", model_dir, fp32)
            _export_fp32(model_dir, fp32, source_hash)
        if quantized:
            log.info("quantising %s to %s (once per model)", fp32, target)
            _quantize(fp32, target, source_hash)
    return target


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class OnnxEncoder:
    """all-MiniLM-L6-v2 through onnxruntime and tokenizers: fp32, or dynamic int8 when ``quantized``.

    fp32 gives torch's vectors to within float rounding; int8 is ~1.7x faster again at a cosine of ~0.99
    to torch's (see tests/test_onnx_encoder.py for the measured bounds). ``encode`` may be called from
    several threads: onnxruntime sessions and tokenizers are safe for concurrent use, and no state here
    changes after construction.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        quantized: bool = True,
        cache_dir: Path | None = None,
        *,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = model_path(model)
        self.name = model
        self.quantized = quantized

        # Pooling, dimension and length limit come from the model's own sentence-transformers files.
        pooling = _read_json(folder / "1_Pooling" / "config.json")
        if pooling and not pooling.get("pooling_mode_mean_tokens", False):
            raise EncoderError(f"{folder} does not use mean pooling; OnnxEncoder implements only that")
        config = _read_json(folder / "config.json")
        self.dim = int(pooling.get("word_embedding_dimension") or config.get("hidden_size") or 0)
        self.max_tokens = int(_read_json(folder / "sentence_bert_config.json").get("max_seq_length", 256))

        tokenizer_file = folder / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise EncoderError(f"no tokenizer.json in {folder}")
        # tokenizer.json ships with truncation and fixed padding at 128: replace both. Two instances,
        # configured once here, so nothing is mutated while other threads use them.
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_padding()  # encode pads per length bucket itself
        # max_length counts [CLS] and [SEP], like sentence-transformers' max_seq_length.
        self._tokenizer.enable_truncation(max_length=self.max_tokens)
        self._counter = Tokenizer.from_file(str(tokenizer_file))
        self._counter.no_padding()
        self._counter.no_truncation()
        self._pad_id = int(self._tokenizer.token_to_id("[PAD]") or 0)

        self.onnx_path = ensure_exported(folder, cache_folder(folder, cache_dir), quantized)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1  # the graph is a chain: nothing runs in parallel between ops
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if quantized and needs_x64_precision():
            options.add_session_config_entry("session.x64quantprecision", "1")
        self._session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
        self._feeds = {i.name for i in self._session.get_inputs()}

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in the order given."""
        return self._run(texts, None, batch_size)[0]

    def encode_spans(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]], batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        return self._run(texts, spans, batch_size)

    def _run(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]] | None, batch_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        pooled: list[np.ndarray] = [np.zeros((0, self.dim), np.float32)] * len(texts)
        if not texts:
            return out, out
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = np.array([len(e.ids) for e in encodings])
        # Sequence bucketing: batches of similar length waste little compute on padding; the rows are
        # written back to their original positions.
        order = np.argsort(-lengths, kind="stable")
        step = max(1, batch_size)
        for start in range(0, len(order), step):
            rows = order[start : start + step]
            width = int(lengths[rows].max())
            ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, row in enumerate(rows):
                n = int(lengths[row])
                ids[r, :n] = encodings[row].ids
                mask[r, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self._session.run(None, {k: v for k, v in feed.items() if k in self._feeds})[0]
            out[rows] = _mean_pool_normalise(hidden, mask)
            if spans is not None:
                for r, row in enumerate(rows):
                    encoding, n = encodings[row], int(lengths[row])
                    real = ~np.asarray(encoding.special_tokens_mask, dtype=bool)
                    offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(n, 2)
                    pooled[row] = pool_spans(hidden[r, :n], offsets, real, spans[row])
        return out, np.concatenate(pooled)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text, without [CLS]/[SEP] and without truncation, as TorchEncoder counts."""
        if not texts:
            return []
        return [len(e.ids) for e in self._counter.encode_batch(list(texts), add_special_tokens=False)]


def _mean_pool_normalise(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' Pooling (mean over real tokens) then Normalize, in float32."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    return unit_rows(summed / np.clip(weights.sum(axis=1), 1e-9, None))
