"""Faults and bad state on a real store on disk: each ends as one clear line (exit 2 on the command line)
or a warning while answers go on, never as a traceback or a wrong citation, and what was stored
before is still there and answers the same.

One store is built per module (the sample article and 40 small stories) and copied for each
destructive case. Commands run in this process through ``bot.cli.main`` unless the case needs
another process: no write permission (capabilities dropped with setpriv), a file-size limit
(RLIMIT_FSIZE, standing in for a full disk) and SIGKILL.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import ago, main
from embeddings import index as vector_index
from embeddings.articles import article_from_html
from embeddings.encoder import Encoder
from embeddings.engine import Engine
from embeddings.settings import load_settings
from embeddings.store import DB_NAME, read_generation
from tests.conftest import REPO, SEED

QUESTION = "Who opposed the ABM amendment?"
PLACES = ["Riverton", "Elmwood", "Ashford", "Brackley", "Cedarville", "Dunmore", "Eastleigh", "Fairhaven"]
DROP_WRITE = ["--bounding-set=-dac_override,-dac_read_search,-fowner,-linux_immutable"]


def stories(folder: Path, count: int, prefix: str = "s") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        place = PLACES[i % len(PLACES)]
        (folder / f"{prefix}{i:03d}.txt").write_text(
            f"{place} council story {prefix}{i}\n\nThe council in {place} approved plan {prefix}-{i * 7 + 3} "
            f"for the {['bridge', 'library', 'harbour', 'school'][i % 4]} on Tuesday after a long debate. "
            f"Residents said the plan would cost {i + 2} million pounds over {i % 5 + 2} years.\n"
        )
    return folder


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_error(err: str, *words: str) -> str:
    """The single `error:` line of a failed command; no traceback anywhere."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert all(w in errors[0] for w in words), errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> Path:
    """A store with the sample article and 40 stories, written by a real ingest; every page in the
    database file itself (no WAL), so that what tests do to the file is what SQLite reads."""
    base = tmp_path_factory.mktemp("faults")
    store = base / "store"
    engine = Engine(load_settings(env={}, store=store), encoder)
    engine.ingest([SEED, stories(base / "stories", 40)])
    del engine
    gc.collect()
    db = sqlite3.connect(store / DB_NAME)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return store


