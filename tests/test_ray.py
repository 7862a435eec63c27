"""`newsbot ingest --ray`: embedding through Ray Data on a local Ray builds the store a local ingest builds.

Real model, real stores, a real (local, 2-CPU) Ray: the same passage ids, articles and offsets, the same
vectors (the int8 default backend included: the Ray tasks get the local encoder's own batches), and
the same answers. Starting Ray costs a few seconds, so there are two starts in all: the command's own,
and one the encoder tests share.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray

from bot.cli import main, ray_target
from embeddings.encoder import Encoder
from embeddings.engine import Engine
from embeddings.ray_encoder import RayEncoder
from embeddings.settings import SAMPLES_DIR, load_settings
from embeddings.store import DB_NAME

PLACES = ["Riverton", "Elmwood", "Ashford", "Brackley", "Cedarville", "Dunmore", "Eastleigh", "Fairhaven"]
THINGS = ["bridge", "library", "market", "school", "harbour", "museum", "station", "orchard"]
QUESTIONS = [
    "Who opposed the ABM amendment?",
    "How many visits did the Ashford library log in week 2?",
    "Who reopened the Riverton bridge?",
]


def write_corpus(folder: Path, n: int = 20) -> Path:
    """The sample article and ``n`` stories of 2 to 40 sentences, so passages come in many lengths."""
    folder.mkdir()
    for sample in SAMPLES_DIR.glob("*.txt"):
        (folder / sample.name).write_text(sample.read_text(encoding="utf-8"), encoding="utf-8")
    for i in range(n):
        place, thing = PLACES[i % len(PLACES)], THINGS[(i // 2) % len(THINGS)]
        sentences = [f"The {thing} in {place} logged {i * 37 + 11} visits in week {i}."]
        sentences += [
            f"Councillor {PLACES[(i + k) % len(PLACES)]}-{k} said the {THINGS[k % len(THINGS)]} "
            f"would need {k * 3 + i} more staff by {2030 + k % 7}, and {k * 101} residents agreed."
            for k in range((i * 7) % 39 + 1)
        ]
        sentences.append(f"Mayor Jo Quill-{i} reopened the {place} {thing} on a Monday.")
        (folder / f"story_{i:02d}.txt").write_text(
            f"{place} {thing} news {i}\n\n" + " ".join(sentences) + "\n", encoding="utf-8"
        )
    return folder


def table_rows(store: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table's rows, in key order, and each row with its column names; ``updated`` (a clock time)
    left out."""
    db = sqlite3.connect(store / DB_NAME)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        found: dict[str, list[tuple[object, ...]]] = {}
        for table in tables:
            if (
                db.execute(f"SELECT sql FROM sqlite_master WHERE name = '{table}'")
                .fetchone()[0]
                .startswith("CREATE VIRTUAL")
            ):
                continue  # its shadow tables are compared instead
            cursor = db.execute(f"SELECT * FROM '{table}' ORDER BY 1")
            names = [d[0] for d in cursor.description]
            found[table] = [
                tuple((name, value) for name, value in zip(names, row, strict=True) if name != "updated")
                for row in cursor.fetchall()
            ]
    finally:
        db.close()
    return found


def assert_same_store(got: Path, expected: Path) -> None:
    """The same rows everywhere; vectors equal to float rounding (float32 passages, float16 sentences)."""
    a, b = table_rows(got), table_rows(expected)
    assert sorted(a) == sorted(b) and "chunks" in a
    for table in b:
        assert len(a[table]) == len(b[table]), table
        for row_a, row_b in zip(a[table], b[table], strict=True):
            for (name, x), (name_b, y) in zip(row_a, row_b, strict=True):
                assert name == name_b
                if x == y:
                    continue
                assert "vector" in name and isinstance(x, bytes) and isinstance(y, bytes), (table, name, x, y)
                dtype, atol = (np.float32, 1e-5) if name == "vector" else (np.float16, 2e-3)
                np.testing.assert_allclose(np.frombuffer(x, dtype), np.frombuffer(y, dtype), atol=atol)


def test_ray_target_takes_only_an_address_and_gives_a_path_back() -> None:
    assert ray_target(None, ["a/"]) == (None, ["a/"])
    assert ray_target("local", ["a/"]) == ("local", ["a/"])
    assert ray_target("auto", ["a/"]) == ("auto", ["a/"])
    assert ray_target("head-node:6379", ["a/"]) == ("head-node:6379", ["a/"])
    assert ray_target("ray://10.1.2.3:10001", ["a/"]) == ("ray://10.1.2.3:10001", ["a/"])
    # `newsbot ingest --ray articles/ feed.jsonl`: argparse gave the folder to --ray.
    assert ray_target("articles/", ["feed.jsonl"]) == ("local", ["articles/", "feed.jsonl"])
    assert ray_target("articles", []) == ("local", ["articles"])


