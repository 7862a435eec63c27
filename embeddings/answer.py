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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal

import numpy as np

from embeddings.keyword import name_key, question_terms, tokenize
from embeddings.reader import Candidate, Reader, sigmoid
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
    # Abstain below this confidence (the features'), with or without the reader: calibrated on the BBC
    # dev set against off-topic questions.
    threshold: float = 0.73
    coverage_weight: float = 0.4
    missing_number_penalty: float = 0.4
    # The sentences of this many leading passages compete for the quote. All 5 retrieved chose
    # better than the first 3 on held-out SQuAD train (benchmarks/tune_reader.py): 0.858 -> 0.872
    # with the reader, 0.786 -> 0.796 by the features alone.
    candidates: int = 5
    # The confidence weighs the question's wording against this many leading passages: calibrated so.
    confidence_passages: int = 3
    # A follow-up's sentence is chosen by its own words ("When was it signed?"), which say little
    # about which story, so it keeps to the leading passages the conversation's topic found, as
    # before ``candidates`` grew (chosen on standalone questions: held-out data has no follow-ups).
    # With all 5, the right sentence answered 0.804 of the BBC follow-ups instead of 0.866.
    follow_up_passages: int = 3
    citations: int = 3
    # Tuned with benchmarks/tune_answer.py on SQuAD dev5 and the BBC dev set together.
    weights: tuple[float, ...] = (1.0, 0.6, 0.03, 0.5, 0.5, 0.4)
    # The reader (embeddings/reader.py), when one is given: it reads this many sentences, the best
    # by the features above, each with its title; 0 leaves the choice to the features. On held-out
    # SQuAD train (benchmarks/tune_reader.py) 6 chose better than 4 (0.858 vs 0.849 of 1,200
    # questions) and as well as 8, at 19 ms a question on 2 cores.
    reader_sentences: int = 6
    # It reads them a round at a time (as many as it runs side by side: 2 on 2 cores) and stops
    # once no sentence left could overtake the best unless the reader gave it a logit above this
    # (4: a probability of 0.98). On 4,475 held-out SQuAD train questions the quote changed for 1.1%
    # (4 more wrong, none more right: 0.868 -> 0.867) and 61% stopped after the first round
    # (benchmarks/tune_reader.py --stops; docs/quality.md).
    reader_stop: float = 4.0
    # Sentences it reads when even a sure reader would leave the question refused (the features'
    # confidence too far below the threshold: see ``reader_sure``): there it only orders the
    # closest passages the refusal shows. One round halves `ask`'s median on BBC dev + off-topic;
    # on 4,475 held-out SQuAD train questions no reply changed and 4 of the 286 refused ones lost
    # the answer from their closest sentence (docs/quality.md).
    hopeless_sentences: int = 2
    # A sentence's final score: the reader's logit + these x its best answer span's score and x the
    # features' score.
    reader_span_weight: float = 0.0
    reader_feature_weight: float = 4.0
    # With the reader, confidence is its probability that the chosen sentence answers; it can also
    # abstain below this. 0.5 is the best split on held-out SQuAD train (benchmarks/tune_reader.py),
    # but it refuses 17% of answerable BBC questions (1.4% without), so it is off by default.
    reader_threshold: float = 0.0
    # With the reader, answer when the features' confidence + this x (its probability - 0.5) reaches
    # ``threshold``: a sure reader lowers the bar, a doubtful one raises it. 0.3 is the best at that
    # threshold on held-out SQuAD train (answered + refused, benchmarks/tune_reader.py --abstain).
    reader_abstain_weight: float = 0.3
    # Passages after the first are cited only when they hold at least this share of the question's
    # rare wording that the quoted passage holds, and the reader gives one of their sentences at
    # least ``support`` probability of answering or (without the reader) one of their sentences
    # scores at least this share of the quoted sentence's score (not tuned: see docs/quality.md).
    support: float = 0.5
    support_ratio: float = 0.8
    # With the reader, the quote takes in the sentence before or after the chosen one too when the
    # reader scores that neighbour within this margin of it (its final score), and both together fit
    # in ``quote_chars``: the reader is split when the answer spans them ("... said. He ..."). A
    # negative margin quotes one sentence.
    pair_margin: float = 4.0
    quote_chars: int = 300
    # With the reader, the answer words its span head marks inside the quoted sentence are shown
    # (bold in Discord) when it gives them at least this probability; above 1, never.
    answer_words: float = 0.5


