"""The reader: a small cross-encoder that reads the question with a candidate sentence and scores it.

all-MiniLM-L6-v2 fine-tuned on SQuAD 1.1 (training/train_reader.py) reads ``[CLS] question [SEP]
title: sentence [SEP]`` for each candidate. Its [CLS] output gives the pair's score, a logit:
trained with a softmax over a question's candidate sentences (the other sentences of its paragraph,
and sentences of other paragraphs and stories) and a logistic loss on each pair, so ``sigmoid(score)``
reads as the probability that the sentence answers. Its word-piece outputs mark where the answer
starts and ends inside the sentence, which the reply can bold.

Runs on onnxruntime + tokenizers + numpy only: the int8 model and its tokenizer ship in
``models/reader/`` (see its README for the model card and the command that rebuilds it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "reader"
MODEL_FILE = "reader_int8.onnx"
MAX_TOKENS = 128
MAX_ANSWER_TOKENS = 24


class ReaderError(RuntimeError):
    """The reader model cannot be found or loaded."""


def pair_text(title: str, sentence: str) -> tuple[str, int]:
    """The second text of a pair (``title: sentence``), and where the sentence starts in it."""
    title = " ".join(title.replace("_", " ").split())
    prefix = f"{title}: " if title else ""
    return prefix + sentence, len(prefix)


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass(frozen=True)
class Reading:
    """The reader's view of each candidate sentence, in the order given."""

    scores: np.ndarray  # logits; sigmoid gives the probability that the sentence answers
    span_scores: np.ndarray  # the best answer span's start + end logit inside each sentence
    spans: tuple[tuple[int, int] | None, ...]  # that span, as character offsets into the sentence
    tokens: int = 0  # word pieces read, padding excluded


class Reader:
    """The int8 ONNX reader; safe to share between threads (onnxruntime and tokenizers are)."""

    def __init__(self, model_dir: Path | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from embeddings.onnx_encoder import default_threads

        folder = Path(model_dir or MODEL_DIR)
        model = folder / MODEL_FILE
        if not model.is_file() or not (folder / "tokenizer.json").is_file():
            raise ReaderError(f"no reader model in {folder} (expected {MODEL_FILE} and tokenizer.json)")
        self.folder = folder
        config_file = folder / "reader.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        self.max_tokens = int(config.get("max_tokens", MAX_TOKENS))
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.max_tokens, strategy="longest_first")
        self._pad = self._tokenizer.token_to_id("[PAD]") or 0
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ReaderError(f"cannot load the reader model {model}: {err}") from err

    def read(self, question: str, candidates: Sequence[tuple[str, str]]) -> Reading:
        """Score each ``(title, sentence)`` as an answer to ``question``, in one batched run."""
        if not candidates:
            empty = np.zeros(0, dtype=np.float32)
            return Reading(empty, empty, (), 0)
        texts = [pair_text(title, sentence) for title, sentence in candidates]
        encodings = self._tokenizer.encode_batch([(question, text) for text, _ in texts])
        width = max(len(e.ids) for e in encodings)
        n = len(encodings)
        ids = np.full((n, width), self._pad, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for k, enc in enumerate(encodings):
            ids[k, : len(enc.ids)] = enc.ids
            mask[k, : len(enc.ids)] = 1
            types[k, : len(enc.ids)] = enc.type_ids
        (logits,) = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        )
        span_scores = np.full(n, -np.inf, dtype=np.float32)
        spans: list[tuple[int, int] | None] = []
        for k, (enc, (_, prefix)) in enumerate(zip(encodings, texts, strict=True)):
            # Only the sentence's own word pieces can hold the answer, not the title's.
            tokens = [
                t
                for t, (seq, (a, _)) in enumerate(zip(enc.sequence_ids, enc.offsets, strict=True))
                if seq == 1 and a >= prefix
            ]
            if not tokens:
                spans.append(None)
                continue
            score, (i, j) = best_span(logits[k, tokens, 1], logits[k, tokens, 2])
            span_scores[k] = score
            spans.append((enc.offsets[tokens[i]][0] - prefix, enc.offsets[tokens[j]][1] - prefix))
        return Reading(logits[:, 0, 0].astype(np.float32), span_scores, tuple(spans), int(mask.sum()))


def best_span(
    start: np.ndarray, end: np.ndarray, longest: int = MAX_ANSWER_TOKENS
) -> tuple[float, tuple[int, int]]:
    """The (i, j) with i <= j < i + longest that maximises start[i] + end[j], and that sum."""
    n = len(start)
    total = start[:, None] + end[None, :]
    allowed = np.triu(np.ones((n, n), dtype=bool)) & ~np.triu(np.ones((n, n), dtype=bool), k=longest)
    total = np.where(allowed, total, -np.inf)
    i, j = np.unravel_index(int(np.argmax(total)), total.shape)
    return float(total[i, j]), (int(i), int(j))
