"""The trained reader: the shipped model, how it reads, and what it changes in answers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from embeddings.chunking import sentence_spans
from embeddings.encoder import Encoder
from embeddings.engine import Engine
from embeddings.keyword import question_terms, tokenize
from embeddings.reader import MODEL_DIR, Passage, Reader, encode, split_passage
from embeddings.settings import Settings

# SQuAD 1.1 train questions from articles the reader never trained on (training/train_reader.py holds
# out every article whose index is 7 mod 20), where the question's words (today's strongest feature)
# point at the wrong sentence of the gold paragraph and the reader at the right one.
OVERLAP_WRONG_READER_RIGHT = [
    "107-009-03",  # The enforcement of the legislation of the Constitution Act began in what year?
    "007-025-03",  # When did Apple begin selling entire films through the iTunes store?
    "427-036-03",  # What Calvinism doctrines are examples of the concept of the sovereignty of God?
    "007-007-03",  # What type of media was included with purchase of the U2 version of the iPod?
    "427-033-02",  # Who headed the Anglican reforms in the middle of the 16th century?
]


@pytest.fixture(scope="module")
def reader() -> Reader:
    return Reader()


def test_the_shipped_model_gives_the_scores_its_export_recorded(reader: Reader) -> None:
    checks = json.loads((MODEL_DIR / "reader.json").read_text(encoding="utf-8"))["checks"]
    assert checks
    for check in checks:
        passage = Passage(
            check["passage"]["title"],
            check["passage"]["text"],
            tuple(tuple(s) for s in check["passage"]["sentences"]),
        )
        (reading,) = reader.read(check["question"], [passage])
        # int8 kernels differ a little between CPUs (VNNI or not); the order must not.
        np.testing.assert_allclose(reading.scores, check["scores"], atol=0.05)
        assert int(np.argmax(reading.scores)) == int(np.argmax(check["scores"]))


def test_the_reader_picks_the_sentence_that_answers(reader: Reader) -> None:
    text = (
        "The Senate debated the treaty for a week. China and Russia opposed the ABM amendment, "
        "saying it would start an arms race. The vote is expected on Friday."
    )
    passage = Passage("Senate votes on missile treaty", text, tuple(sentence_spans(text)))
    (reading,) = reader.read("Which countries were against changing the ABM treaty?", [passage])
    assert int(np.argmax(reading.scores)) == 1
    start, end = reading.spans[1] or (0, 0)
    assert "China" in text[start:end]


def test_every_token_of_the_passage_belongs_to_its_own_sentence(reader: Reader) -> None:
    text = "Tom left early. He took the train home. It rained."
    passage = Passage("Title", text, tuple(sentence_spans(text)))
    encoded = encode(reader._tokenizer, "Who left?", [passage])
    ids = encoded.input_ids[0]
    words = [reader._tokenizer.decode([int(ids[i]) for i in m]) for m in encoded.members[0]]
    assert words == ["tom left early.", "he took the train home.", "it rained."]
    # [CLS] question [SEP] is segment 0, the passage segment 1.
    assert encoded.token_type_ids[0, 0] == 0 and encoded.token_type_ids[0, encoded.members[0][0][0]] == 1


def test_a_sentence_cut_off_by_the_length_limit_gets_no_score(reader: Reader) -> None:
    text = "Short one. " + "word " * 400 + "end. Last sentence here."
    passage = Passage("", text, tuple(sentence_spans(text)))
    (reading,) = reader.read("What is last?", [passage])
    assert np.isfinite(reading.scores[0]) and reading.scores[-1] == -np.inf


def test_a_long_text_is_read_in_pieces_that_each_fit() -> None:
    text = "One. Two. Three. Four."
    passage = Passage("T", text, ((0, 4), (5, 9), (10, 16), (17, 22)))
    parts = split_passage(passage, [5, 5, 5, 5], budget=10)
    assert [p.text for p in parts] == ["One. Two.", "Three. Four."]
    assert all(p.text[a:b].strip() for p in parts for a, b in p.sentences)


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


def test_questions_the_word_overlap_gets_wrong_and_the_reader_gets_right(
    shared_data: Path, reader: Reader
) -> None:
    with gzip.open(shared_data / "squad11_train" / "train-v1.1.json.gz", "rt", encoding="utf-8") as f:
        data = json.load(f)["data"]
    outcomes = []
    for case in OVERLAP_WRONG_READER_RIGHT:
        a, p, q = (int(x) for x in case.split("-"))
        article = data[a]
        context = article["paragraphs"][p]["context"]
        qa = article["paragraphs"][p]["qas"][q]
        spans = tuple(sentence_spans(context))
        gold = qa["answers"][0]["text"].lower()
        right = [gold in context[s:e].lower() for s, e in spans]
        asked = question_terms(qa["question"])
        overlap = [len(asked & set(t)) for t in tokenize([context[s:e] for s, e in spans])]
        scores, _ = reader.score_text(qa["question"], Passage(article["title"], context, spans))
        outcomes.append((qa["question"], right[int(np.argmax(overlap))], right[int(np.argmax(scores))]))
    assert all(not by_overlap and by_reader for _, by_overlap, by_reader in outcomes), outcomes