@dataclass(frozen=True)
class Sentence:
    hit: Hit
    start: int  # offsets into the passage
    end: int
    score: float  # by the features
    cosine: float
    reader_logit: float | None = None
    reader_span: float = 0.0  # the reader's best answer span inside the sentence (start + end logit)
    # That span as offsets into the sentence, and the span head's probability of it.
    words: tuple[int, int] | None = None
    words_probability: float = 0.0

    @property
    def probability(self) -> float:
        """The reader's probability that this sentence answers the question (0 when unread)."""
        return 0.0 if self.reader_logit is None else float(sigmoid(self.reader_logit))

    def final(self, feature_weight: float, span_weight: float = 0.0) -> float:
        if self.reader_logit is None:
            return self.score
        return self.reader_logit + span_weight * self.reader_span + feature_weight * self.score


def check_question(question: str, max_chars: int) -> str:
    """The question, stripped; a clear error when it is empty or too long."""
    question = " ".join(question.split())
    if not question:
        raise QuestionError("the question is empty: ask something about the articles")
    if len(question) > max_chars:
        raise QuestionError(f"the question is {len(question)} characters long; the limit is {max_chars}")
    return question


# Dates and numbers an answer can hold. A bare small number ("25 counties") is not a date.
_MONTHS_DAYS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
)
_DATE = re.compile(
    rf"\b(1\d{{3}}|20\d\d)s?\b|\b({_MONTHS_DAYS}|spring|summer|autumn|winter|"
    r"yesterday|today|tomorrow|(next|last) (week|month|year|season))\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(
    r"[£$€]?\d[\d,.]*|\b(two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
    r"forty|fifty|hundred|dozen|half)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w[\w'’&.%,-]*\w|\w")
# A word opens a sentence when only punctuation, an opening quote or nothing comes before it.
_OPENING = re.compile(r"(^|[.!?:][\"”’']?|[\"“‘(])\s*$")
# Capitalised words that are not names of anything a question could ask for.
_NOT_NAMES = frozenset(
    (  # noqa: SIM905 (a word list reads better as words)
        "a an the and or but if as at by for in into of on to with from this that these those it its "
        "he she they we i you his her their our my your there here when while after before since "
        "then so yet not no is was are were be has have had will would can could may should do does "
        "did what which who where why how all some any each every one also however meanwhile "
        "although though because mr mrs ms dr sir"
    ).split()
    + _MONTHS_DAYS.split("|")
)
# Nationalities and the like ("Dutch", "British", "US") name no one on their own.
_DEMONYM = re.compile(r"\w+(ish|ese|ian|an|ic|i)|dutch|french|greek|swiss|thai|us|uk|eu|un|tv")

AnswerKind = Literal["date", "number", "name"]


def expected_kind(question: str) -> AnswerKind | None:
    """What an answer to this question holds: a date, a number or a name, when the wording says."""
    q = question.lower()
    if q.startswith("when") or re.search(r"\b(what|which) (year|date|dates|day|month|century|decade)\b", q):
        return "date"
    if re.search(
        r"\bhow (many|much|long|old|far|big|large|often|fast|tall|high)\b"
        r"|\b(percentage|per cent|cost|price)\b"
        r"|\bwhat (was|is) the score\b|\bwhat (time|level|speed|amount|size|age|rate|figure|total|number)\b",
        q,
    ):
        return "number"
    if (
        re.match(r"(who|whom|whose|where)\b", q)
        # "which bookmaker", "what company": a noun after which/what, not a verb
        or re.search(r"\bwhich\s+(?!(is|are|was|were|did|does|do|has|had|have|will|would|can|could)\b)\w+", q)
        or re.search(r"\bwhat (company|firm|country|city|team|club|band|group|person|party|minister)\b", q)
        or re.search(r"\b(called|named|name of)\b", q)
    ):
        return "name"
    return None


def proper_words(passages: Iterable[str]) -> set[str]:
    """Words the passages capitalise in mid-sentence: names even where they open a sentence."""
    return {
        name_key(m.group(1)) for text in passages for m in re.finditer(r"(?<=[a-z,;] )([A-Z][\w'’-]+)", text)
    }


@lru_cache(maxsize=64)
def _named_in(question: str) -> frozenset[str]:
    """The question's words as names compare (asked of each candidate sentence in turn)."""
    return frozenset(name_key(w) for w in _WORD.findall(question))


