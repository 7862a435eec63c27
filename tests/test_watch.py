"""Keeping the index current: the watcher (in the bot and as `newsbot watch`), hot swaps, one writer.

Everything here is real: the model, SQLite, FAISS, watchfiles on a tmp folder, and the discord.py bot
against the loopback Discord of tests/discord_server.py. Articles are short and made up on the spot.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.cli import main
from bot.client import NewsBot
from bot.watch import Watcher
from embeddings.encoder import Encoder
from embeddings.engine import Engine
from embeddings.records import Answer
from embeddings.settings import Settings
from tests.discord_server import FakeDiscord, Record
from tests.test_feeds import ORCHARD_TEXT, FeedServer, rss, rss_item

T = TypeVar("T")
# Generous: the machine may be busy. The measured latencies are printed (pytest -s) and are far lower.
ARRIVAL_TIMEOUT = 30.0

FERRY = (
    "Skye ferry service resumes\n\n"
    "The Skye ferry service resumed on Monday after a two-week strike by crews.\n"
)
FERRY_COPY = (
    "Skye ferry back\n\nTHE SKYE FERRY service resumed   on Monday\nafter a two-week STRIKE by crews.\n"
)
LIGHTHOUSE_V1 = (
    "Corran lighthouse reopens\n\nThe Corran Point lighthouse reopened to visitors on Saturday after "
    "repairs costing nine thousand pounds.\n"
)
LIGHTHOUSE_V2 = (
    "Corran lighthouse reopens\n\nThe Corran Point lighthouse reopened to visitors on Sunday after "
    "repairs costing forty thousand pounds.\n"
)
LIGHTHOUSE_Q = "How much did the Corran Point lighthouse repairs cost?"
# Asked directly: the reader doubts "Why was the Skye ferry not running?" (probability 0.1; docs/quality.md)
FERRY_Q = "How long did the Skye ferry strike last?"


def wait_for(condition: Callable[[], T], timeout: float = ARRIVAL_TIMEOUT, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.05)


def store_rows(engine: Engine, sql: str, *args: Any) -> list[tuple]:
    store = engine.open_store()
    try:
        return store.db.execute(sql, args).fetchall()
    finally:
        store.close()


def sources_of(engine: Engine) -> dict[str, str]:
    """item -> article id."""
    return dict(store_rows(engine, "SELECT item, article_id FROM sources"))


def cited(answer: Answer) -> set[str]:
    return {c.article.id for c in answer.citations}


# --------------------------------------------------------------------------- incremental ingest


def test_a_title_only_change_is_re_embedded_and_a_duplicate_outlives_its_twin(
    engine: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "news"
    folder.mkdir()
    ferry, copy = folder / "ferry.txt", folder / "ferry_copy.txt"
    ferry.write_text(FERRY)
    copy.write_text(FERRY_COPY)
    report = engine.ingest([folder])
    assert (report.added, report.duplicates) == (1, 1)
    assert sources_of(engine) == {str(ferry): str(ferry), str(copy): str(ferry)}
    # Only the headline changes: the text is the same story, but what readers see (and what is
    # embedded with each passage) is not; it must not be mistaken for a duplicate of itself.
    (folder / "lighthouse.txt").write_text(LIGHTHOUSE_V1)
    engine.ingest([folder])
    (folder / "lighthouse.txt").write_text(LIGHTHOUSE_V1.replace("Corran lighthouse reopens", "Beacon relit"))
    report = engine.ingest([folder])
    assert (report.changed, report.duplicates, report.passages) == (1, 0, 1)
    answer = engine.ask(LIGHTHOUSE_Q)
    assert answer.citations[0].article.title == "Beacon relit"
    # The story's first file goes; its copy still holds the story, which stays, stored once.
    ferry.unlink()
    report = engine.ingest([folder], prune=True)
    assert report.removed == 1 and report.passages == 0
    assert sources_of(engine)[str(copy)] == str(ferry)
    assert store_rows(engine, "SELECT COUNT(*) FROM articles")[0][0] == 2
    assert "two-week strike" in engine.ask(FERRY_Q).text


# --------------------------------------------------------------------------- questions during ingests


def test_questions_during_repeated_ingests_see_one_state_and_never_fail(
    engine: Engine, settings: Settings, encoder: Encoder, tmp_path: Path
) -> None:
    """Five ingests of changing files while a thread asks through this engine and a second one."""
    folder = tmp_path / "ports"
    folder.mkdir()
    names = ["Alder", "Birch", "Cedar", "Damson", "Elm", "Fir"]
    rounds = 6

    def body(r: int, k: int) -> str:
        return (
            f"The harbour of Port {names[k]} counted {100 * (r + 1) + k} fishing boats this season. "
            f"Officials in Port {names[k]} expect more boats next year."
        )

    def present(r: int, k: int) -> bool:
        return (k + r) % 3 != 0  # each round deletes two files and brings two back

    def write_round(r: int) -> None:
        for i in range(20):  # other news changing every round, so each ingest takes a while
            (folder / f"news_{i}.txt").write_text(
                f"Market day {i}\n\nStall {i} sold {r * 37 + i} jars of honey on market day {i}.\n"
            )
        for k in range(len(names)):
            path = folder / f"port_{k}.txt"
            if present(r, k):
                path.write_text(f"Port {names[k]} harbour\n\n{body(r, k)}\n")
            else:
                path.unlink(missing_ok=True)

    write_round(0)
    engine.ingest([folder], prune=True)
    other = Engine(settings, encoder)  # another reader of the same store, as a second bot would be
    done = [1]  # rounds whose ingest has finished (round 0 above)
    started = [1]
    stop = threading.Event()
    errors: list[BaseException] = []
    asked: list[tuple[str, int, int, Answer, int | None]] = []

    def ask_forever() -> None:
        rng = random.Random(7)
        try:
            while not stop.is_set():
                k = rng.randrange(len(names))
                question = f"How many fishing boats did the harbour of Port {names[k]} count?"
                for which, reader in (("same", engine), ("other", other)):
                    if which == "other":
                        reader.refresh()
                    low = done[0]
                    before = reader.searcher
                    answer = reader.ask(question)
                    generation = before.generation if reader.searcher is before else None
                    asked.append((which, low, started[0], answer, generation))
        except BaseException as err:  # recorded, and the test fails on it below
            errors.append(err)

    thread = threading.Thread(target=ask_forever)
    thread.start()
    try:
        for r in range(1, rounds):
            started[0] = r + 1
            write_round(r)
            engine.ingest([folder], prune=True)
            done[0] = r + 1
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(60)
    assert not errors, errors
    assert len(asked) >= 20, len(asked)

    def version(r: int, k: int) -> str | None:
        return body(r, k) if present(r, k) else None

    seen: dict[tuple[int, str], str] = {}
    for which, low, high, answer, generation in asked:
        # A snapshot taken after round `low - 1` finished and used before round `high - 1` finished.
        candidates = range(low - 1, high)
        by_file = {}
        for citation in answer.citations:
            text = citation.article.text
            assert citation.passage in text
            if generation is not None:
                assert seen.setdefault((generation, citation.article.id), text) == text, "two states at once"
            kind, number = Path(citation.article.id).stem.split("_")
            if kind == "port":
                by_file[int(number)] = text
        if which == "same":
            # This engine swaps snapshots only when an ingest finishes: one round's state, whole.
            assert any(all(version(r, k) == t for k, t in by_file.items()) for r in candidates), (
                which,
                low,
                high,
                by_file,
            )
        else:
            # A reader that refreshes on its own may catch an ingest between its batches: every article
            # is then in its old or its new state, and none was deleted before the snapshot.
            for k, text in by_file.items():
                assert any(version(r, k) == text for r in candidates), (which, low, high, k, text)
    during = sum(1 for _w, low, high, *_ in asked if high > low)
    print(f"\n{len(asked)} questions, {during} during an ingest, {len(seen)} (generation, article) states")
    assert during >= 5
    assert sum(a.answered for *_, a, _g in asked) >= len(asked) // 2


# --------------------------------------------------------------------------- one writer


def test_a_second_ingest_exits_with_a_clear_message_or_waits(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "news"
    folder.mkdir()
    (folder / "ferry.txt").write_text(FERRY)
    store = engine.open_store()
    with store.writer():
        code = main(["--store", str(engine.store_path), "ingest", "-q", str(folder)])
        err = capsys.readouterr().err
        assert code == 2
        assert err.strip() == (
            f"error: store {engine.store_path} is being written by pid {os.getpid()}; "
            "wait for that ingest to finish (or pass --wait SECONDS)"
        )
        # The watcher waits for the other writer instead, and goes on once it is done.
        watcher = Watcher(engine, [folder], [], wait=30)
        result: list[Any] = []
        thread = threading.Thread(target=lambda: result.append(watcher.scan_folders()))
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive() and not result
    thread.join(30)
    store.close()
    assert result[0].added == 1


# --------------------------------------------------------------------------- the watcher on its own


def test_the_watcher_follows_files_and_folders_and_ignores_hidden_ones(
    engine: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "ferry.txt").write_text(FERRY)
    watcher = Watcher(engine, [folder], [])
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: str(folder / "ferry.txt") in sources_of(engine), what="the first pass")
        # A folder of articles moved in at once: only the folder itself is an event.
        outside = tmp_path / "batch"
        outside.mkdir()
        (outside / "lighthouse.txt").write_text(LIGHTHOUSE_V1)
        (outside / "notes.md").write_text(
            "# Harbour notes\n\nThe harbour wall at Mallaig was rebuilt in May.\n"
        )
        (folder / ".draft.txt").write_text("Draft\n\nAn unfinished story about the Mallaig harbour wall.\n")
        shutil.move(outside, folder / "batch")
        inside = folder / "batch"
        wait_for(
            lambda: {str(inside / "lighthouse.txt"), str(inside / "notes.md")} <= sources_of(engine).keys(),
            what="the moved-in folder",
        )
        # The rows are committed before the ingest swaps in its snapshot: the answer follows at once.
        wait_for(lambda: "nine thousand" in engine.ask(LIGHTHOUSE_Q).text, timeout=10, what="the answer")
        # The whole folder goes: everything in it is pruned; the hidden draft was never read.
        shutil.rmtree(inside)
        wait_for(lambda: set(sources_of(engine)) == {str(folder / "ferry.txt")}, what="the pruned folder")
        wait_for(lambda: watcher.passes >= 3, timeout=10, what="the third pass to end")
        # The watched folder itself goes away (moved, unmounted): nothing is pruned for that; when it
        # is back, it is watched again.
        folder.rename(tmp_path / "away")
        time.sleep(1.5)
        assert set(sources_of(engine)) == {str(folder / "ferry.txt")}
        (tmp_path / "away").rename(folder)
        time.sleep(1.0)
        (folder / "lighthouse.txt").write_text(LIGHTHOUSE_V2)
        wait_for(lambda: str(folder / "lighthouse.txt") in sources_of(engine), what="the folder back")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


# --------------------------------------------------------------------------- `newsbot watch`


def test_watch_once_ingests_then_finds_nothing_new(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "news"
    folder.mkdir()
    (folder / "ferry.txt").write_text(FERRY)
    store = str(tmp_path / "store")
    assert main(["--store", store, "watch", "--once", str(folder)]) == 0
    assert capsys.readouterr().out.startswith("1 added, 0 changed")
    (folder / "lighthouse.txt").write_text(LIGHTHOUSE_V1)
    (folder / "ferry.txt").unlink()
    assert main(["--store", store, "watch", "--once", str(folder)]) == 0
    assert capsys.readouterr().out.startswith("1 added, 0 changed, 0 unchanged, 0 duplicates, 1 removed")
    assert main(["--store", store, "watch", "--once", str(folder)]) == 0
    assert capsys.readouterr().out.startswith("0 added, 0 changed, 1 unchanged")


def test_watch_usage_errors_are_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "store")
    (tmp_path / "file.txt").write_text(FERRY)
    code = main(
        ["--store", store, "watch", str(tmp_path / "nope"), str(tmp_path / "file.txt"), "--feed", "ftp://x"]
    )
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert err == [
        f"error: {tmp_path / 'nope'}: no such folder",
        f"error: {tmp_path / 'file.txt'}: not a folder (watch the folder that holds it)",
        "error: ftp://x: not an http:// or https:// feed URL",
    ]
    assert main(["--config", str(tmp_path / "none.toml"), "--store", store, "watch"]) == 2
    assert capsys.readouterr().err.startswith("error: nothing to watch")
    # A store inside the folder: its BM25 files are JSON, and would come back as "articles".
    assert main(["--store", str(tmp_path / "store"), "watch", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path}: holds the store {tmp_path / 'store'}, whose own files would be read as "
        "articles: use a --store outside it\n"
    )


def test_watch_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    folder = tmp_path / "news"
    folder.mkdir()
    (folder / "ferry.txt").write_text(FERRY)
    store = tmp_path / "store"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "--store", str(store), "watch", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    lines: list[str] = []
    # The log lines are the signal that a pass ended: its index files appear a moment before them.
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")))  # type: ignore[union-attr]
    reader.start()
    try:
        wait_for(lambda: any("folders:" in line for line in lines) or process.poll() is not None, timeout=120)
        (folder / "lighthouse.txt").write_text(LIGHTHOUSE_V1)
        wait_for(lambda: any("changes:" in line for line in lines) or process.poll() is not None, timeout=60)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        reader.join(timeout=10)
    err = "".join(lines)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "Ctrl-C stops" in err and err.rstrip().endswith("stopped")
    assert "folders: 1 added" in err and "changes: 1 added" in err


# --------------------------------------------------------------------------- inside the bot


@pytest.fixture
def feed() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


async def test_the_bot_answers_from_files_as_they_land_change_and_go(
    server: FakeDiscord, settings: Settings, encoder: Encoder, tmp_path: Path, feed: FeedServer
) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "ferry.txt").write_text(FERRY)
    item = rss_item("orchard-1", "Orchard opens", feed.url("/orchard"), body=ORCHARD_TEXT)
    feed.put("/rss.xml", rss([item]), "application/rss+xml")
    settings = settings.replace(
        guild_id=server.guild_id,
        refresh_seconds=0.2,
        watch=True,
        article_dirs=(str(folder),),
        feeds=(feed.url("/rss.xml"),),
        cooldown_questions=1000,
        cooldown_seconds=1.0,
    )
    bot = NewsBot(Engine(settings, encoder), guild_ready_timeout=0.05)
    engine = bot.engine
    latencies: dict[str, float] = {}
    background: list[Record] = []

    async def ask(question: str) -> str:
        interaction = await server.send_slash_command("ask", {"question": question})
        reply = await server.wait_for_message(lambda r: r.interaction_id == interaction.id, timeout=30)
        return reply.text

    async def until(what: str, question: str, ok: Callable[[str], bool]) -> str:
        started = time.monotonic()
        while True:
            text = await ask(question)
            if ok(text):
                latencies[what] = time.monotonic() - started
                return text
            if time.monotonic() - started > ARRIVAL_TIMEOUT:
                raise AssertionError(f"{what}: still answering {text!r}")
            await asyncio.sleep(0.1)

    async def keep_asking(stop: asyncio.Event) -> None:
        # Someone keeps asking about the ferry by mention the whole time: every reply is an answer.
        while not stop.is_set():
            message = await server.send_message(f"{server.bot_user.mention} {FERRY_Q}")
            background.append(await server.wait_for_message(lambda r, m=message: r.reply_to == m, timeout=30))

    async with server.running(bot, timeout=60):
        await until("first pass", FERRY_Q, lambda t: "two-week strike" in t)
        await until(
            "feed", "When will the Cedarville orchard host a cider festival?", lambda t: "October" in t
        )
        stop = asyncio.Event()
        asker = asyncio.create_task(keep_asking(stop))

        (folder / "lighthouse.txt").write_text(LIGHTHOUSE_V1)
        await until("added", LIGHTHOUSE_Q, lambda t: "nine thousand" in t)

        (folder / "lighthouse.txt").write_text(LIGHTHOUSE_V2)
        text = await until("changed", LIGHTHOUSE_Q, lambda t: "forty thousand" in t)
        assert "nine thousand" not in text

        (folder / "ferry_copy.txt").write_text(FERRY_COPY)
        started = time.monotonic()
        await server.wait_until(
            lambda: str(folder / "ferry_copy.txt") in sources_of(engine),
            timeout=ARRIVAL_TIMEOUT,
            what="the copy",
        )
        latencies["duplicate"] = time.monotonic() - started
        text = await ask(FERRY_Q)
        assert text.count("Skye ferry service resumes") == 1 and "Skye ferry back" not in text

        (folder / "lighthouse.txt").unlink()
        text = await until("deleted", LIGHTHOUSE_Q, lambda t: "lighthouse reopens" not in t)
        assert "thousand pounds" not in text

        # An ingest by someone else (`newsbot ingest` next to the bot): the refresh loop swaps it in.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "museum.txt").write_text(
            "Museum buys telescope\n\nThe Glenrock museum bought a brass telescope made in 1790 for its "
            "maritime gallery.\n"
        )
        await asyncio.to_thread(Engine(settings, encoder).ingest, [elsewhere])
        await until(
            "ingested elsewhere", "What did the Glenrock museum buy?", lambda t: "brass telescope" in t
        )
        stop.set()
        await asyncio.wait_for(asker, 30)
    print("\nwatcher latencies (s):", {k: round(v, 2) for k, v in latencies.items()})
    # The seed article (a fresh store gets it) and the ferry story, stored once for its two files.
    sources = {
        item: article
        for item, article in sources_of(engine).items()
        if "samples" not in item and "elsewhere" not in item and item != "orchard-1"
    }
    ferry = str(folder / "ferry.txt")
    assert sources == {ferry: ferry, str(folder / "ferry_copy.txt"): ferry}
    assert store_rows(engine, "SELECT COUNT(*) FROM articles WHERE id LIKE ?", f"{folder}%") == [(1,)]
    assert len(background) >= 3
    assert all(r.embeds and "two-week strike" in r.text for r in background), [
        r.text for r in background if "two-week strike" not in r.text
    ]
    assert server.problems == []
    assert bot.watch_task is not None and bot.watch_task.done()
