"""Misspelt words read as the stored articles spell them, and only those (embeddings/spelling.py)."""

from __future__ import annotations

import pytest

from embeddings.engine import Engine


def test_a_misspelt_word_is_read_as_the_articles_word_and_the_answer_says_so(sample_engine: Engine) -> None:
    answer = sample_engine.ask("Who opposed the ABM amendmant?")
    assert answer.answered and "China and Russia" in answer.text
    assert answer.question == "Who opposed the ABM amendmant?"  # as typed
    assert answer.corrections == (("amendmant", "amendment"),)


@pytest.mark.parametrize(
    ("question", "read"),
    [
        ("When did Vladimir Puttin begin his visit to China?", (("Puttin", "Putin"),)),
        ("Which treaty did the Soveit Union sign?", (("Soveit", "Soviet"),)),
        ("What wuold NMD require?", (("wuold", "would"),)),
        # Under five letters, too many words are one edit away.
        ("When did Ptin visit China?", ()),
    ],
)
def test_names_and_words_one_edit_off_are_read_right(
    sample_engine: Engine, question: str, read: tuple[tuple[str, str], ...]
) -> None:
    assert sample_engine.searcher.spell(question).corrections == read


@pytest.mark.parametrize(
    "question",
    [
        # An English word the article lacks, one edit from one it has ("missile").
        "Who opposed the missive about defense plans?",
        # A name the article lacks, one edit from one it has ("Putin"), asked about nothing the
        # passages holding that name talk about.
        "What did Putan say about the football transfer?",
        # Spelt as the article spells it.
        "Who opposed the ABM amendment?",
        # Mostly words nobody knows: noise, not typos, though "amendmant" alone would be read.
        "asdfgh zxcvbn hjklmn amendmant treatie",
    ],
)
def test_words_english_knows_and_names_out_of_context_stay_as_typed(
    sample_engine: Engine, question: str
) -> None:
    assert sample_engine.searcher.spell(question).question == question


def test_spelling_can_be_turned_off(sample_engine: Engine) -> None:
    engine = Engine(sample_engine.settings.replace(spelling=False), sample_engine.encoder)
    assert engine.ask("Who opposed the ABM amendmant?").corrections == ()
