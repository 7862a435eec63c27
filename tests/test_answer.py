"""Which sentence the answer quotes: the one that holds what the question asks for."""

from __future__ import annotations

from pathlib import Path

import pytest

from embeddings.answer import (
    AnswerOptions,
    Sentence,
    answer_confidence,
    expected_kind,
    new_names,
    proper_words,
)
from embeddings.articles import make_article
from embeddings.engine import Engine
from embeddings.keyword import question_words, tokenize
from embeddings.records import Chunk, Hit

# Written for this test. Its last paragraph has a year and a bare number ("25 counties").
STORY = """\
Bookmaker halts bets on village bake-off

A bookmaker has stopped taking bets on the Little Shelford bake-off after claiming the judges'
verdict had leaked.

Hartley Wager made the move after four customers tried to place large bets on Friday's surprise winner.

Rival firm Coombe Odds said its prices were unchanged. The contest was first held in 1337 by the
village guild, which now runs stalls across 25 counties.
"""


@pytest.fixture
def bakeoff(engine: Engine, tmp_path: Path) -> Engine:
    (tmp_path / "bakeoff.txt").write_text(STORY, encoding="utf-8")
    engine.ingest([tmp_path / "bakeoff.txt"])
    return engine


def test_a_year_question_is_answered_by_the_sentence_with_a_year(bakeoff: Engine) -> None:
    answer = bakeoff.ask("In what year was the Little Shelford bake-off first held?")
    assert "1337" in answer.text


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Who won the first ever Lit Idol contest?", "name"),
        ("Which bookmaker closed its book?", "name"),
        ("What's the name of the photographer?", "name"),
        ("How many fans were at Highbury?", "number"),
        ("What was the score when Middlesbrough beat Manchester City?", "number"),
        ("When is Ashia Hansen expected to compete again?", "date"),
        ("In what year was the Duchy of Cornwall set up?", "date"),
        ("Why did the talks fail?", None),
        ("Which is the larger party?", None),
    ],
)
def test_the_kind_of_answer_a_question_asks_for(question: str, kind: str | None) -> None:
    assert expected_kind(question) == kind


def test_names_the_question_does_not_already_say() -> None:
    question = "Which Indian minister spoke in London on Thursday?"
    proper = proper_words(["The talks were chaired by Chidambaram in the end."])
    # Words the question names (India for Indian), weekdays, nationalities and an ordinary
    # capitalised first word are not new names.
    assert new_names("In London on Thursday, India's finance minister spoke.", question, proper) == []
    assert new_names("Dutch officials agreed.", question, proper) == []
    assert new_names("Ministers from the US agreed.", question, proper) == []
    # A name opening the sentence counts when a second capitalised word follows, or the passages
    # use it as a name elsewhere.
    assert new_names("Palaniappan Chidambaram spoke.", question, proper) == ["Palaniappan", "Chidambaram"]
    assert new_names("Chidambaram spoke first.", question, proper) == ["Chidambaram"]
    # A name the question types without its accents is still the question's.
    assert new_names("The mayor, Hervé Sanchez, met Marc Dupont.", "Who did Herve Sanchez meet?", proper) == [
        "Marc",
        "Dupont",
    ]


def test_wording_is_compared_on_stemmed_words_without_stop_words_or_question_words() -> None:
    # One-letter runs ("U", "S") are no words; "were" is no stop word in Lucene's list.
    assert tokenize(["The ministers were opposing it, and U.S. co-op 2,000"]) == [
        ["minist", "were", "oppos", "co", "op", "000"]
    ]
    asked = question_words("Who opposed the ABM amendment in the U.S.? Who?")
    assert asked == ["opposed", "abm", "amendment"]


def test_the_confidence_weighs_the_leading_passages_though_more_compete_for_the_quote() -> None:
    # The sentences of all 5 passages compete for the quote, but the threshold was calibrated on the
    # leading 3: a close sentence in the fifth must not make an off-topic question look answered.
    hits, sentences = [], []
    for rank, cosine in enumerate((0.2, 0.3, 0.25, 0.1, 0.9), start=1):
        text = f"Passage {rank} says one thing."
        article = make_article(id=f"a{rank}", title=f"Story {rank}", text=text, source="test")
        hit = Hit(Chunk(rank, article.id, 0, 0, len(text), text, ((0, len(text)),)), article, 1.0, rank)
        hits.append(hit)
        sentences.append(Sentence(hit, 0, len(text), score=cosine, cosine=cosine))
    options = AnswerOptions()
    assert options.candidates == 5 and options.confidence_passages == 3
    leading = answer_confidence("Who won?", hits[: options.confidence_passages], sentences, {}, options)
    assert leading == pytest.approx(0.3)
    assert answer_confidence("Who won?", hits, sentences, {}, options) == pytest.approx(0.9)
