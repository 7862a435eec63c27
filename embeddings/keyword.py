"""The BM25 side: bm25s over the same passages as the vector index, saved per store generation."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

logging.getLogger("bm25s").setLevel(logging.WARNING)

_STEMMER = Stemmer.Stemmer("english")


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    tokens = bm25s.tokenize(
        list(texts), stopwords="en", stemmer=_STEMMER, return_ids=False, show_progress=False
    )
    return tokens


class KeywordIndex:
    """Top-k passages by BM25; ``ids[i]`` is the passage id of bm25s document ``i``."""

    def __init__(self, retriever: bm25s.BM25 | None, ids: np.ndarray) -> None:
        self.retriever = retriever
        self.ids = ids

    @classmethod
    def build(cls, ids: np.ndarray, texts: Sequence[str]) -> KeywordIndex:
        if not len(ids):
            return cls(None, ids)
        retriever = bm25s.BM25()
        retriever.index(tokenize(texts), show_progress=False)
        return cls(retriever, np.asarray(ids, dtype=np.int64))

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and passage ids, best first; passages sharing no term with the query are left out."""
        tokens = tokenize([query])
        if self.retriever is None or not tokens[0]:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        vocab = self.retriever.vocab_dict
        known = [t for t in tokens[0] if t in vocab]
        if not known:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        docs, scores = self.retriever.retrieve(
            [known], k=min(k, len(self.ids)), show_progress=False, n_threads=1
        )
        keep = scores[0] > 0
        return scores[0][keep].astype(np.float32), self.ids[docs[0][keep]]

    def save(self, root: Path, generation: int) -> None:
        if self.retriever is None:
            return
        path = root / f"keyword-{generation}"
        tmp = root / f"keyword-{generation}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.retriever.save(str(tmp), show_progress=False)
        np.save(tmp / "ids.npy", self.ids)
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
        for old in root.glob("keyword-*"):
            if old != path:
                shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, root: Path, generation: int) -> KeywordIndex | None:
        path = root / f"keyword-{generation}"
        if not (path / "ids.npy").exists():
            return None
        try:
            retriever = bm25s.BM25.load(str(path), mmap=True, show_progress=False)
            return cls(retriever, np.load(path / "ids.npy", mmap_mode="r"))
        except (OSError, ValueError):
            return None