def new_names(sentence: str, question: str, proper: set[str]) -> list[str]:
    """Capitalised words of the sentence that the question does not already name.

    A sentence's first word is capitalised anyway: it counts when the next word is capitalised
    too ("William Hill made ...") or the passages use it as a name elsewhere. A nationality on its
    own ("Dutch", "US") names no one."""
    asked = _named_in(question)
    words = list(_WORD.finditer(sentence))
    found = []
    for i, match in enumerate(words):
        word = match.group(0)
        folded = name_key(word)
        if not word[0].isupper() or folded in _NOT_NAMES:
            continue
        if _OPENING.search(sentence[: match.start()]):
            following = words[i + 1].group(0) if i + 1 < len(words) else ""
            if not (following[:1].isupper() or folded in proper):
                continue
        # "India" is named by a question about "Indian" ministers.
        if any(
            folded == a or (min(len(folded), len(a)) > 3 and (a.startswith(folded) or folded.startswith(a)))
            for a in asked
        ):
            continue
        next_capital = i + 1 < len(words) and words[i + 1].group(0)[:1].isupper()
        previous_capital = i > 0 and words[i - 1].group(0)[:1].isupper()
        if not (next_capital or previous_capital) and _DEMONYM.fullmatch(folded):
            continue
        found.append(word)
    return found


def offers(kind: AnswerKind, sentence: str, question: str, proper: set[str]) -> bool:
    """Whether the sentence holds something of the kind asked for that the question does not say."""
    if kind == "name":
        return bool(new_names(sentence, question, proper))
    pattern = _DATE if kind == "date" else _NUMBER
    asked = question.lower()
    return any(m.group(0).lower() not in asked for m in pattern.finditer(sentence))


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
    kind = expected_kind(question)
    proper = proper_words({hit.chunk.text for hit, _, _ in spans}) if kind == "name" else set()
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
        typed = float(kind is not None and offers(kind, text, question, proper))
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
    """How sure the articles hold an answer: the closest sentence's cosine (of these passages' own
    sentences: ``sentences`` may hold more), plus how much of the
    question's wording one leading passage contains, each word weighted by its rarity in the corpus,
    less a penalty when the question names a number (a year, a score) no leading passage holds.

    A question about something no article covers usually names a rare thing no passage holds (a
    person, a place, a year), and that weighs more than the common words it shares with many.
    Coverage is a share, and cosines are bounded, so one threshold serves a single article and
    thousands alike, unlike raw BM25 scores.
    """
    leading = {hit.chunk.id for hit in hits}
    cosines = [s.cosine for s in sentences if s.hit.chunk.id in leading]
    if not cosines:
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
    return max(cosines) + options.coverage_weight * coverage - options.missing_number_penalty * missing


def passage_coverage(question: str, hits: Sequence[Hit], idf: Mapping[str, float]) -> dict[int, float]:
    """Per passage: the share of the question's terms, weighted by corpus rarity, its title and text hold."""
    terms = question_terms(question)
    total = sum(idf.get(t, 0.0) for t in terms) or 1.0
    words = tokenize([f"{h.article.title} {h.chunk.text}" for h in hits])
    return {
        h.chunk.id: sum(idf.get(t, 0.0) for t in terms & set(w)) / total
        for h, w in zip(hits, words, strict=True)
    }


def read_sentences(
    question: str, sentences: Sequence[Sentence], reader: Reader, count: int
) -> list[Sentence]:
    """The ``count`` best sentences (by the features), each scored by the reader as an answer to the
    question, still in the features' order. ``Sentence.probability`` is the reader's."""
    chosen = list(sentences[:count])
    reading = reader.read(question, [candidate(s) for s in chosen])
    return [
        replace(
            s, reader_logit=float(logit), reader_span=float(span), words=words, words_probability=float(p)
        )
        for s, logit, span, words, p in zip(
            chosen,
            reading.scores,
            reading.span_scores,
            reading.spans,
            reading.span_probabilities,
            strict=True,
        )
    ]


