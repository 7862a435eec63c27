"""Arrivals: ingest files as they land in folders, poll feeds; as `newsbot watch` or inside the bot.

The folders are watched from before the first pass, so nothing that lands while it runs is missed.
The first pass reads every file (unchanged ones cost a hash lookup; files deleted while nobody
watched are pruned); after that each burst of file events is one small pass over just the paths
that changed: new and modified files are ingested, deleted ones (or deleted folders) pruned. A pass
that fails is followed by a full pass a little later. A watched folder that is missing (moved away,
not mounted) is not pruned: it is watched again, with a full pass, once it is back. A folder that holds
the store itself is refused: the store's own files would be read as articles.

Feeds are polled every ``feed_poll_seconds`` with conditional requests. The running bot picks up each
new index through :meth:`Engine.refresh`, which every ingest calls when it finishes (and the bot's
refresh loop polls, for ingests made elsewhere).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import watchfiles

from embeddings.articles import SUPPORTED_SUFFIXES
from embeddings.engine import Engine
from embeddings.feeds import STATES_FILE, FeedState, load_states, poll_feed, save_states
from embeddings.ingest import IngestReport
from embeddings.records import Article, Skip
from embeddings.settings import Settings
from embeddings.store import StoreBusy, StoreError

log = logging.getLogger(__name__)

# How long a pass waits for another writer (`newsbot ingest`, /reindex) before it gives up.
WRITER_WAIT = 300.0
# After a failed pass, everything is read again this much later.
RETRY_SECONDS = 30.0
# File events closer together than this are one burst, so a file being written is read once, whole.
DEBOUNCE_MS = 300
STEP_MS = 50
# How often the loop wakes without events, to poll feeds and notice a stop.
TICK_MS = 500

Changes = set[tuple[watchfiles.Change, str]]


def _warn_skip(skip: Skip) -> None:
    log.warning("skipped %s", skip)


def holds_store(folder: Path, store: Path) -> bool:
    folder, store = folder.expanduser().resolve(), store.expanduser().resolve()
    return folder == store or folder in store.parents


class Watcher:
    def __init__(
        self,
        engine: Engine,
        folders: Sequence[str | Path],
        feeds: Sequence[str],
        poll_seconds: float | None = None,
        *,
        wait: float = WRITER_WAIT,
        on_skip: Callable[[Skip], None] = _warn_skip,
    ) -> None:
        self.engine = engine
        self.folders = [Path(f).expanduser().resolve() for f in folders]
        self.feeds = list(dict.fromkeys(feeds))
        self.poll_seconds = poll_seconds if poll_seconds is not None else engine.settings.feed_poll_seconds
        self.wait = wait
        self.on_skip = on_skip
        self.states_path = engine.store_path / STATES_FILE
        self.states: dict[str, FeedState] = load_states(self.states_path)
        self.passes = 0
        self.requests = 0  # HTTP requests made for feeds, for the curious and the tests

    # -- passes ---------------------------------------------------------------------------
    def scan_folders(self) -> IngestReport | None:
        """A full pass: every file under the folders is read; stored files that are gone are pruned.

        A watched folder that is missing is left alone (warned about), not pruned: a drive that is
        not mounted must not empty the store.
        """
        present = self._usable_folders("reading")
        if not present:
            return None
        report = self._ingest(present, gone=set())
        self._log("folders", report)
        return report

    def apply_changes(self, changes: Iterable[tuple[watchfiles.Change, str]]) -> IngestReport | None:
        """A pass over just the paths that changed: present ones are ingested, gone ones pruned."""
        paths = sorted({Path(path) for _change, path in changes})
        if not paths:
            return None
        gone = {path for path in paths if not path.exists()}
        report = self._ingest(paths, gone)
        self._log("changes", report)
        return report

    def _ingest(self, paths: Sequence[Path], gone: set[Path]) -> IngestReport:
        gone_sources = {str(path.absolute()) for path in gone}

        def on_skip(skip: Skip) -> None:
            if skip.source not in gone_sources:  # a deleted path is pruned, not worth a warning
                self.on_skip(skip)

        def ingest(wait: float) -> IngestReport:
            return self.engine.ingest(paths, prune=True, wait=wait, on_skip=on_skip)

        report = self._as_writer(ingest)
        report.skipped = [s for s in report.skipped if s.source not in gone_sources]
        return report

    def poll_feeds(self) -> IngestReport | None:
        """Poll every feed once; their new entries are ingested in one go, then their validators kept."""
        if not self.feeds:
            return None
        stored = self._stored_items()
        articles: list[Article] = []
        report = IngestReport()
        states: dict[str, FeedState] = {}
        for url in self.feeds:
            poll = poll_feed(url, self.states.get(url), stored.__contains__)
            self.requests += poll.requests
            states[url] = poll.state
            for item in poll.items:
                if isinstance(item, Skip):
                    self.on_skip(item)
                    report.skipped.append(item)
                else:
                    articles.append(item)
        if articles:
            ingested = self._as_writer(lambda wait: self.engine.ingest_items(articles, wait=wait))
            ingested.skipped[:0] = report.skipped
            report = ingested
        # Only now: had the ingest failed, the next poll must fetch these entries again.
        self.states.update(states)
        save_states(self.states_path, self.states)
        self._log("feeds", report)
        return report

    def _usable_folders(self, doing: str = "") -> list[Path]:
        """The folders that can be read now; with ``doing``, the others are logged."""
        usable = []
        for folder in self.folders:
            if not folder.is_dir():
                if doing:
                    log.warning("not %s %s: no such folder", doing, folder)
            elif holds_store(folder, self.engine.store_path):
                if doing:
                    log.error("not %s %s: it holds the store %s", doing, folder, self.engine.store_path)
            else:
                usable.append(folder)
        return usable

    def _stored_items(self) -> set[str]:
        store = self.engine.open_store()  # creates the store on first use
        try:
            return {row[0] for row in store.db.execute("SELECT item FROM sources")}
        finally:
            store.close()

    def _as_writer(self, step: Callable[[float], IngestReport]) -> IngestReport:
        """Run a write; when another writer holds the store, say so once and wait for it."""
        try:
            return step(0.0)
        except StoreBusy as err:
            if self.wait <= 0:
                raise
            log.info("%s; waiting up to %.0f s", err, self.wait)
            return step(self.wait)

    def _log(self, what: str, report: IngestReport) -> None:
        self.passes += 1
        if report.touched or report.skipped:
            log.info("%s: %s", what, report.summary())

    # -- loops ------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Blocking, until ``stop`` is set: a full pass, then a pass per burst of file events and per feed
        interval. A watched folder that goes away (or comes back) is watched again, with a full pass.
        Failures are logged and retried; KeyboardInterrupt is left to the caller."""
        next_poll = time.monotonic()
        full_pass_at: float | None = time.monotonic()
        pending: Changes = set()
        while not stop.is_set():
            folders = self._usable_folders("watching")
            for changes in self._events(folders, stop):
                if stop.is_set():
                    return
                pending |= changes
                now = time.monotonic()
                if full_pass_at is not None and now >= full_pass_at:
                    pending.clear()  # the full pass reads them anyway
                    full_pass_at = None if self._guard(self.scan_folders) else now + RETRY_SECONDS
                elif pending:
                    batch, pending = pending, set()
                    if not self._guard(functools.partial(self.apply_changes, batch)):
                        full_pass_at = now + RETRY_SECONDS
                if self.feeds and time.monotonic() >= next_poll:
                    self._guard(self.poll_feeds)
                    next_poll = time.monotonic() + self.poll_seconds
                if self._usable_folders() != folders:
                    # A folder removed (or replaced) leaves its watch blind: watch them all again, and
                    # read what is there then.
                    full_pass_at = time.monotonic()
                    break

    def _events(self, folders: list[Path], stop: threading.Event) -> Iterator[Changes]:
        """Sets of file changes, or an empty set every tick; the watch starts before the first yield."""
        if not folders:
            yield set()
            while not stop.wait(TICK_MS / 1000):
                yield set()
            return
        # watchfiles starts watching before its first yield (at most a tick away) and keeps collecting
        # events while a pass runs, so files that land during the first pass are not missed.
        yield from watchfiles.watch(
            *folders,
            watch_filter=self._wanted,
            stop_event=stop,
            yield_on_timeout=True,
            rust_timeout=TICK_MS,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
        )

    def _wanted(self, change: watchfiles.Change, path: str) -> bool:
        """Article files, folders that appear, and anything deleted (it may have been a folder)."""
        where = Path(path)
        root = next((f for f in self.folders if f in where.parents), None)
        if root is None or any(part.startswith(".") for part in where.relative_to(root).parts):
            return False  # hidden files: editor swap files, partial downloads
        if where.suffix.lower() in SUPPORTED_SUFFIXES:
            return True
        if change == watchfiles.Change.deleted:
            return True
        return change == watchfiles.Change.added and where.is_dir()

    @staticmethod
    def _guard(step: Callable[[], object]) -> bool:
        try:
            step()
        except StoreError as err:
            log.warning("watch pass skipped: %s", err)
            return False
        except Exception:
            log.exception("watch pass failed; it is tried again")
            return False
        return True

    async def run_async(self) -> None:
        """The same inside the bot, on a thread of its own: questions never queue behind an ingest.

        Cancelling stops the watcher; an ingest under way finishes first, in the background.
        """
        stop = threading.Event()
        try:
            await asyncio.to_thread(self.run, stop)
        except Exception:
            log.exception("the watcher stopped; restart the bot to watch again")
        finally:
            stop.set()


