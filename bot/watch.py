"""Arrivals: ingest files as they land in folders, poll feeds; as `newsbot watch` or inside the bot.

Every pass is an ordinary incremental ingest (unchanged files cost a hash lookup, deleted ones are
pruned), so a burst of file events is simply one more pass. The running bot picks up the new index
through its refresh loop.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import watchfiles

from embeddings.articles import SUPPORTED_SUFFIXES
from embeddings.engine import Engine
from embeddings.feeds import FeedState, load_states, poll_feed, save_states
from embeddings.ingest import IngestReport
from embeddings.settings import Settings
from embeddings.store import StoreError

log = logging.getLogger(__name__)


def _article_file(_change: watchfiles.Change, path: str) -> bool:
    return Path(path).suffix.lower() in SUPPORTED_SUFFIXES


class Watcher:
    def __init__(
        self,
        engine: Engine,
        folders: Sequence[str | Path],
        feeds: Sequence[str],
        poll_seconds: float | None = None,
    ) -> None:
        self.engine = engine
        self.folders = [Path(f) for f in folders]
        self.feeds = list(feeds)
        self.poll_seconds = poll_seconds if poll_seconds is not None else engine.settings.feed_poll_seconds
        self.states_path = engine.store_path / "feeds.json"
        self.states: dict[str, FeedState] = load_states(self.states_path)
        self.passes = 0

    def scan_folders(self) -> IngestReport | None:
        if not self.folders:
            return None
        report = self.engine.ingest(self.folders, prune=True, wait=300)
        self._log("folders", report)
        return report

    def poll_feeds(self) -> IngestReport | None:
        if not self.feeds:
            return None
        self.engine.open_store().close()  # creates the store on first use
        stored = self._stored_items()
        report = IngestReport()
        for url in self.feeds:
            items, self.states[url] = poll_feed(url, self.states.get(url, FeedState()), stored.__contains__)
            if items:
                partial = self.engine.ingest_items(items, wait=300)
                for name in ("added", "changed", "unchanged", "duplicates", "passages"):
                    setattr(report, name, getattr(report, name) + getattr(partial, name))
                report.skipped.extend(partial.skipped)
        save_states(self.states_path, self.states)
        self._log("feeds", report)
        return report

    def _stored_items(self) -> set[str]:
        store = self.engine.open_store()
        try:
            return {row[0] for row in store.db.execute("SELECT item FROM sources")}
        finally:
            store.close()

    def _log(self, what: str, report: IngestReport) -> None:
        self.passes += 1
        if report.touched:
            log.info("%s: %s", what, report.summary())

    # -- loops ------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Blocking: a first full pass, then a pass per burst of file events and per feed interval."""
        self.scan_folders()
        self.poll_feeds()
        next_poll = time.monotonic() + self.poll_seconds
        if not self.folders:
            while not stop.wait(max(next_poll - time.monotonic(), 0)):
                self.poll_feeds()
                next_poll = time.monotonic() + self.poll_seconds
            return
        for changes in watchfiles.watch(
            *self.folders,
            watch_filter=_article_file,
            stop_event=stop,
            yield_on_timeout=True,
            rust_timeout=int(min(self.poll_seconds, 5) * 1000),
            debounce=300,
            step=50,
        ):
            if changes:
                self.scan_folders()
            if time.monotonic() >= next_poll:
                self.poll_feeds()
                next_poll = time.monotonic() + self.poll_seconds

    async def run_async(self, run_blocking: Callable[..., Awaitable[Any]]) -> None:
        """The same inside the bot: file events arrive on the loop, ingests run in its executor."""
        await self._pass(run_blocking, self.scan_folders)
        await self._pass(run_blocking, self.poll_feeds)
        feeds_task = asyncio.create_task(self._poll_forever(run_blocking)) if self.feeds else None
        try:
            if self.folders:
                async for _changes in watchfiles.awatch(
                    *self.folders, watch_filter=_article_file, debounce=300, step=50
                ):
                    await self._pass(run_blocking, self.scan_folders)
            elif feeds_task is not None:
                await feeds_task
        finally:
            if feeds_task is not None:
                feeds_task.cancel()

    async def _poll_forever(self, run_blocking: Callable[..., Awaitable[Any]]) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            await self._pass(run_blocking, self.poll_feeds)

    @staticmethod
    async def _pass(run_blocking: Callable[..., Awaitable[Any]], step: Callable[[], Any]) -> None:
        try:
            await run_blocking(step)
        except StoreError as err:
            log.warning("watch pass skipped: %s", err)
        except Exception:
            log.exception("watch pass failed; the next change or poll tries again")


def run_watch(settings: Settings, folders: Sequence[str], feeds: Sequence[str], once: bool = False) -> int:
    folders = list(folders) or list(settings.article_dirs)
    feeds = list(feeds) or list(settings.feeds)
    if not folders and not feeds:
        print(
            "error: nothing to watch: give folders, --feed URL, or article_dirs/feeds in the settings",
            file=sys.stderr,
        )
        return 2
    logging.getLogger().setLevel(logging.INFO)
    watcher = Watcher(Engine(settings), folders, feeds)
    if once:
        for report in (watcher.scan_folders(), watcher.poll_feeds()):
            if report is not None:
                print(report.summary())
        return 0
    stop = threading.Event()
    try:
        watcher.run(stop)
    except KeyboardInterrupt:
        stop.set()
    return 0