def answer_of(store: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return cli(capsys, "--store", str(store), "ask", QUESTION)


@pytest.fixture(scope="module")
def baseline(built: Path) -> str:
    """What `newsbot ask` prints for the question on the intact store."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--store", str(built), "ask", QUESTION]) == 0
    assert "China and Russia" in out.getvalue()
    return out.getvalue()


@pytest.fixture
def store(built: Path, tmp_path: Path) -> Path:
    """A private copy of the built store, for a test to break."""
    copy = tmp_path / "store"
    shutil.copytree(built, copy)
    return copy


def head(answer: str) -> str:
    """The answer and its first citation: what stories added since cannot change (the closest other
    passages, listed after it, may be new ones)."""
    return answer.split("\n[2]")[0]


def flip_bytes(path: Path, offset: int, count: int = 64, seed: int = 7) -> None:
    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    for i in range(offset, min(offset + count, len(data))):
        data[i] ^= rng.randrange(1, 256)
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- wrong or stale answers


def test_a_citation_names_only_sources_that_still_hold_the_passage(tmp_path: Path, encoder: Encoder) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    body = (
        "The Wexmouth ferry will stop running on Sundays from May, the operator said, after "
        "passenger numbers fell by a third over the winter.\n"
    )
    (folder / "a.txt").write_text(f"Title A\n\n{body}")
    (folder / "b.txt").write_text(f"Title B\n\n{body}")
    engine = Engine(load_settings(env={}, store=tmp_path / "store"), encoder)
    report = engine.ingest([folder])
    assert report.added == 1 and report.duplicates == 1  # stored once, with both sources
    question = "When will the Wexmouth ferry stop running on Sundays?"
    first = engine.ask(question).citations[0].article
    assert first.title == "Title A" and first.source.endswith("a.txt")
    # a.txt is edited: its old text now exists only in b.txt.
    (folder / "a.txt").write_text(
        "Title A\n\nThe harbour cafe in Wexmouth reopened on Friday after repairs.\n"
    )
    engine.ingest([folder])
    cited = [c.article for c in engine.ask(question).citations if "Sundays" in c.passage]
    assert cited and all(a.title == "Title B" and a.source.endswith("b.txt") for a in cited)
    # And the other way: b.txt goes too (pruned), a.txt's old text is gone from the store.
    (folder / "b.txt").unlink()
    engine.ingest([folder], prune=True)
    assert not [c for c in engine.ask(question).citations if "Sundays" in c.passage]


def test_a_store_from_before_these_columns_is_migrated_by_the_next_ingest(
    tmp_path: Path, encoder: Encoder
) -> None:
    store = tmp_path / "store"
    engine = Engine(load_settings(env={}, store=store), encoder)
    engine.ingest([SEED])
    db = sqlite3.connect(store / DB_NAME)
    for column in ("title", "author", "published", "source", "url"):
        db.execute(f"ALTER TABLE sources DROP COLUMN {column}")
    db.execute("DROP TABLE index_files")
    db.commit()
    db.close()
    assert "China and Russia" in Engine(engine.settings, encoder).ask(QUESTION).text  # read as it is
    copy = tmp_path / "copy.txt"
    copy.write_text(SEED.read_text())
    report = engine.ingest([copy])
    assert report.duplicates == 1
    columns = {r[1] for r in sqlite3.connect(store / DB_NAME).execute("PRAGMA table_info(sources)")}
    assert {"title", "source"} <= columns


@pytest.mark.parametrize("command", [["ask", QUESTION], ["stats"], ["serve"], ["eval", "qa.jsonl"]])
def test_a_named_store_that_does_not_exist_is_an_error_and_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "unused")
    (tmp_path / "qa.jsonl").write_text('{"question": "Who?", "answers": ["x"], "article_id": "a"}\n')
    monkeypatch.chdir(tmp_path)
    typo = tmp_path / "does" / "not" / "exist"
    code, out, err = cli(capsys, "--store", str(typo), *command)
    assert code == 2 and out == "" and "no store at" in one_error(err, str(typo))
    monkeypatch.setenv("NEWSBOT_STORE", str(typo))
    code, _, err = cli(capsys, *command)
    assert code == 2 and "no store at" in one_error(err, str(typo))
    assert not (tmp_path / "does").exists()


def test_ingest_creates_a_named_store_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "new"
    code, out, err = cli(capsys, "--store", str(store), "ingest", "-q", str(SEED))
    assert code == 0 and f"created a new store at {store}" in err and "1 added" in out
    code, _, err = cli(capsys, "--store", str(store), "ingest", "-q", str(SEED))
    assert code == 0 and "created" not in err


def test_the_keyword_index_is_as_readable_as_the_database(built: Path) -> None:
    # tantivy writes its meta files for their owner only: a bot running as another user could not
    # open the keyword index of a store it may read.
    mode = (built / DB_NAME).stat().st_mode & 0o777
    for name in ("meta.json", ".managed.json"):
        assert (built / "keyword" / name).stat().st_mode & 0o777 == mode


def test_a_flipped_faiss_file_is_noticed_and_rebuilt_from_sqlite(
    store: Path, baseline: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    saved = vector_index.saved_generations(store)[0]
    path = vector_index.index_file(store, saved)
    flip_bytes(path, path.stat().st_size // 2, count=256)
    code, out, err = answer_of(store, capsys)
    assert code == 0 and out == baseline and "Traceback" not in err
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "is damaged" in warned[0] and "rebuilding it from the store" in warned[0]
    # The next ingest (nothing new to embed) writes a sound file again.
    assert cli(capsys, "--store", str(store), "ingest", "-q", str(SEED))[0] == 0
    assert vector_index.verify_index_file(store, vector_index.saved_generations(store)[0]) is None
    caplog.clear()
    code, out, _ = answer_of(store, capsys)
    assert code == 0 and out == baseline and not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_truncated_faiss_file_is_rebuilt_from_sqlite(
    store: Path, baseline: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = vector_index.index_file(store, vector_index.saved_generations(store)[0])
    os.truncate(path, path.stat().st_size // 3)
    code, out, err = answer_of(store, capsys)
    assert code == 0 and out == baseline and "Traceback" not in err


def test_a_truncated_keyword_index_file_is_rebuilt_when_the_store_is_opened(
    store: Path, baseline: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    segment = next((store / "keyword").glob("*.idx"))
    os.truncate(segment, 10)
    code, out, err = answer_of(store, capsys)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert code == 0 and out == baseline and "Traceback" not in err
    assert warned and all("keyword index" in w for w in warned) and "rebuilding it" in warned[-1]
    caplog.clear()
    code, out, _ = answer_of(store, capsys)
    assert code == 0 and out == baseline and not caplog.records


# --------------------------------------------------------------------------- damaged and lost files


def sources_pages(db_path: Path) -> list[int]:
    """The pages of the sources table and its indexes: what stats and ingest read and ask never does."""
    db = sqlite3.connect(db_path)
    pages = [
        r[0]
        for r in db.execute(
            "SELECT pageno FROM dbstat WHERE name = 'sources' OR name = 'sources_origin' "
            "OR name = 'sources_article' OR name = 'sqlite_autoindex_sources_1'"
        )
    ]
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    return [(p - 1) * page_size for p in pages]


def test_garbage_pages_in_sqlite_are_one_line_for_stats_and_ingest_and_ask_still_answers(
    store: Path, baseline: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db_path = store / DB_NAME
    for offset in sources_pages(db_path):
        flip_bytes(db_path, offset, count=4096, seed=offset)
    before = db_path.read_bytes()
    code, out, err = cli(capsys, "--store", str(store), "stats")
    assert code == 2 and out == "" and "damaged" in one_error(err, "malformed")
    code, _, err = cli(capsys, "--store", str(store), "ingest", "-q", str(stories(tmp_path / "new", 3, "n")))
    assert code == 2 and "damaged" in one_error(err)
    assert db_path.read_bytes() == before  # the failed ingest wrote nothing
    code, out, _ = answer_of(store, capsys)
    assert code == 0 and out == baseline


@pytest.mark.parametrize("size", ["zero", "half"])
def test_a_zero_byte_or_truncated_database_is_one_line_and_stays_as_it_is(
    store: Path, capsys: pytest.CaptureFixture[str], size: str
) -> None:
    db_path = store / DB_NAME
    os.truncate(db_path, 0 if size == "zero" else db_path.stat().st_size // 2)
    length = db_path.stat().st_size
    for command in (["ask", QUESTION], ["stats"], ["ingest", "-q", str(SEED)]):
        code, out, err = cli(capsys, "--store", str(store), *command)
        line = one_error(err)
        assert code == 2 and out == "", command
        assert (
            ("is empty (0 bytes)" in line) if size == "zero" else ("damaged" in line or "malformed" in line)
        )
    assert db_path.stat().st_size == length  # not silently made into an empty store


# --------------------------------------------------------------------------- other processes


def run_newsbot(
    script: str, *, prefix: list[str] | None = None, preexec: object = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Python running ``script`` (which may call bot.cli.main several times: one start-up)."""
    return subprocess.run(
        [*(prefix or []), sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "NEWSBOT_CONFIG": str(REPO / "config" / "newsbot.toml")},
        preexec_fn=preexec,  # type: ignore[arg-type]
        timeout=timeout,
    )


def commands_script(store: Path, *commands: list[str]) -> str:
    """Run each command through bot.cli.main and print its exit code after a marker line."""
    lines = ["import sys", "from bot.cli import main"]
    for command in commands:
        lines += [
            f"code = main({['--store', str(store), *command]!r})",
            "sys.stdout.flush(); sys.stderr.flush()",
            f"print('@@', {command[0]!r}, code, flush=True)",
            f"print('@@', {command[0]!r}, code, file=sys.stderr, flush=True)",
        ]
    return "\n".join(lines)


def sections(text: str) -> list[str]:
    return text.split("@@ ")


@pytest.fixture
def readonly_store(built: Path, tmp_path: Path) -> Iterator[Path]:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed: cannot run a process without write access")
    probe = subprocess.run(["setpriv", *DROP_WRITE, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot drop capabilities here: {probe.stderr.decode().strip()}")
    store = tmp_path / "ro"
    shutil.copytree(built, store)
    for path in [store, *store.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    yield store
    for path in [store, *store.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)


def test_a_read_only_store_answers_exactly_as_a_writable_one_and_refuses_ingest_in_one_line(
    readonly_store: Path, baseline: str, tmp_path: Path
) -> None:
    before = {p.name: p.read_bytes() for p in readonly_store.iterdir() if p.is_file()}
    new = stories(tmp_path / "new", 2, "n")
    script = commands_script(
        readonly_store, ["ask", QUESTION], ["stats", "--json"], ["ingest", "-q", str(new)]
    )
    done = run_newsbot(script, prefix=["setpriv", *DROP_WRITE])
    out, err = sections(done.stdout), sections(done.stderr)
    assert out[0] == baseline, (done.stdout, done.stderr)  # same answer, same citations
    assert err[0] == "" and "Traceback" not in done.stderr  # no warning: keyword search still works
    assert out[1].startswith("ask 0") and json.loads(out[1].split("\n", 1)[1])["articles"] == 41
    assert out[2].startswith("stats 0") and err[2].startswith("stats 0")
    line = one_error(err[2].split("\n", 1)[1], "cannot write to store", "permission denied")
    assert str(readonly_store) in line and out[3].startswith("ingest 2")
    assert {p.name: p.read_bytes() for p in readonly_store.iterdir() if p.is_file()} == before


def test_a_read_only_store_with_a_damaged_keyword_index_answers_from_the_vectors_in_one_warning(
    readonly_store: Path,
) -> None:
    os.truncate(next((readonly_store / "keyword").glob("*.idx")), 10)
    done = run_newsbot(commands_script(readonly_store, ["ask", QUESTION]), prefix=["setpriv", *DROP_WRITE])
    out, err = sections(done.stdout), sections(done.stderr)
    assert out[1].startswith("ask 0") and "China and Russia" in out[0], (done.stdout, done.stderr)
    warnings = [line for line in err[0].splitlines() if "keyword index" in line]
    assert len(warnings) == 1 and "cannot be read" in warnings[0] and "Traceback" not in done.stderr


def test_a_full_disk_mid_ingest_is_one_line_and_loses_nothing(
    store: Path, baseline: str, tmp_path: Path
) -> None:
    new = stories(tmp_path / "new", 30, "n")
    generation = read_generation(store)

    def limited() -> None:
        # A real full disk sends no signal; the file-size limit does (SIGXFSZ) unless it is ignored.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))

    done = run_newsbot(commands_script(store, ["ingest", "-q", str(new)]), preexec=limited)
    assert "@@ ingest 2" in done.stdout, (done.stdout, done.stderr)
    one_error(done.stderr, "is the disk full", "what was stored before is unchanged")
    # Batches committed before the limit was hit stay (each whole); the one being written was rolled back.
    kept = stored_items(store, new)
    assert kept < 30 and (kept == 0) == (read_generation(store) == generation)
    done = run_newsbot(commands_script(store, ["ask", QUESTION], ["ingest", "-q", str(new)]))
    out = sections(done.stdout)
    assert head(out[0]) == head(baseline) and out[1].startswith("ask 0")
    assert f"{30 - kept} added, 0 changed, {kept} unchanged" in out[1]
    assert out[2].startswith("ingest 0"), done.stderr


def stored_items(store: Path, folder: Path) -> int:
    db = sqlite3.connect(f"file:{store / DB_NAME}?mode=ro", uri=True)
    try:
        return int(
            db.execute("SELECT COUNT(*) FROM sources WHERE item LIKE ?", (f"{folder}%",)).fetchone()[0]
        )
    finally:
        db.close()


def test_sigkill_during_a_long_ingest_keeps_what_was_committed_and_the_next_run_finishes(
    store: Path, baseline: str, tmp_path: Path
) -> None:
    new = stories(tmp_path / "new", 150, "k")
    generation = read_generation(store)
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "--store", str(store), "ingest", "-q", str(new)],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        # The first batch (64 passages) commits within seconds of the start: kill some time after it.
        while read_generation(store) == generation:
            assert process.poll() is None and time.monotonic() < deadline, "no commit before the kill"
            time.sleep(0.05)
        time.sleep(random.Random().uniform(0.0, 1.5))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    kept = stored_items(store, new)
    assert kept >= 1  # committed before the kill, at most ~10 s of work lost
    done = run_newsbot(commands_script(store, ["ask", QUESTION], ["ingest", "-q", str(new)]))
    out = sections(done.stdout)
    assert head(out[0]) == head(baseline) and "China and Russia" in out[0], done.stderr
    assert out[2].startswith("ingest 0") and f"{150 - kept} added, 0 changed, {kept} unchanged" in out[1]


# --------------------------------------------------------------------------- long ingests a user can trust


def test_ingest_exits_2_when_nothing_could_be_ingested(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_text("")
    (bad / "binary.txt").write_bytes(b"\x00\x01binary")
    code, _, err = cli(capsys, "--store", str(tmp_path / "s"), "ingest", "-q", str(bad))
    assert code == 2 and "nothing could be ingested" in one_error(err)
    assert err.count("warning: skipped") == 2


def test_the_progress_bar_counts_passages_against_a_total_with_rate_and_eta(
    tmp_path: Path, encoder: Encoder, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import functools

    import tqdm

    import embeddings.ingest as ingest

    # Every update drawn, and small steps: the bar must move within a batch, not once per batch.
    monkeypatch.setattr(tqdm, "tqdm", functools.partial(tqdm.tqdm, mininterval=0, file=sys.stderr))
    monkeypatch.setattr(ingest, "PROGRESS_STEP", 8)
    engine = Engine(load_settings(env={}, store=tmp_path / "store"), encoder)
    report = engine.ingest([stories(tmp_path / "in", 24)], progress=True)
    frames = [f for f in capsys.readouterr().err.replace("\r", "\n").splitlines() if "passages" in f]
    assert report.passages == 24 and report.added == 24
    drawn = {int(f.split("|")[2].split("/")[0]) for f in frames if f.count("|") >= 2}
    assert {8, 16, 24} <= drawn, frames  # within the one 24-passage batch
    last = frames[-1]
    assert "24/24" in last and "24/24 files" in last and "passages/s" in last


def test_stats_shows_iso_time_and_how_long_ago(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--store", str(built), "stats")
    updated = next(line for line in out.splitlines() if "updated:" in line)
    assert code == 0 and "Z (" in updated and ("ago" in updated or "just now" in updated)
    iso = updated.split("updated:")[1].split()[0]
    assert len(iso) == 20 and iso[4] == "-" and iso[10] == "T" and iso.endswith("Z")
    code, out, _ = cli(capsys, "--store", str(built), "stats", "--json")
    stats = json.loads(out)
    assert stats["updated"] == iso and stats["updated_ago"]
    assert (ago(3 * 60 + 5), ago(1), ago(2 * 86400)) == ("3 minutes ago", "just now", "2 days ago")


def test_a_copyright_footer_is_no_publication_date() -> None:
    page = (REPO / "tests" / "data" / "articles" / "news_page.html").read_text()
    undated = page.replace('<meta property="article:published_time" content="2024-03-18T09:30:00+00:00">', "")
    undated = undated.replace('<time datetime="2024-03-18T09:30:00+00:00">18 March 2024</time>', "")
    undated = undated.replace("/news/2024/03/18/", "/news/")
    assert "Copyright 2024" in undated
    article = article_from_html(undated, "page.html")
    assert not isinstance(article, str) and getattr(article, "published", None) == ""
    dated = article_from_html(page, "page.html")
    assert getattr(dated, "published", None) == "2024-03-18"
