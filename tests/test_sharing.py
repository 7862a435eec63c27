"""Articles shared in a guild, on the engine: stored once, seen only there, forgotten on request."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from embeddings.engine import Engine
from embeddings.links import FetchPolicy
from embeddings.sharing import Sharer
from embeddings.store import DB_NAME
from tests.web_pages import PageServer

GUILD_A, GUILD_B = 1001, 2002


def cited_titles(engine: Engine, question: str, guild: int | None) -> list[str]:
    return [c.article.title for c in engine.ask(question, guild=guild).citations]


async def test_a_link_is_fetched_once_and_seen_only_where_it_was_shared(engine: Engine) -> None:
    engine.ensure_default_corpus()
    async with PageServer() as pages:
        sharer = Sharer(engine, policy=FetchPolicy(allow_private=True, timeout=3.0))
        first = await sharer.share_link(GUILD_A, pages.url("/article.html#comments"))
        again = await sharer.share_link(GUILD_A, pages.url("/article.html"))
        # Guild B shares the same page: the stored text is attached for B, nothing is fetched.
        other = await sharer.share_link(GUILD_B, pages.url("/article.html"))
        assert pages.hits["/article.html"] == 1
    assert first.ok and not first.known and first.title == "Harbour ferry returns after storm repairs"
    assert again.ok and again.known
    assert other.ok and other.title == first.title
    question = "Who is the Kestrel Bay harbour master?"
    assert cited_titles(engine, question, GUILD_A)[0] == first.title
    assert cited_titles(engine, question, GUILD_B)[0] == first.title
    assert first.title not in cited_titles(engine, question, 3003)  # a guild that never shared it
    assert first.title in cited_titles(engine, question, None)  # the command line sees the whole store
    searcher = engine.searcher
    assert searcher.stats(GUILD_A)["articles"] == 2 and searcher.stats(3003)["articles"] == 1
    # A forgets its copy; B's stays.
    assert await sharer.forget(GUILD_A, pages.url("/article.html")) == 1
    assert first.title not in cited_titles(engine, question, GUILD_A)
    assert cited_titles(engine, question, GUILD_B)[0] == first.title
    assert await sharer.forget(GUILD_A, pages.url("/article.html")) == 0


async def test_files_are_read_by_their_suffix_and_bad_ones_get_a_reason(engine: Engine) -> None:
    sharer = Sharer(engine)
    records = [
        {"title": "Bridge reopens", "text": "The Osterby bridge reopened on Tuesday after a year of work."},
        {"title": "Market moves", "text": "The Saturday market moves to the harbour front in May."},
    ]
    stored = await sharer.share_file(GUILD_A, "two.json", json.dumps(records).encode(), key="att/1/two.json")
    binary = await sharer.share_file(GUILD_A, "x.txt", b"\x00\x01", key="att/2/x.txt")
    image = await sharer.share_file(GUILD_A, "photo.png", b"\x89PNG", key="att/3/photo.png")
    assert stored.ok and stored.title == "Bridge reopens"
    assert not binary.ok and "binary" in binary.reason
    assert not image.ok and "only .txt" in image.reason
    assert "Market moves" in cited_titles(engine, "Where will the Saturday market move to?", GUILD_A)
    assert "Market moves" not in cited_titles(engine, "Where will the Saturday market move to?", GUILD_B)


def test_an_older_store_gains_the_guild_column(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "one.txt").write_text("Pier repairs\n\nThe pier at Holm will reopen in June after repairs.\n")
    engine.ingest([folder])
    db = sqlite3.connect(engine.store_path / DB_NAME)
    # As a store from before shared articles: no guild column, nor its index.
    db.execute("DROP INDEX sources_guild")
    db.execute("ALTER TABLE sources DROP COLUMN guild")
    db.commit()
    db.close()
    engine._searcher = None
    answer = engine.ask("When will the Holm pier reopen?", guild=GUILD_A)
    assert answer.answered and "June" in answer.text
    db = sqlite3.connect(engine.store_path / DB_NAME)
    assert db.execute("SELECT guild FROM sources").fetchall() == [(0,)]
    db.close()
