"""The small, frozen records that flow between stages: Article -> Chunk -> Hit -> Answer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    author: str
    published: str
    source: str
    text: str
    content_hash: str
    url: str = ""

    @property
    def link(self) -> str:
        """A URL a reader can open, when the article came from the web."""
        if self.url:
            return self.url
        return self.source if self.source.startswith(("http://", "https://")) else ""


@dataclass(frozen=True)
class Skip:
    """A file or record that could not become an Article, and why."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass(frozen=True)
class Chunk:
    """A passage: ``article.text[start:end]``, and its sentences as offsets into ``text``."""

    id: int
    article_id: str
    ordinal: int
    start: int
    end: int
    text: str
    sentences: tuple[tuple[int, int], ...] = ()
    # One unit vector per sentence, pooled at ingest from the passage's own encoding (see the store).
    sentence_vectors: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    article: Article
    score: float
    rank: int
    dense_score: float = 0.0


@dataclass(frozen=True)
class Citation:
    """A cited passage; ``answer_start:answer_end`` locates the quote inside ``passage``."""

    n: int
    article: Article
    passage: str
    answer_start: int
    answer_end: int
    score: float = 0.0
    passage_id: int = 0  # the stored passage's id


@dataclass(frozen=True)
class Answer:
    question: str
    answered: bool
    text: str
    citations: tuple[Citation, ...] = field(default_factory=tuple)
    # With the reader: its probability that ``text`` answers (or, abstaining, that the closest sentence
    # would have); without it, the hand-made features' score (see docs/quality.md).
    confidence: float = 0.0
    # The quote chosen, even when the answer abstains (what evaluation checks): a sentence, or two
    # adjacent ones when the reader is split between them (AnswerOptions.pair_margin).
    sentence: str = ""
    # Words of the question read otherwise, (as typed, as read): "Neveda" -> "Nevada" (spelling.py).
    corrections: tuple[tuple[str, str], ...] = ()
    # Where the words that answer lie in ``text`` ("China and Russia"), when the reader is sure of
    # them, and its probability of them (AnswerOptions.answer_words).
    words: tuple[int, int] | None = None
    words_probability: float = 0.0
