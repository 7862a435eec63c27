"""The trained reader: the shipped model, how it reads, and what it changes in answers."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from embeddings.answer import (
    AnswerOptions,
    Sentence,
    answer,
    by_reader,
    quote_bounds,
    read_until_sure,
    score_sentences,
)
from embeddings.articles import make_article
from embeddings.chunking import sentence_spans
from embeddings.encoder import Encoder
from embeddings.engine import Engine, search_options
from embeddings.reader import MODEL_DIR, Candidate, Reader, Reading, in_passage
from embeddings.records import Answer, Chunk, Hit
from embeddings.settings import Settings


@pytest.fixture(scope="module")
def reader() -> Reader:
    return Reader()


def test_the_shipped_model_gives_the_scores_its_export_recorded(reader: Reader) -> None:
    checks = json.loads((MODEL_DIR / "reader.json").read_text(encoding="utf-8"))["checks"]
    assert checks
    for check in checks:
        reading = reader.read(check["question"], in_passage(check["title"], check["sentences"]))
        # int8 kernels differ a little between CPUs (VNNI or not); the order must not.
        np.testing.assert_allclose(reading.scores, check["scores"], atol=0.05)
        assert int(np.argmax(reading.scores)) == int(np.argmax(check["scores"]))


def test_a_sentence_scores_the_same_whatever_else_is_read_with_it(reader: Reader) -> None:
    # Read in one int8 batch, a sentence's score moved with the others' (by up to 1.2).
    question = "Which countries were against changing the ABM treaty?"
    answer = Candidate("Senate votes", "China and Russia opposed the ABM amendment.", "The Senate debated.")
    others = [
        Candidate("Senate votes", "The vote is expected on Friday.", answer.sentence),
        Candidate("Weather", "Heavy rain is forecast for the north of England, with flooding likely " * 3),
    ]
    alone = reader.read(question, [answer])
    together = reader.read(question, [*others, answer])
    assert together.scores[-1] == alone.scores[0]
    assert together.spans[-1] == alone.spans[0]


def test_pairs_read_side_by_side_score_as_read_in_turn(reader: Reader) -> None:
    # Pairs run at once, one intra-op thread each: each score must land on its own sentence.
    checks = json.loads((MODEL_DIR / "reader.json").read_text(encoding="utf-8"))["checks"]
    candidates = [c for check in checks for c in in_passage(check["title"], check["sentences"])]
    question = checks[0]["question"]
    in_turn = Reader(threads=1).read(question, candidates)
    side_by_side = Reader(threads=3).read(question, candidates)
    assert len(set(in_turn.scores.tolist())) == len(candidates)
    # Runs start longest first: each score still lands on its own sentence, as read alone.
    alone = [reader.read(question, [c]).scores[0] for c in candidates]
    np.testing.assert_array_equal(in_turn.scores, np.asarray(alone, dtype=np.float32))
    np.testing.assert_array_equal(side_by_side.scores, in_turn.scores)
    np.testing.assert_array_equal(side_by_side.span_scores, in_turn.span_scores)
    assert side_by_side.spans == in_turn.spans
    np.testing.assert_array_equal(reader.read(question, candidates).scores, in_turn.scores)


def test_the_reader_picks_the_sentence_that_answers_and_marks_the_answer_words(reader: Reader) -> None:
    title = "Senate votes on missile treaty"
    sentences = [
        "The Senate debated the treaty for a week.",
        "China and Russia opposed the ABM amendment, saying it would start an arms race.",
        "The vote is expected on Friday.",
    ]
    reading = reader.read(
        "Which countries were against changing the ABM treaty?", in_passage(title, sentences)
    )
    assert int(np.argmax(reading.scores)) == 1
    start, end = reading.spans[1] or (0, 0)
    assert "China" in sentences[1][start:end]
    assert reading.tokens > 0


def test_answer_spans_lie_inside_the_sentence_never_in_the_title_or_the_one_before(reader: Reader) -> None:
    sentences = ["Paris is the capital of France.", "It has two million people."]
    # The sentence before ("Paris is ...") holds the answer words too: the span still lies in the one read.
    reading = reader.read("What is the capital of France?", in_passage("Paris Paris Paris", sentences))
    for sentence, span in zip(sentences, reading.spans, strict=True):
        assert span is not None
        start, end = span
        assert 0 <= start < end <= len(sentence)


def test_a_sentence_longer_than_the_model_reads_is_still_scored(reader: Reader) -> None:
    long = "The council met on Monday and " + "discussed the budget again and " * 120 + "agreed."
    reading = reader.read(
        "When did the council meet?", [Candidate("Council", long), Candidate("Council", "It rained.", long)]
    )
    assert np.all(np.isfinite(reading.scores)) and reading.tokens <= 2 * reader.max_tokens
    assert reading.scores[0] > reading.scores[1]


def test_a_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    from embeddings.reader import ReaderError

    with pytest.raises(ReaderError, match="no reader model"):
        Reader(tmp_path)


def test_with_the_reader_confidence_is_a_probability_and_abstaining_bolds_nothing(
    settings: Settings, encoder: Encoder
) -> None:
    engine = Engine(settings.replace(reader=True), encoder)
    engine.ensure_default_corpus()
    closest = engine.ask("Who opposed the ABM amendment?")
    assert 0.0 <= closest.confidence <= 1.0
    assert "China and Russia" in closest.sentence
    refused = engine.ask("What is a good recipe for banana bread?")
    assert not refused.answered and 0.0 <= refused.confidence <= 1.0
    assert refused.citations and all(c.answer_start == c.answer_end == 0 for c in refused.citations)


def test_passages_that_do_not_support_the_answer_are_not_cited(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "treaty.txt").write_text(
        "Missile treaty row\n\nChina and Russia opposed the ABM amendment, saying it would start an arms "
        "race.\n",
        encoding="utf-8",
    )
    (tmp_path / "football.txt").write_text(
        "Cup final\n\nThe amendment to the league's rules was opposed by two clubs. The final is on "
        "Saturday at Wembley.\n",
        encoding="utf-8",
    )
    engine.ingest([tmp_path])
    result = engine.ask("Who opposed the ABM amendment?")
    assert result.answered and "China and Russia" in result.text
    assert [c.article.title for c in result.citations] == ["Missile treaty row"]


# Held-out SQuAD 1.1 train questions (training/train_reader.py never trains on articles whose index is
# 7 mod 20), as article-paragraph-question indexes, where, with the question's paragraph alone in the
# store, the shipped features quote a wrong sentence of it and the reader the one that answers.
FEATURES_WRONG_READER_RIGHT = [
    "207-005-01",
    "427-021-01",
    "267-009-04",
    "427-022-04",
    "247-024-02",
    "247-031-04",
    "007-016-03",
    "247-013-02",
    "007-012-01",
    "127-012-01",
    "427-021-03",
    "067-065-01",
    "427-068-02",
    "307-013-01",
    "427-012-03",
    "247-010-02",
]


def test_questions_todays_features_get_wrong_and_the_reader_gets_right(
    shared_data: Path, settings: Settings, encoder: Encoder, tmp_path: Path
) -> None:
    with gzip.open(shared_data / "squad11_train" / "train-v1.1.json.gz", "rt", encoding="utf-8") as f:
        data = json.load(f)["data"]
    outcomes = []
    for case in FEATURES_WRONG_READER_RIGHT:
        a, p, q = (int(x) for x in case.split("-"))
        assert a % 20 == 7, "a question the reader trained on"
        paragraph = data[a]["paragraphs"][p]
        article = make_article(
            id=f"squad-{a}-{p}",
            title=data[a]["title"].replace("_", " "),
            text=paragraph["context"],
            source="squad",
        )
        question, gold = paragraph["qas"][q]["question"], paragraph["qas"][q]["answers"][0]["text"]
        alone = settings.replace(store=tmp_path / case)
        features = Engine(alone.replace(reader=False), encoder)
        features.ingest_items([article])
        # One sentence each: this is about which sentence the reader chooses, not two-sentence quotes.
        with_reader = Engine(alone.replace(reader=True, pair_margin=-1.0), encoder)
        outcomes.append(
            (question, gold in features.ask(question).sentence, gold in with_reader.ask(question).sentence)
        )
    wrong = [o for o in outcomes if o[1] or not o[2]]
    assert not wrong, wrong


class CountingReader(Reader):
    """The shipped reader, counting the sentences it is given."""

    def __init__(self) -> None:
        super().__init__(threads=2)  # two pairs a round, as on 2 cores, whatever this machine has
        self.sentences = 0

    def read(self, question: str, candidates: Sequence[Candidate]) -> Reading:
        self.sentences += len(candidates)
        return super().read(question, candidates)


def _leading(engine: Engine, question: str) -> tuple[np.ndarray, list[Hit]]:
    """The question's vector and its 5 leading passages, as the engine searches."""
    query = engine.searcher.embed_query(question)
    return query, engine.searcher.search(question, search_options(engine.settings), query)[:5]