def read_until_sure(
    question: str, sentences: Sequence[Sentence], reader: Reader, options: AnswerOptions
) -> list[Sentence]:
    """The features' best ``reader_sentences`` sentences, read a round at a time until no unread
    one could win: its final score is at most ``reader_stop`` + the features' weight x its score,
    and the sentences come best first by the features."""
    count = min(options.reader_sentences, len(sentences))
    weights = (options.reader_feature_weight, options.reader_span_weight)
    read: list[Sentence] = []
    while len(read) < count:
        batch = sentences[len(read) : min(count, len(read) + reader.at_once)]
        read += read_sentences(question, batch, reader, len(batch))
        best = max(s.final(*weights) for s in read)
        if len(read) < count and best > options.reader_stop + weights[0] * sentences[len(read)].score:
            break
    return read


def candidate(sentence: Sentence) -> Candidate:
    """The sentence as the reader reads it: with its article's title and the sentence before it in
    its passage (none for a passage's first)."""
    chunk, span = sentence.hit.chunk, (sentence.start, sentence.end)
    i = chunk.sentences.index(span) if span in chunk.sentences else 0
    before = chunk.text[slice(*chunk.sentences[i - 1])] if i > 0 else ""
    return Candidate(sentence.hit.article.title, chunk.text[sentence.start : sentence.end], before)


def reader_sure(confidence: float, probability: float, options: AnswerOptions) -> bool:
    """Whether to answer with the reader: the features' ``confidence`` + the abstain weight x (the
    reader's ``probability`` - 0.5) reaches the threshold, and the probability passes its own."""
    moved = confidence + options.reader_abstain_weight * (probability - 0.5)
    return moved >= options.threshold and probability >= options.reader_threshold


def by_reader(read: Sequence[Sentence], options: AnswerOptions) -> list[Sentence]:
    """Sentences the reader scored, best first by its logit and the options' weights of the rest."""
    return sorted(read, key=lambda s: -s.final(options.reader_feature_weight, options.reader_span_weight))


def quote_bounds(top: Sentence, read: Sequence[Sentence], options: AnswerOptions) -> tuple[int, int]:
    """Where the quote lies in the chosen sentence's passage: the sentence itself, or it and the
    neighbour the reader scores nearly as well (``read`` is best first, ``top`` its first)."""
    if options.pair_margin < 0 or top.reader_logit is None:
        return top.start, top.end
    chunk = top.hit.chunk
    try:
        i = chunk.sentences.index((top.start, top.end))
    except ValueError:
        return top.start, top.end
    # Overlapping passages share sentences: a neighbour may have been read in the other passage.
    neighbours = {
        chunk.start + a: (a, b)
        for a, b in (chunk.sentences[j] for j in (i - 1, i + 1) if 0 <= j < len(chunk.sentences))
    }
    weights = (options.reader_feature_weight, options.reader_span_weight)
    best = top.final(*weights)
    for other in read[1:]:
        if best - other.final(*weights) > options.pair_margin:
            break
        place = neighbours.get(other.hit.chunk.start + other.start)
        if other.hit.article.id == top.hit.article.id and place is not None:
            start, end = min(top.start, place[0]), max(top.end, place[1])
            if end - start <= options.quote_chars:
                return start, end
    return top.start, top.end


def rerank(
    question: str, query: np.ndarray, hits: Sequence[Hit], reader: Reader, depth: int, rrf_k: int = 10
) -> list[Hit]:
    """The first ``depth`` passages reordered by a rank fusion of the search's order and the reader's
    (each passage judged by the reader's score of its best sentence by the features); the rest keep
    their places. Fused rather than replaced: the reader alone lowered recall (issue 11)."""
    head = list(hits[:depth])
    if len(head) < 2:
        return list(hits)
    options = AnswerOptions()
    best: dict[int, Sentence] = {}
    for sentence in score_sentences(question, query, head, replace(options, candidates=depth)):
        best.setdefault(sentence.hit.chunk.id, sentence)
    read = read_sentences(question, list(best.values()), reader, len(best))
    logit = {s.hit.chunk.id: s.reader_logit for s in read if s.reader_logit is not None}
    by_reader = sorted(head, key=lambda h: -logit.get(h.chunk.id, -np.inf))
    reader_rank = {h.chunk.id: r for r, h in enumerate(by_reader)}
    fused = sorted(
        enumerate(head),
        key=lambda item: -(1 / (rrf_k + item[0]) + 1 / (rrf_k + reader_rank[item[1].chunk.id])),
    )
    ordered = [h for _, h in fused] + list(hits[depth:])
    return [replace(h, rank=r) for r, h in enumerate(ordered, start=1)]


