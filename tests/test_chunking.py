"""Sentences and passages: what a quote can be cut from."""

from __future__ import annotations

from embeddings.chunking import sentence_spans

# A plain-text article hard-wrapped at ~95 columns, as mail and old text files are.
WRAPPED = """\
Bookmaker halts bets

A bookmaker has stopped taking bets on the Little Shelford bake-off after claiming the judges'
verdict had leaked. Hartley Wager made the move after four customers tried to place large
bets on the surprise winner.

By Jane Doe
Staff Writer
"""


def test_a_hard_wrapped_paragraph_is_read_as_whole_sentences() -> None:
    sentences = [WRAPPED[a:b] for a, b in sentence_spans(WRAPPED)]
    assert sentences == [
        "Bookmaker halts bets",
        "A bookmaker has stopped taking bets on the Little Shelford bake-off after claiming the judges'\n"
        "verdict had leaked.",
        "Hartley Wager made the move after four customers tried to place large\nbets on the surprise winner.",
        # Short lines are lines of their own: a byline and a sign-off are not one sentence.
        "By Jane Doe",
        "Staff Writer",
    ]


def test_one_sentence_per_line_when_lines_end_sentences() -> None:
    text = "First point made here.\nSecond point, on a line of its own.\nThird"
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "First point made here.",
        "Second point, on a line of its own.",
        "Third",
    ]