def test_the_reader_stops_once_no_sentence_left_could_win(sample_engine: Engine) -> None:
    reader = CountingReader()
    options = AnswerOptions()

    def read(question: str, stop: float) -> list[Sentence]:
        query, hits = _leading(sample_engine, question)
        sentences = score_sentences(question, query, hits, options)
        return by_reader(
            read_until_sure(question, sentences, reader, replace(options, reader_stop=stop)), options
        )

    question = "What would the amendment do?"
    sure, everything = read(question, 4.0), read(question, np.inf)
    assert len(sure) == 2 and len(everything) == options.reader_sentences
    assert "would require such an amendment" in sure[0].hit.chunk.text[sure[0].start : sure[0].end]
    assert (sure[0].hit.chunk.id, sure[0].start) == (everything[0].hit.chunk.id, everything[0].start)
    # Here the features' third sentence could still win (the reader gives the first round's best
    # only 0.67): it reads on.
    unsure = read("Who opposed the ABM amendment?", 4.0)
    assert len(unsure) == options.reader_sentences
    assert "China and Russia" in unsure[0].hit.chunk.text[unsure[0].start : unsure[0].end]


def test_a_question_no_reader_could_answer_is_read_one_round(sample_engine: Engine) -> None:
    reader = CountingReader()

    def ask(question: str, hopeless: int) -> tuple[Answer, int]:
        query, hits = _leading(sample_engine, question)
        options = AnswerOptions(hopeless_sentences=hopeless)
        reader.sentences = 0
        idf = sample_engine.searcher.idf(question)
        return answer(question, query, hits, idf, options, reader), reader.sentences

    # The features are far from sure the missile article answers this: even a reader sure of
    # a sentence would leave it refused, so one round of reading orders the closest passages.
    question = "What is a good recipe for banana bread?"
    (one_round, read), (every, read_all) = ask(question, 2), ask(question, 6)
    assert (read, read_all) == (2, 6)
    assert not one_round.answered and not every.answered
    assert one_round.text == every.text and 0.0 <= one_round.confidence <= 1.0
    # A question the articles may answer reads on as before.
    abm, read = ask("Who opposed the ABM amendment?", 2)
    assert abm.answered and read == 6 and "China and Russia" in abm.text


