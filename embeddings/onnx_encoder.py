"""all-MiniLM-L6-v2 on onnxruntime and tokenizers: no torch at run time.

The default, int8, runs the file shipped in ``models/minilm/`` (built at development time by
``scripts/export_encoder.py``; its sha256 is checked at every load). fp32 (``backend = "onnx"``) and
model folders of your own are exported from their PyTorch weights at first use, which needs the
``torch`` extra (onnx_export.py).

On 2 cores (benchmarks/encoders.py), passages/s: torch ~25, fp32 ~47, int8 ~80; one short query:
torch ~7 ms, fp32 ~2 ms, int8 ~1 ms. fp32 gives torch's vectors to float rounding, int8 to a cosine
of ~0.99.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embeddings.encoder import (
    DEFAULT_MODEL,
    DEFAULT_NAMES,
    EncoderError,
    fp32_identity,
    model_path,
    pool_spans,
    requires_torch_extra,
    short_hash,
    unit_rows,
)
from embeddings.onnx_model import (
    ModelFileError,
    load_tokenizer,
    model_dir,
    open_session,
    read_checked,
    read_manifest,
)

SHIPPED = "minilm"  # models/minilm/: the default model's int8 file and tokenizer


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
        self.name = model
        self.quantized = quantized
        if quantized and model in DEFAULT_NAMES:
            onnx: Path | bytes = self._load_shipped()
        else:
            onnx = self._load_exported(model, cache_dir)
        # tokenizer.json ships with truncation and fixed padding at 128: replace both. Two instances,
        # configured once here, so nothing is mutated while other threads use them. max_length
        # counts [CLS] and [SEP], like sentence-transformers' max_seq_length.
        self._tokenizer = load_tokenizer(self.tokenizer_file, max_length=self.max_tokens)
        self._counter = load_tokenizer(self.tokenizer_file)
        self._pad_id = int(self._tokenizer.token_to_id("[PAD]") or 0)
        self._session = open_session(onnx, quantized=quantized, threads=threads)
        self._feeds = {i.name for i in self._session.get_inputs()}

    def _load_shipped(self) -> bytes:
        """The shipped int8 model's bytes, checked against its manifest; sets what the manifest says."""
        try:
            folder = model_dir(SHIPPED)
            manifest = read_manifest(folder)
            onnx = read_checked(folder, manifest["onnx"], manifest)
            read_checked(folder, manifest["tokenizer"], manifest)
        except ModelFileError as err:
            raise EncoderError(str(err)) from None
        self.dim = int(manifest["dim"])
        self.max_tokens = int(manifest["max_tokens"])
        self.tokenizer_file = folder / manifest["tokenizer"]
        self.onnx_path = folder / manifest["onnx"]
        self.identity = f"{self.name} int8 onnx-sha256:{manifest['sha256'][manifest['onnx']][:16]}"
        return onnx

    def _load_exported(self, model: str, cache_dir: Path | None) -> Path:
        """fp32, or a model folder of one's own: exported from its PyTorch weights on first use."""
        if not all(_installed(m) for m in ("torch", "transformers", "onnx")):
            what = "an int8 model folder of your own" if self.quantized else 'backend = "onnx" (fp32)'
            raise requires_torch_extra(what)
        from embeddings.onnx_export import cache_folder, ensure_exported, read_json

        folder = model_path(model)
        # Pooling, dimension and length limit come from the model's own sentence-transformers files.
        pooling = read_json(folder / "1_Pooling" / "config.json")
        if pooling and not pooling.get("pooling_mode_mean_tokens", False):
            raise EncoderError(f"{folder} does not use mean pooling; OnnxEncoder implements only that")
        config = read_json(folder / "config.json")
        self.dim = int(pooling.get("word_embedding_dimension") or config.get("hidden_size") or 0)
        self.max_tokens = int(read_json(folder / "sentence_bert_config.json").get("max_seq_length", 256))
        self.tokenizer_file = folder / "tokenizer.json"
        self.onnx_path = ensure_exported(folder, cache_folder(folder, cache_dir), self.quantized)
        if self.quantized:
            self.identity = f"{model} int8 onnx-sha256:{short_hash(self.onnx_path)}"
        else:
            self.identity = fp32_identity(model, folder)
        return self.onnx_path

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
        # written back to their original positions. int8 reads each text alone: its activations are
        # quantised with one scale per batch, so a text's vector moved with the company it was
        # batched with (cosine ~0.996), and two builds of the same BBC store chose the answer sentence
        # 0.716 and 0.743 of the time. Alone it is the same in every store and for the question asked
        # in Discord as in `newsbot eval`, and on 2 cores no slower (no padding).
        order = np.argsort(-lengths, kind="stable")
        step = 1 if self.quantized else max(1, batch_size)
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


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _mean_pool_normalise(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' Pooling (mean over real tokens) then Normalize, in float32."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    return unit_rows(summed / np.clip(weights.sum(axis=1), 1e-9, None))
