"""Questions wrapped in chat ("hey, can you tell me ...") are read as the question they hold."""

from __future__ import annotations

import pytest

from embeddings.conversation import Conversation
from embeddings.engine import Engine
from embeddings.wording import plain_question


@pytest.mark.parametrize(
    "typed",
    [
        "hey newsbot, can you tell me who opposed the ABM amendment",
        "Can you tell me who opposed the ABM amendment?",
        "do you know who opposed the ABM amendment?",
        "I was wondering, who opposed the ABM amendment? thanks!",
    ],
)
def test_a_question_wrapped_in_chat_is_answered_like_the_question_itself(
    sample_engine: Engine, typed: str
) -> None:
    assert plain_question(typed) == "Who opposed the ABM amendment?"
    result = sample_engine.ask(typed)
    assert result.answered and "China and Russia" in result.text
    assert result.question == typed  # the reply shows what was asked


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        ("who won the cup please", "Who won the cup?"),
        ("Hi! What did Putin say? Thanks!", "What did Putin say?"),
        ("quick question: when was it signed", "When was it signed?"),
        ("any idea why shares fell", "Why shares fell?"),
        ("hey, do you know by what percentage profits rose", "By what percentage profits rose?"),
        # A full stop after a capital ends an abbreviation.
        ("who runs the U.S.", "Who runs the U.S.?"),
        ("who won.", "Who won?"),
        # "and", "so" and "but" stay in front: they mark a follow-up in a conversation.
        ("and can you tell me when it was signed", "And when it was signed?"),
        ("so who won?", "So who won?"),
        ("hey, but do you know why", "But why?"),
    ],
)
def test_greetings_requests_and_thanks_come_off(typed: str, read: str) -> None:
    assert plain_question(typed) == read


@pytest.mark.parametrize(
    "typed",
    [
        "Who opposed the ABM amendment?",
        # No question word follows: what is left would not be the question.
        "Do you know if the deal was signed?",
        "Tell me about the ABM treaty",
        "What about Russia?",
    ],
)
def test_other_text_stays_as_typed(typed: str) -> None:
    assert plain_question(typed) == typed


def test_a_wrapped_follow_up_keeps_its_and_and_is_read_in_its_conversation(
    sample_engine: Engine,
) -> None:
    talk = Conversation()
    first = sample_engine.ask("Who opposed the ABM amendment?", conversation=talk)
    assert first.answered and "China and Russia" in first.text
    # Read as typed, "do you know" led to a sentence about President Clinton's decision, quoted
    # before the one that answers.
    follow_up = sample_engine.ask("and do you know who signed it", conversation=talk)
    assert follow_up.answered and "the US and the Soviet Union" in follow_up.text
    assert "Clinton" not in follow_up.text


def test_long_runs_of_greetings_spaces_or_thanks_are_read_in_one_pass() -> None:
    # Regular expressions that share out such runs every possible way took seconds on these.
    assert plain_question("hey " * 250) == "hey " * 250
    assert plain_question("hey " * 120 + "and " + "hey " * 120) == "hey " * 120 + "and " + "hey " * 120
    assert plain_question("who won" + " " * 900 + "thanks") == "Who won?"
    assert plain_question("who won" + " ?" * 450) == "Who won?"