def _sentence(hit: Hit, start: int, end: int, logit: float) -> Sentence:
    return Sentence(hit, start, end, score=0.0, cosine=0.0, reader_logit=logit)


def test_the_quote_takes_in_the_neighbour_the_reader_scores_nearly_as_well() -> None:
    text = "The vote was close. China and Russia opposed it. They said so on Monday. Nobody else did."
    bounds = ((0, 19), (20, 48), (49, 72), (73, 89))
    article = make_article(id="a", title="Treaty", text=text, source="test")
    hit = Hit(Chunk(1, "a", 0, 0, len(text), text, bounds), article, 1.0, 1)
    top = _sentence(hit, 20, 48, 3.0)
    options = AnswerOptions(pair_margin=1.0)
    after = _sentence(hit, 49, 72, 2.5)
    far = _sentence(hit, 73, 89, 2.9)  # close in score, but not next to the chosen sentence
    assert quote_bounds(top, [top, far, after], options) == (20, 72)
    assert quote_bounds(top, [top, _sentence(hit, 0, 19, 1.5)], options) == (20, 48)  # beyond the margin
    assert quote_bounds(top, [top, after], replace(options, pair_margin=-1.0)) == (20, 48)
    assert quote_bounds(top, [top, after], replace(options, quote_chars=40)) == (20, 48)  # too long


def test_a_two_sentence_quote_is_bolded_whole_and_one_sentence_without_it(
    settings: Settings, encoder: Encoder
) -> None:
    engine = Engine(settings.replace(reader=True, pair_margin=100.0), encoder)
    engine.ensure_default_corpus()
    paired = engine.ask("Who opposed the ABM amendment?")
    first = paired.citations[0]
    assert paired.answered and paired.text == first.passage[first.answer_start : first.answer_end]
    assert len(sentence_spans(paired.text)) == 2 and len(paired.text) <= AnswerOptions().quote_chars
    engine.settings = settings.replace(reader=True, pair_margin=-1.0)
    single = engine.ask("Who opposed the ABM amendment?")
    assert single.text in paired.text and len(sentence_spans(single.text)) == 1
