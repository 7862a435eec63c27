"""Articles people share in a chat: a link (fetched safely, see links.py) or a text file, stored for one
guild only.

An item shared in a guild is stored under the id ``guild:<guild>:<url>``, so it is answerable and
citable in that guild alone (see Searcher.visible); the same story from a folder or feed, or shared in
another guild too, is stored once with every source kept. A link this guild already shared is not
fetched again, and one another guild shared is copied from the store instead of fetched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from embeddings.articles import load_bytes
from embeddings.engine import Engine
from embeddings.ingest import IngestReport
from embeddings.links import FetchPolicy, LinkRefused, canonical_url, fetch, page_articles, with_ids
from embeddings.records import Article, Skip
from embeddings.settings import Settings
from embeddings.store import ARTICLE_COLUMNS, article_from_row, open_readonly, shared_item_id

T = TypeVar("T")
# Runs a blocking call off the event loop (the bot's executor); the default runs it in place.
Blocking = Callable[..., Awaitable[Any]]

TEXT_ATTACHMENTS = (".txt", ".md", ".markdown", ".html", ".htm", ".json")


@dataclass(frozen=True)
class Shared:
    """What became of one shared link or file."""

    what: str  # the link, or the file name
    ok: bool
    title: str = ""
    reason: str = ""
    known: bool = False  # already stored for this guild: nothing was fetched


def fetch_policy(settings: Settings) -> FetchPolicy:
    return FetchPolicy(
        allow_private=settings.allow_private_urls,
        trusted_hosts=frozenset(h.lower() for h in settings.trusted_url_hosts),
        max_bytes=int(settings.fetch_max_mb * 1024 * 1024),
        timeout=settings.fetch_timeout_seconds,
    )


async def _inline(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return func(*args, **kwargs)


class Sharer:
    def __init__(
        self, engine: Engine, run_blocking: Blocking | None = None, policy: FetchPolicy | None = None
    ) -> None:
        self.engine = engine
        self.run = run_blocking or _inline
        self.policy = policy or fetch_policy(engine.settings)

    async def share_link(self, guild: int, url: str) -> Shared:
        url = canonical_url(url)
        item_id = shared_item_id(guild, url)
        mine, elsewhere = await self.run(self._lookup, item_id, url)
        if mine is not None:
            return Shared(url, True, title=mine, known=True)
        if elsewhere is not None:
            # Known from a feed or another guild: the stored text is attached, nothing is fetched.
            copy = dataclasses.replace(elsewhere, id=item_id, source=url, url=elsewhere.url or url)
            return await self._ingest(url, [copy])
        try:
            page = await fetch(url, self.policy)
        except LinkRefused as refused:
            return Shared(url, False, reason=str(refused))
        return await self._ingest(url, page_articles(page, item_id=item_id, source=url))

    async def share_file(self, guild: int, name: str, data: bytes, *, key: str, link: str = "") -> Shared:
        """A text file (an attachment): ``key`` identifies it (its URL), ``link`` is where readers find it."""
        if not name.lower().endswith(TEXT_ATTACHMENTS):
            return Shared(name, False, reason=f"only {', '.join(TEXT_ATTACHMENTS)} files are read")
        if len(data) > self.policy.max_bytes:
            return Shared(
                name, False, reason=f"the file is over the {self.engine.settings.fetch_max_mb:g} MB limit"
            )
        items = with_ids(load_bytes(data, name), item_id=shared_item_id(guild, key), source=name, url=link)
        return await self._ingest(name, items)

    async def forget(self, guild: int, url: str) -> int:
        """Remove what this guild shared under ``url``; returns how many items went."""
        items = await self.run(self._items_of, guild, canonical_url(url))
        if not items:
            return 0
        report: IngestReport = await self.run(self.engine.forget, items, wait=60)
        return report.removed

    async def _ingest(self, what: str, items: Iterable[Article | Skip]) -> Shared:
        items = list(items)
        articles = [i for i in items if isinstance(i, Article)]
        if not articles:
            reasons = [i.reason for i in items if isinstance(i, Skip)]
            return Shared(what, False, reason=reasons[0] if reasons else "no article text found")
        report: IngestReport = await self.run(self.engine.ingest_items, articles, wait=60)
        if report.added + report.changed + report.duplicates + report.unchanged == 0:
            reason = report.skipped[0].reason if report.skipped else "nothing could be stored"
            return Shared(what, False, reason=reason)
        return Shared(what, True, title=articles[0].title, known=report.unchanged == len(articles))

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Rows of a read on the newest state of the store (none before the first ingest). Read-only:
        no schema, migration or lock is needed to look something up."""
        if not self.engine.has_store():
            return []
        encoder = self.engine.encoder
        db = open_readonly(self.engine.store_path, encoder.name, encoder.dim, encoder.identity)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def _lookup(self, item_id: str, url: str) -> tuple[str | None, Article | None]:
        """(the title, when this guild already has the link; a stored copy from elsewhere)."""
        rows = self._query(
            "SELECT a.title FROM sources s JOIN articles a ON a.id = s.article_id WHERE s.item = ?",
            (item_id,),
        )
        if rows:
            return rows[0][0], None
        rows = self._query(
            f"SELECT {ARTICLE_COLUMNS} FROM articles WHERE url = ? OR source = ? LIMIT 1", (url, url)
        )
        return None, article_from_row(rows[0]) if rows else None

    def _items_of(self, guild: int, url: str) -> list[str]:
        item_id = shared_item_id(guild, url)
        rows = self._query(
            "SELECT s.item FROM sources s JOIN articles a ON a.id = s.article_id "
            "WHERE s.guild = ? AND (s.item = ? OR substr(s.item, 1, ?) = ? OR a.url = ? OR a.source = ?)",
            (guild, item_id, len(item_id) + 1, item_id + "#", url, url),
        )
        return [r[0] for r in rows]
