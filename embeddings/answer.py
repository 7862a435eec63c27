"""From retrieved passages to a short answer: pick the sentence that answers, cite where it came from.

There is no generative model: the answer is a sentence quoted from an article. Each sentence of the
leading passages is scored by its meaning (cosine to the question), by the question's keywords it
contains, and by the rank of its passage. When even the best passage is a weak match, the answer
says so and lists the closest passages instead of pretending.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embeddings.chunking import sentence_spans
from embeddings.encoder import Encoder
from embeddings.keyword import tokenize
from embeddings.records import Answer, Citation, Hit

NOT_FOUND = "The articles do not say."


class QuestionError(ValueError):
    """A question that cannot be asked as it is."""


@dataclass(frozen=True)
class AnswerOptions:
    threshold: float = 0.3
    candidates: int = 3
    citations: int = 3
    keyword_weight: float = 0.3
    rank_weight: float = 0.05


@dataclass(frozen=True)
class Sentence:
    hit: Hit
    start: int  # offsets into the passage
    end: int
    score: float


def check_question(question: str, max_chars: int) -> str:
    """The question, stripped; a clear error when it is empty or too long."""
    question = " ".join(question.split())
    if not question:
        raise QuestionError("the question is empty: ask something about the articles")
    if len(question) > max_chars:
        raise QuestionError(f"the question is {len(question)} characters long; the limit is {max_chars}")
    return question


_NUMBER = re.compile(r"\d")


def keyword_overlap(question_terms: set[str], sentence: str) -> float:
    if not question_terms:
        return 0.0
    return len(question_terms & set(tokenize([sentence])[0])) / len(question_terms)


def score_sentences(
    question: str, query: np.ndarray, hits: Sequence[Hit], encoder: Encoder, options: AnswerOptions
) -> list[Sentence]:
    """Every sentence of the leading passages with its score, best first."""
    spans: list[tuple[Hit, int, int]] = []
    seen: set[tuple[str, int]] = set()
    for hit in hits[: options.candidates]:
        for a, b in sentence_spans(hit.chunk.text):
            # Overlapping passages share sentences: score each sentence of an article once.
            key = (hit.chunk.article_id, hit.chunk.start + a)
            if key not in seen:
                seen.add(key)
                spans.append((hit, a, b))
    if not spans:
        return []
    texts = [hit.chunk.text[a:b] for hit, a, b in spans]
    cosines = encoder.encode(texts) @ query
    terms = set(tokenize([question])[0])
    scored = [
        Sentence(
            hit,
            a,
            b,
            float(cos)
            + options.keyword_weight * keyword_overlap(terms, text)
            - options.rank_weight * (hit.rank - 1),
        )
        for (hit, a, b), text, cos in zip(spans, texts, cosines, strict=True)
    ]
    return sorted(scored, key=lambda s: -s.score)


def answer(
    question: str, query: np.ndarray, hits: Sequence[Hit], encoder: Encoder, options: AnswerOptions
) -> Answer:
    """The best sentence with its citations, or "the articles do not say" and the closest passages."""
    if not hits:
        return Answer(question, False, NOT_FOUND)
    sentences = score_sentences(question, query, hits, encoder, options)
    # The best sentence's own match (its rank handicap added back) measures whether anything answers.
    confidence = sentences[0].score + options.rank_weight * (sentences[0].hit.rank - 1) if sentences else 0.0
    best_in: dict[int, Sentence] = {}
    for sentence in sentences:
        best_in.setdefault(sentence.hit.chunk.id, sentence)
    answered = confidence >= options.threshold and bool(sentences)
    if answered:
        top = sentences[0]
        order = [top.hit] + [h for h in hits if h.chunk.id != top.hit.chunk.id]
        text = top.hit.chunk.text[top.start : top.end]
    else:
        order = list(hits)
        text = NOT_FOUND
    citations = []
    for n, hit in enumerate(order[: options.citations], start=1):
        best = best_in.get(hit.chunk.id)
        citations.append(
            Citation(
                n=n,
                article=hit.article,
                passage=hit.chunk.text,
                answer_start=best.start if best else 0,
                answer_end=best.end if best else 0,
                score=hit.dense_score,
            )
        )
    return Answer(question, answered, text, tuple(citations), confidence)
