"""A store records the encoder that embedded it; another encoder is refused with a one-line error until
`newsbot reembed` gives every passage its vectors from the stored text, and a reembed SIGKILLed at
random moments loses nothing and carries on.

Stores here are built with the fp32 ONNX encoder (`backend = "onnx"`, the torch extra) and re-embedded
with the default int8 one: fp32 vectors do not depend on batching, so an untouched vector is known
bit for bit."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bot.cli import main
from embeddings.chunking import embed_title, embedding_text, load_tokenizer
from embeddings.encoder import Encoder, load_encoder
from embeddings.engine import Engine
from embeddings.retrieval import Searcher
from embeddings.settings import Settings
from embeddings.store import DB_NAME, REEMBED_KEY, Store, StoreError
from tests.conftest import SEED

REPO = Path(__file__).resolve().parent.parent
# int8 vectors depend on which passages share a batch (activations are quantised per batch: cosine
# ~0.99 between two batchings), so the reference is encoded in reembed's own batches: consecutive runs
# of passages in id order, which a resumed run keeps, since it starts where a batch ended.
SAME_INT8 = 0.99999


@pytest.fixture(scope="module")
def fp32() -> Encoder:
    return load_encoder(backend="onnx")


def stored(root: Path) -> dict[int, tuple[str, bytes]]:
    """Passage id -> (its embedded text, its vector bytes), read straight from SQLite."""
    db = sqlite3.connect(f"file:{root / DB_NAME}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT c.id, a.title, substr(a.text, c.start + 1, c.end - c.start), c.vector "
            "FROM chunks c JOIN articles a ON a.id = c.article_id"
        ).fetchall()
    finally:
        db.close()
    return {r[0]: (f"{r[1]}\n{r[2]}", r[3]) for r in rows}


def meta(root: Path) -> dict[str, str]:
    db = sqlite3.connect(f"file:{root / DB_NAME}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()


def int8_reference(root: Path, encoder: Encoder, batch: int) -> dict[int, np.ndarray]:
    """What the int8 encoder makes of each stored passage, encoded in batches of ``batch`` in id order."""
    tokenizer = load_tokenizer(encoder.tokenizer_file)
    db = sqlite3.connect(f"file:{root / DB_NAME}?mode=ro", uri=True)
    rows = db.execute(
        "SELECT c.id, a.title, substr(a.text, c.start + 1, c.end - c.start) "
        "FROM chunks c JOIN articles a ON a.id = c.article_id ORDER BY c.id"
    ).fetchall()
    db.close()
    texts = [embedding_text(embed_title(tokenizer, title)[0], passage) for _, title, passage in rows]
    vectors = [encoder.encode(texts[i : i + batch]) for i in range(0, len(texts), batch)]
    return dict(zip([r[0] for r in rows], np.concatenate(vectors), strict=True))


def test_another_encoder_is_refused_until_reembed(
    settings: Settings, encoder: Encoder, fp32: Encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    old = Engine(settings.replace(backend="onnx"), fp32)
    old.ingest([SEED])
    before = stored(settings.store)
    assert meta(settings.store)["encoder"] == fp32.identity

    with pytest.raises(StoreError, match=r"embedded by .*fp32.* run `newsbot reembed`") as refused:
        Engine(settings, encoder).ask("Who opposed the ABM amendment?")
    assert "\n" not in str(refused.value)
    store = str(settings.store)
    assert main(["--store", store, "ask", "Who opposed the ABM amendment?"]) == 2
    assert "run `newsbot reembed`" in capsys.readouterr().err

    assert main(["--store", store, "reembed", "-q"]) == 0
    assert f"{len(before)} passages re-embedded" in capsys.readouterr().out
    after = stored(settings.store)
    assert {i: t for i, (t, _) in after.items()} == {i: t for i, (t, _) in before.items()}
    reference = int8_reference(settings.store, encoder, 1024)
    for i, (_, vector) in after.items():
        assert float(np.frombuffer(vector, np.float32) @ reference[i]) >= SAME_INT8
    assert meta(settings.store)["encoder"] == encoder.identity
    assert REEMBED_KEY not in meta(settings.store)

    answer = Engine(settings, encoder).ask("Who opposed the ABM amendment?")
    assert answer.answered and "China and Russia" in answer.text
    assert main(["--store", store, "reembed", "-q"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    with pytest.raises(StoreError, match="int8"):  # a bot with the old settings sees it at its next refresh
        old.refresh()


def test_a_store_from_before_encoder_identity_takes_the_current_one(engine: Engine) -> None:
    engine.ingest([SEED])
    root = engine.store_path
    db = sqlite3.connect(root / DB_NAME)
    db.execute("DELETE FROM meta WHERE key = 'encoder'")
    db.commit()
    db.close()
    again = Engine(engine.settings, engine.encoder)
    assert again.ask("Who opposed the ABM amendment?").answered  # readers read it as it is
    assert "encoder" not in meta(root)
    again.ingest([SEED])  # the next writer records the encoder it runs
    assert meta(root)["encoder"] == engine.encoder.identity


def test_the_old_encoder_may_not_write_into_a_half_reembedded_store(
    settings: Settings, encoder: Encoder, fp32: Encoder
) -> None:
    old = Engine(settings.replace(backend="onnx"), fp32)
    old.ingest([SEED])
    db = sqlite3.connect(settings.store / DB_NAME)
    db.execute("INSERT INTO meta VALUES (?, ?)", (REEMBED_KEY, f"{encoder.identity}\t0"))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=r"half re-embedded .*run `newsbot reembed`"):
        old.ingest([REPO / "tests" / "data" / "articles"])
    assert old.ask("Who opposed the ABM amendment?").answered  # reading goes on meanwhile
    Engine(settings, encoder).reembed()
    assert meta(settings.store)["encoder"] == encoder.identity


def _story(i: int) -> str:
    return (
        f"Council report {i}\n\nThe council of district {i} approved {i * 7 + 3} new homes on Monday. "
        f"Residents of ward {i % 13} asked for a school and {i % 5 + 1} parks to go with them.\n"
    )


@pytest.mark.slow
def test_reembed_killed_at_random_moments_loses_nothing(
    tmp_path: Path, settings: Settings, encoder: Encoder, fp32: Encoder
) -> None:
    folder = tmp_path / "articles"
    folder.mkdir()
    for i in range(300):
        (folder / f"r{i:03d}.txt").write_text(_story(i), encoding="utf-8")
    Engine(settings.replace(backend="onnx"), fp32).ingest([folder])
    root = settings.store
    old = stored(root)
    reference = int8_reference(root, encoder, 16)
    rng = random.Random(SEED.name)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NEWSBOT_BACKEND": "onnx-int8"}
    command = [sys.executable, "-m", "bot.cli", "--store", str(root), "reembed", "-q", "--batch", "16"]
    kills, progress = 0, -1
    while True:
        run = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if kills < 6:
            # Kill once it has committed a batch or two past where it started, at a random moment.
            start, deadline = progress, time.monotonic() + 60
            while run.poll() is None and time.monotonic() < deadline:
                done = meta(root).get(REEMBED_KEY, "\t-1").split("\t")[1]
                if int(done) > start and rng.random() < 0.5:
                    time.sleep(rng.uniform(0, 0.05))
                    break
                time.sleep(0.01)
            if run.poll() is None:
                run.send_signal(signal.SIGKILL)
                kills += 1
        run.wait(timeout=120)
        if run.returncode == 0:
            break
        assert run.returncode == -signal.SIGKILL, run.stderr.read() if run.stderr else ""
        # Killed: every passage is still there with its text, each vector either the old one bit for
        # bit (not reached yet) or the new one (up to the recorded position), and readers with the
        # old settings still answer.
        state = meta(root)
        assert state["encoder"] == fp32.identity
        position = int(state.get(REEMBED_KEY, "\t-1").split("\t")[1])
        assert position >= progress
        progress = position
        now = stored(root)
        assert now.keys() == old.keys()
        for i, (text, vector) in now.items():
            assert text == old[i][0]
            if i <= position:
                assert float(np.frombuffer(vector, np.float32) @ reference[i]) >= SAME_INT8
            else:
                assert vector == old[i][1]
        Store(root, model=fp32.name, dim=fp32.dim, encoder=fp32.identity, create=False).close()
        assert Searcher(root, fp32).size == len(old)
    assert kills >= 3
    state = meta(root)
    assert state["encoder"] == encoder.identity and REEMBED_KEY not in state
    final = stored(root)
    assert final.keys() == old.keys()
    for i, (_, vector) in final.items():
        assert float(np.frombuffer(vector, np.float32) @ reference[i]) >= SAME_INT8
    searcher = Searcher(root, encoder)
    assert searcher.size == len(old)
    for i in rng.sample(sorted(final), 20):  # the index holds the new vectors: each finds itself
        query = np.frombuffer(final[i][1], np.float32)[None, :]
        _, ids = searcher.dense.search(query, 1)
        assert ids[0] == i
