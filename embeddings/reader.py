"""The reader: a small cross-encoder that reads the question with a candidate sentence and scores it.

all-MiniLM-L6-v2 fine-tuned on SQuAD 1.1 (training/train_reader.py) reads ``[CLS] question [SEP]
title: sentence [SEP] the sentence before [SEP]`` for each candidate: the sentence before (its first
words) tells who "he" or "the company" is. Its [CLS] output gives the pair's score, a logit:
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tokenizers import Encoding

MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "reader"
MODEL_FILE = "reader_int8.onnx"
MAX_TOKENS = 128
MAX_ANSWER_TOKENS = 24


class ReaderError(RuntimeError):
    """The reader model cannot be found or loaded."""


class Candidate(NamedTuple):
    """A sentence to read, with its article's title and the sentence before it in the passage."""

    title: str
    sentence: str
    before: str = ""


def in_passage(title: str, sentences: Sequence[str]) -> list[Candidate]:
    """Consecutive sentences of one passage as candidates, each with the sentence before it."""
    return [Candidate(title, s, sentences[i - 1] if i else "") for i, s in enumerate(sentences)]


def pair_text(candidate: Candidate, context_words: int) -> tuple[str, int]:
    """The second text of a pair (``title: sentence [SEP] before``, the sentence before cut to its
    first ``context_words`` words, none when 0), and where the sentence starts in it."""
    title = " ".join(candidate.title.replace("_", " ").split())
    prefix = f"{title}: " if title else ""
    before = " ".join(candidate.before.split()[:context_words])
    # [SEP] is the tokenizer's own separator (an added token), so the context reads as a third part.
    return prefix + candidate.sentence + (f" [SEP] {before}" if before else ""), len(prefix)


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass(frozen=True)
class Reading:
    """The reader's view of each candidate sentence, in the order given."""

    scores: np.ndarray  # logits; sigmoid gives the probability that the sentence answers
    span_scores: np.ndarray  # the best answer span's start + end logit inside each sentence
    spans: tuple[tuple[int, int] | None, ...]  # that span, as character offsets into the sentence
    tokens: int = 0  # word pieces read, padding excluded
    # How sure the span head is of that span: its start's and end's softmax probabilities over the
    # sentence's word pieces, multiplied (0 when there is none).
    span_probabilities: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))


class Reader:
    """The int8 ONNX reader; safe to share between threads (onnxruntime and tokenizers are)."""

    def __init__(self, model_dir: Path | None = None, threads: int | None = None) -> None:
        from embeddings.onnx_model import AloneRuns, load_tokenizer

        folder = Path(model_dir or MODEL_DIR)
        model = folder / MODEL_FILE
        if not model.is_file() or not (folder / "tokenizer.json").is_file():
            raise ReaderError(f"no reader model in {folder} (expected {MODEL_FILE} and tokenizer.json)")
        self.folder = folder
        config_file = folder / "reader.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        self.max_tokens = int(config.get("max_tokens", MAX_TOKENS))
        # How many words of the sentence before it the model was trained to read (0: none).
        self.context_words = int(config.get("context_words", 0))
        self._tokenizer = load_tokenizer(folder / "tokenizer.json", max_length=self.max_tokens)
        try:
            self._runs = AloneRuns(model, threads=threads)
        except Exception as err:  # onnxruntime raises its own exception types
            raise ReaderError(f"cannot load the reader model {model}: {err}") from err

    @property
    def at_once(self) -> int:
        """How many pairs it reads side by side: reading fewer takes as long."""
        return int(self._runs.at_once)

    def read(self, question: str, candidates: Sequence[Candidate]) -> Reading:
        """Score each candidate sentence as an answer to ``question``, each pair read on its own."""
        if not candidates:
            empty = np.zeros(0, dtype=np.float32)
            return Reading(empty, empty, (), 0)
        texts = [pair_text(c, self.context_words) for c in candidates]
        encodings = self._tokenizer.encode_batch([(question, text) for text, _ in texts])
        n = len(encodings)
        logits = np.zeros((n, max(len(e.ids) for e in encodings), 3), dtype=np.float32)
        # Each pair alone: batched with others, a sentence's int8 score moved with its company (by
        # 0.22 on average, up to 1.2).
        outputs = self._runs.run(
            [
                {
                    "input_ids": np.asarray([enc.ids], dtype=np.int64),
                    "attention_mask": np.ones((1, len(enc.ids)), dtype=np.int64),
                    "token_type_ids": np.asarray([enc.type_ids], dtype=np.int64),
                }
                for enc in encodings
            ]
        )
        for k, (enc, out) in enumerate(zip(encodings, outputs, strict=True)):
            logits[k, : len(enc.ids)] = out[0]
        span_scores = np.full(n, -np.inf, dtype=np.float32)
        span_probabilities = np.zeros(n, dtype=np.float32)
        spans: list[tuple[int, int] | None] = []
        for k, (enc, (_, prefix)) in enumerate(zip(encodings, texts, strict=True)):
            tokens = sentence_tokens(enc, prefix, len(candidates[k].sentence))
            if not tokens:
                spans.append(None)
                continue
            start, end = logits[k, tokens, 1], logits[k, tokens, 2]
            score, (i, j) = best_span(start, end)
            span_scores[k] = score
            span_probabilities[k] = np.exp(score - logsumexp(start) - logsumexp(end))
            spans.append((enc.offsets[tokens[i]][0] - prefix, enc.offsets[tokens[j]][1] - prefix))
        read = sum(len(e.ids) for e in encodings)
        return Reading(logits[:, 0, 0].copy(), span_scores, tuple(spans), read, span_probabilities)


def logsumexp(x: np.ndarray) -> float:
    top = float(np.max(x))
    return top + float(np.log(np.sum(np.exp(x.astype(np.float64) - top))))


def sentence_tokens(encoding: Encoding, start: int, length: int) -> list[int]:
    """The word pieces of the pair's sentence (its second text from ``start``, ``length`` characters):
    only they can hold the answer, not the title's or the sentence before's."""
    return [
        t
        for t, (seq, (a, _)) in enumerate(zip(encoding.sequence_ids, encoding.offsets, strict=True))
        if seq == 1 and start <= a < start + length
    ]


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