def test_ingest_on_ray_builds_the_same_store_as_a_local_ingest(
    tmp_path: Path, encoder: Encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    local = Engine(load_settings(env={}, store=tmp_path / "local"), encoder)
    local_report = local.ingest([corpus])
    assert local_report.passages > 32  # more than one encoder batch, so the Ray job has two tasks

    assert not ray.is_initialized()
    # The real command, `--ray` before the folder: a Ray started for this ingest, on 2 CPUs, and stopped.
    code = main(["--store", str(tmp_path / "ray"), "ingest", "-q", "--ray", str(corpus)])
    out, err = capsys.readouterr()
    assert code == 0, err
    # The same report but for the time: "21 added, ..., N passages embedded in T s".
    assert out.strip().rsplit(" in ", 1)[0] == local_report.summary().rsplit(" in ", 1)[0]
    assert not ray.is_initialized()

    assert_same_store(tmp_path / "ray", tmp_path / "local")
    db = sqlite3.connect(tmp_path / "ray" / DB_NAME)
    try:
        assert db.execute("SELECT count(*) FROM articles").fetchone()[0] == 21
        vectors = np.stack([np.frombuffer(v, np.float32) for (v,) in db.execute("SELECT vector FROM chunks")])
    finally:
        db.close()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    remote = Engine(load_settings(env={}, store=tmp_path / "ray"), encoder)
    for question in QUESTIONS:
        expected, got = local.ask(question), remote.ask(question)
        assert (got.answered, got.text) == (expected.answered, expected.text)
        assert [(c.article.id, c.passage) for c in got.citations] == [
            (c.article.id, c.passage) for c in expected.citations
        ]
        assert got.confidence == pytest.approx(expected.confidence, abs=1e-4)
    # And a store that answers: story 2 is the Ashford library's.
    assert "85 visits" in remote.ask(QUESTIONS[1]).text


@pytest.fixture(scope="module")
def on_ray(encoder: Encoder) -> Iterator[RayEncoder]:
    defaults = load_settings(env={})
    with RayEncoder(
        encoder, model=defaults.model, backend=defaults.backend, address="local", num_cpus=2
    ) as remote:
        yield remote
    assert not ray.is_initialized()


def test_ray_encoder_gives_the_local_vectors_call_after_call(on_ray: RayEncoder, encoder: Encoder) -> None:
    assert (on_ray.name, on_ray.dim, on_ray.max_tokens) == (encoder.name, encoder.dim, encoder.max_tokens)
    assert on_ray.cluster_cpus == 2
    texts = [
        " ".join(
            f"word{j} of passage {i}, about the {THINGS[i % 8]} in {PLACES[j % 8]}." for j in range(i % 12)
        )
        or "short"
        for i in range(60)
    ]
    texts += [texts[3], texts[3], "x " * 600]  # twins, and one past the model's 256 word pieces
    assert on_ray.count_tokens(texts) == encoder.count_tokens(texts)
    # Several Ray Data jobs on one Ray, as an ingest makes: empty, one text, many in small batches.
    assert on_ray.encode([]).shape == (0, encoder.dim)
    for call, batch_size in ((texts[:1], 32), (texts, 4)):
        got = on_ray.encode(call, batch_size=batch_size)
        assert got.dtype == np.float32 and got.shape == (len(call), encoder.dim)
        np.testing.assert_allclose(got, encoder.encode(call, batch_size=batch_size), rtol=0, atol=1e-5)
    # With sentence spans, as the Ingestor asks: none, one or several per text.
    spans = [[(k * 7, k * 7 + 20) for k in range(i % 4)] for i in range(len(texts))]
    got_vectors, got_spans = on_ray.encode_spans(texts, spans, batch_size=32)
    want_vectors, want_spans = encoder.encode_spans(texts, spans, batch_size=32)
    assert got_spans.shape == want_spans.shape == (sum(map(len, spans)), encoder.dim)
    np.testing.assert_allclose(got_vectors, want_vectors, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got_spans, want_spans, rtol=0, atol=1e-5)


def test_ray_encoder_cuts_whole_encoder_batches_longest_first(on_ray: RayEncoder, encoder: Encoder) -> None:
    texts = [("a b c " * (i % 50)) + str(i) for i in range(300)]
    groups = on_ray.groups(texts, 8)
    flat = np.concatenate(groups)
    assert sorted(flat.tolist()) == list(range(300))
    assert all(len(g) % 8 == 0 for g in groups[:-1]) and len(groups) % on_ray.cluster_cpus == 0
    lengths = np.asarray(encoder.count_tokens(texts))[flat]
    assert (np.diff(lengths) <= 0).all()  # the order the local encoder batches in
