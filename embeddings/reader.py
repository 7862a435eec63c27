"""The reader: a small cross-encoder that reads the question with a passage and scores its sentences.

all-MiniLM-L6-v2 fine-tuned on SQuAD 1.1 (training/train_reader.py) reads ``[CLS] question [SEP]
title: passage [SEP]`` and gives every word piece three logits: "this token belongs to the sentence
that answers", "the answer starts here", "the answer ends here". A sentence's score is the mean of
its tokens' first logit, so one pass scores every sentence of a passage, each read in its context
(the title and its neighbours resolve "he", "the company"). Trained with a softmax over a passage's
sentences and a per-sentence logistic loss against passages of other stories, ``sigmoid(score)`` is the
probability that the sentence answers the question: the answer is chosen by it and abstention
decided by it.

Runs on onnxruntime + tokenizers + numpy only: the int8 model and its tokenizer ship in
``models/reader/`` (see its README for the model card and the command that rebuilds it).
"""

from __future__ import annotations

import json
import threading
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "reader"
MODEL_FILE = "reader_int8.onnx"
MAX_TOKENS = 256
MAX_QUESTION_TOKENS = 48


class ReaderError(RuntimeError):
    """The reader model cannot be found or loaded."""


@dataclass(frozen=True)
class Passage:
    """What the reader reads: a title and a text, and the sentences of the text to score."""

    title: str
    text: str
    sentences: tuple[tuple[int, int], ...]  # offsets into text


@dataclass(frozen=True)
class Encoded:
    """One batch of model inputs, and for each passage which tokens make up each of its sentences."""

    input_ids: np.ndarray  # [batch, tokens] int64
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    # Per passage: for each sentence, the indexes of its tokens in the row (empty: cut off).
    members: tuple[tuple[np.ndarray, ...], ...]
    # Per passage: each token's character range in ``title: text`` (passage tokens only, -1 elsewhere).
    offsets: tuple[np.ndarray, ...]
    prefix: tuple[int, ...]  # len("title: ") per passage


def passage_text(title: str, text: str) -> tuple[str, int]:
    """The text the reader reads for a passage, and where the passage starts in it."""
    title = " ".join(title.replace("_", " ").split())
    prefix = f"{title}: " if title else ""
    return prefix + text, len(prefix)


