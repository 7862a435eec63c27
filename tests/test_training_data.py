"""How the reader's training data is made (training/train_reader.py); no torch needed for this."""

from __future__ import annotations

import random

from training.train_reader import Item, Squad, paragraph_words, swapped

FIRST = ("The treaty was signed in Geneva in 1972.", "It limited missile defences.")
SECOND = ("Talks later moved to Vienna, where officials met in 1985.",)


def _item(question: str) -> Item:
    return Item(question, "ABM Treaty", FIRST, 0, (25, 31), "geneva", 0, 0)


def test_an_unanswerable_copy_swaps_a_name_the_paragraph_holds_for_one_it_does_not() -> None:
    squad = Squad([], [], ["ABM Treaty"], [[FIRST, SECOND]])
    question, pairs = swapped(
        random.Random(1), _item("Where was the treaty signed in 1972?"), paragraph_words(squad), 1
    )
    # 1972 is the question's only name or number that its paragraph holds; 1985 is the only number of
    # the article's other paragraphs.
    assert question == "Where was the treaty signed in 1985?"
    assert [p.sentence for p in pairs] == [FIRST[0], FIRST[1]]
    assert all(p.label == 0.0 and p.answer is None for p in pairs)


def test_a_question_with_nothing_to_swap_gets_no_unanswerable_copy() -> None:
    squad = Squad([], [], ["ABM Treaty"], [[FIRST, SECOND]])
    words = paragraph_words(squad)
    assert swapped(random.Random(1), _item("what did it limit?"), words, 1) is None
    # A name the paragraph does not hold is no anchor: swapping it would change nothing it answers.
    assert swapped(random.Random(1), _item("Where did Brezhnev sign?"), words, 1) is None