def answer(
    question: str,
    query: np.ndarray,
    hits: Sequence[Hit],
    idf: Mapping[str, float],
    options: AnswerOptions,
    reader: Reader | None = None,
    *,
    judged: float = 0.0,
) -> Answer:
    """The best sentence with its citations, or "the articles do not say" and the closest passages.

    ``idf`` is the corpus rarity of the question's terms (see :meth:`Searcher.idf`). With a
    ``reader``, it reads the leading sentences and its probability is the confidence. ``judged``:
    the features' confidence in another wording of the question, taken when higher (a follow-up
    is judged on the question the conversation resolved it to as well)."""
    if not hits:
        return Answer(question, False, NOT_FOUND)
    sentences = score_sentences(question, query, hits, options)
    confidence = answer_confidence(question, hits[: options.confidence_passages], sentences, idf, options)
    confidence = max(confidence, judged)
    sure = confidence >= options.threshold
    use_reader = reader is not None and options.reader_sentences > 0 and bool(sentences)
    if use_reader and not reader_sure(confidence, 1.0, options):
        # Refused whatever the reader says: it reads only enough to order the closest passages.
        options = replace(options, reader_sentences=min(options.reader_sentences, options.hopeless_sentences))
        use_reader = options.reader_sentences > 0
    if use_reader:
        assert reader is not None
        sentences = by_reader(read_until_sure(question, sentences, reader, options), options)
        # The features' confidence rejects questions on another subject best, the reader's
        # probability questions the right article does not answer (docs/quality.md): it moves the
        # features' bar, and can also veto on its own.
        probability = sentences[0].probability
        sure = reader_sure(confidence, probability, options)
        confidence = probability
    best_in: dict[int, Sentence] = {}
    for sentence in sentences:
        best_in.setdefault(sentence.hit.chunk.id, sentence)
    order, text, answered, chosen = list(hits), NOT_FOUND, False, ""
    words: tuple[int, int] | None = None
    words_probability = 0.0
    if sentences:
        # The passage of the best sentence leads the citations, answered or not: it is the closest.
        start, end = quote_bounds(sentences[0], sentences, options)
        top = replace(sentences[0], start=start, end=end)
        best_in[top.hit.chunk.id] = top  # its citation bolds the whole quote
        order = [top.hit] + [h for h in hits if h.chunk.id != top.hit.chunk.id]
        chosen = top.hit.chunk.text[top.start : top.end]
        answered = sure
        if answered:
            text = chosen
            words = answer_words(sentences[0], top.start, options)
            words_probability = sentences[0].words_probability
    if answered:
        # Only passages with a sentence that answers nearly as well support the answer: by the
        # reader's probability, or by the features' score against the quoted sentence's.
        # And the passage (with its title) must hold nearly as much of the question's rare wording
        # as the quoted one: "Who opposed the ABM amendment?" is not supported by a passage about
        # opposing another amendment.
        coverage = passage_coverage(question, order, idf)

        def supports(hit: Hit) -> bool:
            best = best_in.get(hit.chunk.id)
            if best is None or coverage[hit.chunk.id] < options.support_ratio * coverage[order[0].chunk.id]:
                return False
            if use_reader:
                return best.probability >= options.support
            return best.score >= options.support_ratio * sentences[0].score

        order = order[:1] + [h for h in order[1:] if supports(h)]
    citations = []
    for n, hit in enumerate(order[: options.citations], start=1):
        # Under "the articles do not say" the reader's passages are only the closest: nothing is bold.
        best = best_in.get(hit.chunk.id) if answered else None
        citations.append(
            Citation(
                n=n,
                article=hit.article,
                passage=hit.chunk.text,
                answer_start=best.start if best else 0,
                answer_end=best.end if best else 0,
                score=hit.dense_score,
                passage_id=hit.chunk.id,
            )
        )
    return Answer(
        question,
        answered,
        text,
        tuple(citations),
        confidence,
        chosen,
        words=words,
        words_probability=words_probability,
    )


def answer_words(sentence: Sentence, quote_start: int, options: AnswerOptions) -> tuple[int, int] | None:
    """Where the reader's answer words lie in the quote (which starts at ``quote_start`` in the
    passage, at or before ``sentence``), when its span head is sure enough of them."""
    if sentence.words is None or sentence.words_probability < options.answer_words:
        return None
    shift = sentence.start - quote_start
    return sentence.words[0] + shift, sentence.words[1] + shift