def encode(
    tokenizer: object, question: str, passages: Sequence[Passage], max_tokens: int = MAX_TOKENS
) -> Encoded:
    """``[CLS] question [SEP] title: passage [SEP]`` for each passage, padded to the longest.

    ``tokenizer`` is a ``tokenizers.Tokenizer`` with truncation and padding off. Word pieces past
    ``max_tokens`` are cut; a sentence cut off entirely gets no members (and no score)."""
    cls_id, sep_id, pad_id = (tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))  # type: ignore[attr-defined]
    q_ids = tokenizer.encode(question, add_special_tokens=False).ids[:MAX_QUESTION_TOKENS]  # type: ignore[attr-defined]
    texts = [passage_text(p.title, p.text) for p in passages]
    encodings = tokenizer.encode_batch([t for t, _ in texts], add_special_tokens=False)  # type: ignore[attr-defined]
    room = max_tokens - len(q_ids) - 3
    head = [cls_id, *q_ids, sep_id]
    rows, members, offsets = [], [], []
    for passage, (_, prefix), enc in zip(passages, texts, encodings, strict=True):
        ids = enc.ids[:room]
        spans = np.asarray(enc.offsets[:room], dtype=np.int64).reshape(-1, 2)
        rows.append([*head, *ids, sep_id])
        starts = [a + prefix for a, _ in passage.sentences]
        ends = [b + prefix for _, b in passage.sentences]
        owner = np.full(len(ids), -1, dtype=np.int64)
        for t, (a, _) in enumerate(spans.tolist()):
            i = bisect_right(starts, a) - 1
            if i >= 0 and a < ends[i]:
                owner[t] = i
        shift = len(head)
        members.append(tuple(np.flatnonzero(owner == i) + shift for i in range(len(starts))))
        full = np.full((len(ids) + len(head) + 1, 2), -1, dtype=np.int64)
        full[shift : shift + len(ids)] = spans
        offsets.append(full)
    width = max(len(r) for r in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    attention = np.zeros((len(rows), width), dtype=np.int64)
    types = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
        attention[i, : len(row)] = 1
        types[i, len(head) : len(row)] = 1
    return Encoded(input_ids, attention, types, tuple(members), tuple(offsets), tuple(p for _, p in texts))


def sentence_scores(logits: np.ndarray, encoded: Encoded) -> list[np.ndarray]:
    """Per passage, each sentence's score (the mean of its tokens' first logit; -inf when cut off)."""
    out = []
    for row, members in zip(logits, encoded.members, strict=True):
        out.append(np.array([row[m, 0].mean() if len(m) else -np.inf for m in members], dtype=np.float32))
    return out


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass(frozen=True)
class Reading:
    """The reader's view of one passage: each sentence's score, and the best answer span per sentence."""

    scores: np.ndarray  # logits; sigmoid gives the probability that the sentence answers
    # The best answer span's start + end logit inside each sentence (-inf when cut off).
    span_scores: np.ndarray
    spans: tuple[tuple[int, int] | None, ...]  # character offsets into the passage text


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
        config = folder / "reader.json"
        self.max_tokens = (
            int(json.loads(config.read_text(encoding="utf-8")).get("max_tokens", MAX_TOKENS))
            if config.is_file()
            else MAX_TOKENS
        )
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ReaderError(f"cannot load the reader model {model}: {err}") from err
        self._lock = threading.Lock()

    def logits(self, question: str, passages: Sequence[Passage]) -> tuple[np.ndarray, Encoded]:
        encoded = encode(self._tokenizer, question, passages, self.max_tokens)
        (logits,) = self._session.run(
            None,
            {
                "input_ids": encoded.input_ids,
                "attention_mask": encoded.attention_mask,
                "token_type_ids": encoded.token_type_ids,
            },
        )
        return logits, encoded

    def score_text(self, question: str, passage: Passage) -> tuple[np.ndarray, np.ndarray]:
        """Every sentence of a text of any length scored (sentence logits, best-span scores), the text
        read in as many rows as it needs."""
        counts = [
            len(e.ids)
            for e in self._tokenizer.encode_batch(
                [passage.text[a:b] for a, b in passage.sentences], add_special_tokens=False
            )
        ]
        title_tokens = len(self._tokenizer.encode(passage.title, add_special_tokens=False).ids) + 1
        question_tokens = min(
            len(self._tokenizer.encode(question, add_special_tokens=False).ids), MAX_QUESTION_TOKENS
        )
        budget = self.max_tokens - question_tokens - title_tokens - 3
        parts = split_passage(passage, counts, budget)
        readings = self.read(question, parts)
        return np.concatenate([r.scores for r in readings]), np.concatenate([r.span_scores for r in readings])

    def read(self, question: str, passages: Sequence[Passage], max_answer_tokens: int = 24) -> list[Reading]:
        """Every given sentence of every passage scored, in one batched run of the model."""
        if not passages:
            return []
        logits, encoded = self.logits(question, passages)
        scores = sentence_scores(logits, encoded)
        readings = []
        for row, members, offsets, prefix, passage_scores in zip(
            logits, encoded.members, encoded.offsets, encoded.prefix, scores, strict=True
        ):
            spans: list[tuple[int, int] | None] = []
            best = np.full(len(members), -np.inf, dtype=np.float32)
            for i, m in enumerate(members):
                if len(m):
                    best[i], span = _best_span(row, m, offsets, prefix, max_answer_tokens)
                    spans.append(span)
                else:
                    spans.append(None)
            readings.append(Reading(passage_scores, best, tuple(spans)))
        return readings


def split_passage(passage: Passage, counts: Sequence[int], budget: int) -> list[Passage]:
    """``passage`` cut between sentences into runs of at most ``budget`` word pieces (``counts``: each
    sentence's), so a long text is read whole in several rows rather than cut off."""
    out, first, used = [], 0, 0
    bounds = list(passage.sentences)
    for i, n in enumerate(counts):
        if i > first and used + n > budget:
            out.append(_sub(passage, first, i))
            first, used = i, 0
        used += n
    if bounds:
        out.append(_sub(passage, first, len(bounds)))
    return out


def _sub(passage: Passage, i: int, j: int) -> Passage:
    base = passage.sentences[i][0]
    text = passage.text[base : passage.sentences[j - 1][1]]
    return Passage(passage.title, text, tuple((a - base, b - base) for a, b in passage.sentences[i:j]))


def _best_span(
    row: np.ndarray, members: np.ndarray, offsets: np.ndarray, prefix: int, longest: int
) -> tuple[float, tuple[int, int]]:
    """The highest start + end logit span inside a sentence: its score, and its character offsets
    into the passage."""
    start, end = row[members, 1], row[members, 2]
    total = start[:, None] + end[None, :]
    n = len(members)
    allowed = np.triu(np.ones((n, n), dtype=bool)) & ~np.triu(np.ones((n, n), dtype=bool), k=longest)
    total = np.where(allowed, total, -np.inf)
    i, j = np.unravel_index(int(np.argmax(total)), total.shape)
    a, b = offsets[members[i], 0], offsets[members[j], 1]
    return float(total[i, j]), (int(a) - prefix, int(b) - prefix)
