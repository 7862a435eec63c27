"""From retrieved passages to a short answer: pick the sentence that answers, cite where it came from.

There is no generative model: the answer is a sentence quoted from an article. Each sentence of the
leading passages is scored by its meaning (cosine between the question and the sentence vector pooled
at ingest), by the question's keywords it and its neighbours contain, and by what kind of answer the
question asks for. Nothing is encoded here but the question, which the search already did. When even
the best passage is a weak match, the answer says so and lists the closest passages instead of
pretending.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from embeddings.keyword import question_terms, tokenize
from embeddings.records import Answer, Citation, Hit

NOT_FOUND = "The articles do not say."


class QuestionError(ValueError):
    """A question that cannot be asked as it is."""


# Sentence features, in the order of AnswerOptions.weights.
FEATURES = (
    "cosine",
    "keywords",
    "passage_rank",
    "answer_type",
    "passage_cosine",
    "context_keywords",
)


@dataclass(frozen=True)
class AnswerOptions:
    # Abstain below this confidence: calibrated on the BBC dev set against off-topic questions.
    threshold: float = 0.73
    coverage_weight: float = 0.4
    missing_number_penalty: float = 0.4
    candidates: int = 3
    citations: int = 3
    # Tuned with benchmarks/tune_answer.py on SQuAD dev5 and the BBC dev set together.
    weights: tuple[float, ...] = (1.0, 0.6, 0.03, 0.3, 0.5, 0.4)


@dataclass(frozen=True)
class Sentence:
    hit: Hit
    start: int  # offsets into the passage
    end: int
    score: float
    cosine: float


def check_question(question: str, max_chars: int) -> str:
    """The question, stripped; a clear error when it is empty or too long."""
    question = " ".join(question.split())
    if not question:
        raise QuestionError("the question is empty: ask something about the articles")
    if len(question) > max_chars:
        raise QuestionError(f"the question is {len(question)} characters long; the limit is {max_chars}")
    return question


_YEAR_OR_DATE = re.compile(
    r"\b(1[5-9]\d\d|20\d\d|\d{1,2}(st|nd|rd|th)?|january|february|march|april|may|june|july|august|"
    r"september|october|november|december|monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
    r"century|decade|week|month|year|today|yesterday)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(
    r"\d|\b(two|three|four|five|six|seven|eight|nine|ten|dozen|hundred|thousand|million|billion)\b",
    re.IGNORECASE,
)
_NAME = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][a-zA-Z'’-]+")


def expected_type(question: str) -> re.Pattern[str] | None:
    """What an answer to this question contains: a date, a number or a name, when the wording says."""
    q = question.lower()
    if q.startswith("when") or re.search(r"\b(what|which) (year|date|day|month|century|decade)\b", q):
        return _YEAR_OR_DATE
    if re.search(r"\bhow (many|much|long|old|far|big|large|often)\b|\b(percentage|per cent|cost|price)\b", q):
        return _NUMBER
    if (
        re.match(r"(who|whom|whose|where)\b", q)
        # "which bookmaker", "what company": a noun after which/what, not a verb
        or re.search(r"\bwhich\s+(?!(is|are|was|were|did|does|do|has|had|have|will|would|can|could)\b)\w+", q)
        or re.search(r"\bwhat (company|firm|country|city|team|club|band|group|person|party|minister)\b", q)
        or re.search(r"\b(called|named)\b", q)
    ):
        return _NAME
    return None


def sentence_features(
    question: str, query: np.ndarray, hits: Sequence[Hit], candidates: int
) -> tuple[list[tuple[Hit, int, int]], np.ndarray]:
    """Each distinct sentence of the leading passages, and its features (one row, FEATURES order)."""
    spans: list[tuple[Hit, int, int]] = []
    vectors: list[np.ndarray] = []
    seen: set[tuple[str, int]] = set()
    for hit in hits[:candidates]:
        chunk = hit.chunk
        assert chunk.sentence_vectors is not None, "a passage read from a store has sentence vectors"
        for (a, b), vector in zip(chunk.sentences, chunk.sentence_vectors, strict=True):
            # Overlapping passages share sentences: score each sentence of an article once.
            key = (chunk.article_id, chunk.start + a)
            if key not in seen:
                seen.add(key)
                spans.append((hit, a, b))
                vectors.append(vector)
    if not spans:
        return spans, np.zeros((0, len(FEATURES)), dtype=np.float32)
    texts = [hit.chunk.text[a:b] for hit, a, b in spans]
    cosines = np.stack(vectors) @ query
    asked = question_terms(question)
    sentence_terms = [set(t) for t in tokenize(texts)]
    # Terms rare among the candidate sentences say more about which one answers: a local IDF.
    n = len(texts)
    idf = {t: np.log(1 + n / (1 + sum(t in terms for terms in sentence_terms))) for t in asked}
    total = sum(idf.values()) or 1.0
    pattern = expected_type(question)
    question_lower = question.lower()
    rows = []
    for i, ((hit, _, _), text, terms, cosine) in enumerate(
        zip(spans, texts, sentence_terms, cosines, strict=True)
    ):
        keywords = sum(idf[t] for t in asked & terms) / total
        # Questions often name what the previous or next sentence says ("He said ..." answers).
        window = terms.union(
            *(sentence_terms[j] for j in (i - 1, i + 1) if 0 <= j < n and spans[j][0] is hit)
        )
        context = sum(idf[t] for t in asked & window) / total
        typed = 0.0
        if pattern is not None:
            typed = float(any(m.group(0).lower() not in question_lower for m in pattern.finditer(text)))
        rows.append((float(cosine), keywords, 1.0 / hit.rank, typed, hit.dense_score, context))
    return spans, np.asarray(rows, dtype=np.float32)


def score_sentences(
    question: str, query: np.ndarray, hits: Sequence[Hit], options: AnswerOptions
) -> list[Sentence]:
    """Every sentence of the leading passages with its score, best first."""
    spans, features = sentence_features(question, query, hits, options.candidates)
    if not spans:
        return []
    scores = features @ np.asarray(options.weights, dtype=np.float32)
    scored = [
        Sentence(hit, a, b, float(score), float(row[0]))
        for (hit, a, b), score, row in zip(spans, scores, features, strict=True)
    ]
    return sorted(scored, key=lambda s: -s.score)


def answer_confidence(
    question: str,
    hits: Sequence[Hit],
    sentences: Sequence[Sentence],
    idf: Mapping[str, float],
    options: AnswerOptions,
) -> float:
    """How sure the articles hold an answer: the closest sentence's cosine, plus how much of the
    question's wording one leading passage contains, each word weighted by its rarity in the corpus,
    less a penalty when the question names a number (a year, a score) no leading passage holds.

    A question about something no article covers usually names a rare thing no passage holds (a
    person, a place, a year), and that weighs more than the common words it shares with many.
    Coverage is a share, and cosines are bounded, so one threshold serves a single article and
    thousands alike, unlike raw BM25 scores.
    """
    if not sentences:
        return 0.0
    terms = question_terms(question)
    # The dateline counts: "in 2005" is answered by an article from 2005 that says "this year".
    # One article's leading passages count together: a question can name things its different
    # paragraphs hold.
    by_article: dict[str, set[str]] = {}
    for hit, words in zip(
        hits, tokenize([f"{h.article.title} {h.article.published} {h.chunk.text}" for h in hits]), strict=True
    ):
        by_article.setdefault(hit.article.id, set()).update(words)
    passages = list(by_article.values())
    coverage = 0.0
    total = sum(idf.get(t, 0.0) for t in terms)
    if total > 0:
        coverage = max(sum(idf.get(t, 0.0) for t in terms & words) / total for words in passages)
    numbers = [t for t in terms if any(c.isdigit() for c in t)]
    missing = any(all(n not in words for words in passages) for n in numbers)
    return (
        max(s.cosine for s in sentences)
        + options.coverage_weight * coverage
        - options.missing_number_penalty * missing
    )


def answer(
    question: str,
    query: np.ndarray,
    hits: Sequence[Hit],
    idf: Mapping[str, float],
    options: AnswerOptions,
) -> Answer:
    """The best sentence with its citations, or "the articles do not say" and the closest passages.

    ``idf`` is the corpus rarity of the question's terms (see :meth:`Searcher.idf`)."""
    if not hits:
        return Answer(question, False, NOT_FOUND)
    sentences = score_sentences(question, query, hits, options)
    confidence = answer_confidence(question, hits[: options.candidates], sentences, idf, options)
    best_in: dict[int, Sentence] = {}
    for sentence in sentences:
        best_in.setdefault(sentence.hit.chunk.id, sentence)
    order, text, answered = list(hits), NOT_FOUND, False
    if sentences:
        # The passage of the best sentence leads the citations, answered or not: it is the closest.
        top = sentences[0]
        order = [top.hit] + [h for h in hits if h.chunk.id != top.hit.chunk.id]
        if confidence >= options.threshold:
            text, answered = top.hit.chunk.text[top.start : top.end], True
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