def _check(folders: Sequence[str], feeds: Sequence[str], store: Path) -> list[str]:
    problems = []
    for folder in folders:
        path = Path(folder).expanduser()
        if not path.exists():
            problems.append(f"{folder}: no such folder")
        elif not path.is_dir():
            problems.append(f"{folder}: not a folder (watch the folder that holds it)")
        elif holds_store(path, store):
            problems.append(
                f"{folder}: holds the store {store}, whose own files would be read as articles: "
                "use a --store outside it"
            )
    problems.extend(
        f"{url}: not an http:// or https:// feed URL"
        for url in feeds
        if not url.startswith(("http://", "https://"))
    )
    return problems


def _print_skip(skip: Skip) -> None:
    print(f"warning: skipped {skip}", file=sys.stderr)


def run_watch(
    settings: Settings,
    folders: Sequence[str],
    feeds: Sequence[str],
    once: bool = False,
    wait: float = WRITER_WAIT,
) -> int:
    """`newsbot watch`: 0 when stopped with Ctrl-C (or SIGTERM) or after --once; 2 on a usage error."""
    folders = list(folders) or list(settings.article_dirs)
    feeds = list(feeds) or list(settings.feeds)
    if not folders and not feeds:
        print(
            "error: nothing to watch: give folders, --feed URL, or article_dirs/feeds in the settings",
            file=sys.stderr,
        )
        return 2
    problems = _check(folders, feeds, Path(settings.store))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    watcher = Watcher(Engine(settings), folders, feeds, wait=wait, on_skip=_print_skip)
    if once:
        for report in (watcher.scan_folders(), watcher.poll_feeds()):
            if report is not None:
                print(report.summary())
        return 0
    # Running on: each pass that changed something is logged.
    for name in ("bot", "embeddings"):
        logging.getLogger(name).setLevel(logging.INFO)
    stop = threading.Event()
    # SIGTERM (systemd, docker stop) stops the watcher like Ctrl-C does: an ingest under way is rolled
    # back, and the next start reads what it missed.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if main_thread else None
    what = ", ".join([*(str(Path(f)) for f in folders), *feeds])
    print(f"watching {what} (store {settings.store}); Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        watcher.run(stop)
    except KeyboardInterrupt:
        stop.set()
        print("stopped", file=sys.stderr)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0
