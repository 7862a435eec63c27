"""The command line's job end to end on real files, the real model and a real store."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from pathlib import Path

import faiss
import numpy as np
import pytest
import tantivy

from bot.cli import main
from embeddings import index as vector_index
from embeddings.answer import QuestionError
from embeddings.engine import Engine
from embeddings.store import DB_NAME, Store, StoreBusy, StoreError
from tests.conftest import SEED


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_question_names_china_and_russia_and_cites_the_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No store yet: `ask` indexes the sample article into the default store first, as on a fresh clone.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSBOT_STORE", raising=False)
    code, out, err = run_cli(capsys, "ask", "Who opposed the ABM amendment?")
    assert code == 0 and "indexed the sample article into data/store" in err
    answer_line = next(line for line in out.splitlines() if line.startswith("A:"))
    assert "China and Russia" in answer_line and "[1]" in answer_line
    assert '[1] "Russia, China to Discuss US Missile Plan", Patrick Goodenough, July 7, 2008' in out
    assert "China and Russia oppose any amendment to the Anti-Ballistic Missile Treaty" in out


def test_ask_json_has_the_promised_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "s")
    assert run_cli(capsys, "--store", store, "ingest", "-q", str(SEED))[0] == 0
    code, out, _ = run_cli(capsys, "--store", store, "ask", "--json", "Who opposed the ABM amendment?")
    assert code == 0
    result = json.loads(out)
    assert result["answered"] is True
    assert "China and Russia" in result["answer"]
    first = result["citations"][0]
    assert {"n", "title", "author", "date", "source", "passage"} <= first.keys()
    assert first["n"] == 1 and first["author"] == "Patrick Goodenough" and first["date"] == "July 7, 2008"
    assert result["answer"] in first["passage"]
    assert first["passage"][first["answer_start"] : first["answer_end"]] == result["answer"]
    assert result["read_as"] == {}
    code, out, _ = run_cli(capsys, "--store", store, "ask", "--json", "When was the ABM treaty signed?")
    assert json.loads(out)["answer_words"] == "1972"  # the reader's answer words, when it is sure
    code, out, _ = run_cli(capsys, "--store", store, "ask", "Who opposed the ABM amendmant?")
    assert code == 0 and out.splitlines()[1] == "   (Read \u201camendmant\u201d as \u201camendment\u201d.)"


@pytest.mark.parametrize(
    "question",
    [
        "What is a good recipe for banana bread?",
        "How do I reset my router password?",
        "Who won the 2022 World Cup?",
    ],
)
def test_question_the_articles_do_not_cover_is_not_answered(sample_engine: Engine, question: str) -> None:
    answer = sample_engine.ask(question)
    assert not answer.answered
    assert answer.text == "The articles do not say."


def test_empty_and_overlong_questions_are_clear_errors(
    sample_engine: Engine, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(QuestionError, match="empty"):
        sample_engine.ask("   ")
    with pytest.raises(QuestionError, match="limit is 1000"):
        sample_engine.ask("why " * 400)
    code, _, err = run_cli(capsys, "--store", str(tmp_path / "s"), "ask", " ")
    assert code == 2 and err.count("\n") == 1 and "question is empty" in err


def test_bad_files_are_skipped_with_one_line_each_and_nothing_stored_is_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "s")
    code, out, _ = run_cli(capsys, "--store", store, "ingest", "-q", str(SEED))
    assert code == 0 and "1 added" in out
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_text("")
    (bad / "binary.txt").write_bytes(b"\x00\x01\x02binary")
    (bad / "latin1.txt").write_bytes("Caf\xe9 story\n\nbody".encode("latin-1"))
    (bad / "broken.jsonl").write_text(
        '{"id": "a", "title": "A", "text": "Fine story about budgets."}\n{not json\n'
    )
    (bad / "empty_folder").mkdir()
    # A named path that does not exist is a typo: nothing is ingested (exit 2).
    code, out, err = run_cli(capsys, "--store", store, "ingest", "-q", str(bad), str(tmp_path / "missing"))
    assert code == 2 and err.count("\n") == 1 and "no such file or folder" in err and "missing" in err
    # Some inputs skipped, the rest stored: exit 1.
    code, out, err = run_cli(capsys, "--store", store, "ingest", "-q", str(bad))
    assert code == 1
    warnings = [line for line in err.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == 4, err
    for name in ("empty.txt", "binary.txt", "latin1.txt", "broken.jsonl#2: line 2: invalid JSON"):
        assert any(name in w for w in warnings), (name, warnings)
    assert "1 added" in out  # the good JSON line
    code, out, _ = run_cli(capsys, "--store", store, "ask", "--json", "Who opposed the ABM amendment?")
    assert "China and Russia" in json.loads(out)["answer"]


def test_second_ingest_embeds_nothing(engine: Engine) -> None:
    first = engine.ingest([SEED])
    assert first.added == 1 and first.passages > 0
    again = engine.ingest([SEED])
    assert (again.added, again.changed, again.unchanged, again.passages) == (0, 0, 1, 0)


def test_a_changed_article_replaces_its_passages_and_a_removed_one_leaves(
    engine: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "news"
    folder.mkdir()
    story = folder / "mayor.txt"
    story.write_text(
        "Mayor opens bridge\n\nThe mayor of Riverton opened the new Elm Street bridge on Monday.\n"
    )
    engine.ingest([folder])
    assert "Elm Street" in engine.ask("Which bridge did the Riverton mayor open?").text
    assert len(engine.searcher.keyword_search("elm", 5)[1]) == 1
    story.write_text(
        "Mayor opens bridge\n\nThe mayor of Riverton opened the new Oak Avenue bridge on Tuesday.\n"
    )
    report = engine.ingest([folder])
    assert report.changed == 1
    answer = engine.ask("Which bridge did the Riverton mayor open?")
    assert "Oak Avenue" in answer.text
    assert all("Elm Street" not in c.passage for c in answer.citations)
    # The keyword index follows: the old wording is gone from it, the new is found.
    assert len(engine.searcher.keyword_search("elm", 5)[1]) == 0
    assert len(engine.searcher.keyword_search("oak avenue", 5)[1]) == 1
    story.unlink()
    report = engine.ingest([folder], prune=True)
    assert report.removed == 1
    assert engine.searcher.size == 0
    assert len(engine.searcher.keyword_search("oak avenue", 5)[1]) == 0


def test_the_same_story_from_two_places_is_stored_once(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Storm hits coast\n\nA storm hit the coast of Brittany on Friday.\n")
    (tmp_path / "b.txt").write_text("Storm hits coast\n\nA  STORM hit the coast of   Brittany on Friday.\n")
    report = engine.ingest([tmp_path / "a.txt", tmp_path / "b.txt"])
    assert (report.added, report.duplicates) == (1, 1)
    stats = engine.open_store().stats()
    assert (stats["articles"], stats["sources"]) == (1, 2)


def test_a_store_refuses_another_model(engine: Engine) -> None:
    engine.ingest([SEED])
    with pytest.raises(StoreError, match="built with model 'all-MiniLM-L6-v2' \\(384 dims\\)"):
        Store(engine.store_path, model="other-model", dim=768)


def test_one_writer_at_a_time(engine: Engine) -> None:
    store = engine.open_store()
    with store.writer(), pytest.raises(StoreBusy, match="being written by pid"):
        engine.ingest([SEED])


def test_faiss_ids_map_to_passage_rows_and_vectors_are_unit_length(engine: Engine) -> None:
    engine.ingest([SEED])
    db = sqlite3.connect(engine.store_path / DB_NAME)
    rows = db.execute("SELECT id, vector FROM chunks").fetchall()
    searcher = engine.searcher
    assert searcher.size == len(rows)
    for chunk_id, blob in rows:
        vector = np.frombuffer(blob, dtype=np.float32)
        assert abs(float(np.linalg.norm(vector)) - 1) < 1e-4
        _scores, ids = searcher.dense.search(vector, 1)
        assert ids[0] == chunk_id


def test_a_missing_index_file_is_rebuilt_from_sqlite(engine: Engine) -> None:
    engine.ingest([SEED])
    for path in engine.store_path.glob("vectors-*.faiss"):
        path.unlink()
    fresh = Engine(engine.settings, engine.encoder)
    assert "China and Russia" in fresh.ask("Who opposed the ABM amendment?").text


def test_a_lost_keyword_index_is_caught_up_by_the_next_ingest(engine: Engine) -> None:
    engine.ingest([SEED])
    shutil.rmtree(engine.store_path / "keyword")
    report = engine.ingest([SEED])
    assert report.passages == 0  # nothing re-embedded: the keyword index is rebuilt from SQLite
    fresh = Engine(engine.settings, engine.encoder)
    assert len(fresh.searcher.keyword_search("ABM treaty", 5)[1]) > 0
    assert fresh.searcher.keyword.generation == fresh.searcher.generation


def test_a_lost_keyword_index_is_caught_up_when_the_store_is_opened(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    engine.ingest([SEED])
    shutil.rmtree(engine.store_path / "keyword")
    reader = Engine(engine.settings, engine.encoder)
    assert len(reader.searcher.keyword_search("ABM treaty", 5)[1]) > 0
    # Unless an ingest holds the store: that ingest catches it up, and this reader answers from
    # the vectors meanwhile, without a warning (an ingest under way is no fault).
    shutil.rmtree(engine.store_path / "keyword")
    store = engine.open_store()
    caplog.clear()
    with store.writer():
        busy = Engine(engine.settings, engine.encoder)
        assert len(busy.searcher.keyword_search("ABM treaty", 5)[1]) == 0
        assert "China and Russia" in busy.ask("Who opposed the ABM amendment?").text
    store.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_older_newsbots_keyword_index_is_rebuilt_when_the_store_is_opened(engine: Engine) -> None:
    # Until 2026-12-03 the index stemmed without folding accents ("en_stem"): another schema.
    engine.ingest([SEED])
    folder = engine.store_path / "keyword"
    shutil.rmtree(folder)
    folder.mkdir()
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("id", stored=False, indexed=True, fast=True)
    builder.add_text_field("text", stored=False, tokenizer_name="en_stem", index_option="freq")
    tantivy.Index(builder.build(), path=str(folder))
    reader = Engine(engine.settings, engine.encoder)
    assert len(reader.searcher.keyword_search("ABM treaty", 5)[1]) > 0
    assert reader.searcher.keyword.generation == reader.searcher.generation


def test_a_question_typed_without_accents_finds_the_article_that_has_them(
    engine: Engine, tmp_path: Path
) -> None:
    story = tmp_path / "zurich.txt"
    story.write_text(
        "Zürich vote\n\nVoters in Zürich backed the plan put forward by mayor Hervé Sanchez on Sunday. "
        "The city council had opposed it for a decade.\n",
        encoding="utf-8",
    )
    engine.ingest([SEED, story])
    searcher = engine.searcher
    for question in ("Who is Herve?", "Who is HERVÉ?", "What happened in Zurich?"):
        _, ids = searcher.keyword_search(question, 5)
        chunk = searcher.chunk(int(ids[0])) if ids.size else None
        assert chunk is not None and "Hervé" in chunk.text, question


def test_stats_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "s")
    code, _, err = run_cli(capsys, "--store", store, "stats")
    assert code == 2 and "no store" in err
    run_cli(capsys, "--store", store, "ingest", "-q", str(SEED))
    code, out, _ = run_cli(capsys, "--store", store, "stats", "--json")
    stats = json.loads(out)
    assert stats["articles"] == 1 and stats["passages"] >= 3 and stats["model"] == "all-MiniLM-L6-v2"


def test_bench_runs_a_benchmark_script_and_refuses_unknown_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "bench", "scale", "--help")
    assert code == 0 and "recall@10" in out
    code, _, err = run_cli(capsys, "bench", "nope")
    assert code == 2 and "no benchmark 'nope'" in err


def test_a_store_that_outgrows_exact_search_gets_an_ivf_index(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vector_index, "EXACT_LIMIT", 20)
    folder = tmp_path / "news"
    folder.mkdir()
    (folder / "first.txt").write_text("Harbour reopens\n\nThe harbour at Portwen reopened on Monday.\n")
    engine.ingest([folder])
    assert faiss.try_extract_index_ivf(engine.searcher.dense.base) is None  # one passage: exact search
    for n in range(40):
        (folder / f"story{n}.txt").write_text(
            f"Council story {n}\n\nThe council of town number {n} met on a rainy day to discuss road {n}. "
            f"Councillors voted {n} to {40 - n} on the proposal for the bridge.\n"
        )
    engine.ingest([folder])
    searcher = engine.searcher
    assert faiss.try_extract_index_ivf(searcher.dense.base) is not None
    assert searcher.size == 41
    assert "Monday" in engine.ask("When did the Portwen harbour reopen?").text
    # Replacements and removals keep working on the IVF index.
    (folder / "first.txt").write_text("Harbour reopens\n\nThe harbour at Portwen reopened on Friday.\n")
    (folder / "story0.txt").unlink()
    report = engine.ingest([folder], prune=True)
    assert (report.changed, report.removed) == (1, 1)
    assert faiss.try_extract_index_ivf(engine.searcher.dense.base) is not None
    assert engine.searcher.size == 40
    assert "Friday" in engine.ask("When did the Portwen harbour reopen?").text


def test_small_updates_leave_the_faiss_file_alone_and_readers_add_them(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "news"
    folder.mkdir()
    for name, town, day in (
        ("a", "Alderby", "Monday"),
        ("b", "Brimley", "Tuesday"),
        ("c", "Cowfold", "Friday"),
    ):
        (folder / f"{name}.txt").write_text(f"Fair in {town}\n\nThe {town} summer fair opens on {day}.\n")
    engine.ingest([folder])
    root = engine.store_path
    first = vector_index.saved_generations(root)
    assert len(first) == 1

    (folder / "a.txt").write_text("Fair in Alderby\n\nThe Alderby summer fair opens on Sunday.\n")
    (folder / "b.txt").unlink()
    (folder / "d.txt").write_text("Fair in Dunmore\n\nThe Dunmore summer fair opens on Thursday.\n")
    report = engine.ingest([folder], prune=True)
    assert (report.added, report.changed, report.removed) == (1, 1, 1)
    assert vector_index.saved_generations(root) == first  # no FAISS file written
    searcher = engine.searcher
    assert searcher.dense.base_generation == first[0] and searcher.dense.changes == 4
    assert "Sunday" in engine.ask("When does the Alderby summer fair open?").text
    assert "Thursday" in engine.ask("When does the Dunmore summer fair open?").text
    assert all("Brimley" not in c.passage for c in engine.ask("When is the Brimley fair?").citations)
    db = sqlite3.connect(root / DB_NAME)
    for chunk_id, blob in db.execute("SELECT id, vector FROM chunks"):
        assert searcher.dense.search(np.frombuffer(blob, dtype=np.float32), 1)[1][0] == chunk_id
    assert searcher.size == 3

    # Past the threshold the changes are folded into a new file, and old tombstones go.
    monkeypatch.setattr(vector_index.VectorIndex, "needs_compaction", lambda self, passages: True)
    (folder / "c.txt").write_text("Fair in Cowfold\n\nThe Cowfold summer fair opens on Saturday.\n")
    engine.ingest([folder])
    saved = vector_index.saved_generations(root)
    assert saved[0] == engine.searcher.generation and len(saved) == 2
    assert engine.searcher.dense.changes == 0 and engine.searcher.size == 3
    assert "Saturday" in engine.ask("When does the Cowfold summer fair open?").text
    assert db.execute("SELECT COUNT(*) FROM removed WHERE generation <= ?", (saved[1],)).fetchone()[0] == 0


def test_a_store_from_an_older_newsbot_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    old = sqlite3.connect(tmp_path / "old" / DB_NAME)
    old.execute("CREATE TABLE chunks (id INTEGER PRIMARY KEY, article_id TEXT, vector BLOB)")
    old.commit()
    with pytest.raises(StoreError, match=r"made by an older newsbot .* into a new --store"):
        Store(tmp_path / "old", model="all-MiniLM-L6-v2", dim=384)
