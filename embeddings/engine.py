"""The whole pipeline behind one object, shared by the command line and the Discord bot.

An Engine owns the encoder (one per process) and the current Searcher snapshot. Answers are
computed on whatever snapshot was current when the question arrived; :meth:`refresh` builds the
next snapshot aside and swaps it in with one assignment, so questions in flight never see a mix.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from embeddings.answer import AnswerOptions, check_question
from embeddings.conversation import Conversation, Resolved, respond
from embeddings.encoder import Encoder, load_encoder
from embeddings.ingest import Ingestor, IngestReport, ingest_paths
from embeddings.reader import Reader
from embeddings.records import Answer, Article, Skip
from embeddings.reembed import BATCH_PASSAGES, ReembedReport, reembed
from embeddings.retrieval import Searcher, SearchOptions
from embeddings.settings import SAMPLES_DIR, Settings
from embeddings.spelling import Spelling
from embeddings.store import DB_NAME, Store, StoreBusy, StoreError, write_failed
from embeddings.wording import plain_question

log = logging.getLogger(__name__)


def search_options(settings: Settings) -> SearchOptions:
    return SearchOptions(
        k=settings.top_k,
        per_article=settings.per_article,
        fusion=settings.fusion,
        rrf_k=settings.rrf_k,
        dense_weight=settings.dense_weight,
        keyword_weight=settings.keyword_weight,
    )


def answer_options(settings: Settings) -> AnswerOptions:
    return AnswerOptions(
        threshold=settings.abstain_threshold,
        reader_sentences=settings.reader_sentences,
        reader_stop=settings.reader_stop,
        hopeless_sentences=settings.hopeless_sentences,
        reader_threshold=settings.reader_threshold,
        reader_abstain_weight=settings.reader_abstain_weight,
        pair_margin=settings.pair_margin,
        answer_words=settings.answer_words,
    )


class Engine:
    def __init__(self, settings: Settings, encoder: Encoder | None = None) -> None:
        self.settings = settings
        self.encoder = encoder or load_encoder(settings.model, settings.backend, settings.device)
        self._searcher: Searcher | None = None
        self._refresh_lock = threading.Lock()
        self._reader: Reader | None = None
        self._reader_lock = threading.Lock()

    @property
    def reader(self) -> Reader | None:
        """The trained reader, loaded on first use; None when the settings turn it off."""
        if not self.settings.reader:
            return None
        with self._reader_lock:
            if self._reader is None:
                self._reader = Reader()
        return self._reader

    @property
    def store_path(self) -> Path:
        return Path(self.settings.store)

    def has_store(self) -> bool:
        return (self.store_path / DB_NAME).exists()

    def open_store(self) -> Store:
        return Store(
            self.store_path, model=self.encoder.name, dim=self.encoder.dim, encoder=self.encoder.identity
        )

    # -- writing ---------------------------------------------------------------------------
    def ingest(
        self,
        paths: Iterable[str | Path],
        *,
        prune: bool = False,
        progress: bool = False,
        wait: float = 0.0,
        on_skip: Callable[[Skip], None] | None = None,
        ray: str | None = None,
    ) -> IngestReport:
        """Ingest files and folders; with ``ray`` (an address, or "local"), embed on Ray Data."""
        with self._writing(wait) as store, self._ingest_encoder(ray) as encoder:
            return ingest_paths(
                paths, store, encoder, self.settings, prune=prune, progress=progress, on_skip=on_skip
            )

    @contextlib.contextmanager
    def _writing(self, wait: float, store: Store | None = None) -> Iterator[Store]:
        """The store with its writer lock held; readers move to what was written once it is done."""
        store = store or self.open_store()
        try:
            with store.writer(wait=wait):
                yield store
        except (sqlite3.Error, OSError) as err:
            # A full disk, or damage in pages the open did not read: what was committed stays as it was.
            raise write_failed(store.root, err) from None
        finally:
            store.close()
        self.refresh()

    @contextlib.contextmanager
    def _ingest_encoder(self, ray: str | None) -> Iterator[Encoder]:
        """This process's encoder, or one on Ray for as long as the ingest runs (started once the
        writer lock is held, so a busy store fails before Ray's start-up is paid for)."""
        if ray is None:
            yield self.encoder
            return
        from embeddings.ray_encoder import RayEncoder

        with RayEncoder(
            self.encoder,
            model=self.settings.model,
            backend=self.settings.backend,
            device=self.settings.device,
            address=ray,
        ) as remote:
            yield remote

    def reembed(
        self, *, progress: bool = False, wait: float = 0.0, batch_passages: int = BATCH_PASSAGES
    ) -> ReembedReport:
        """Give every stored passage this engine's encoder's vectors (see reembed.py)."""
        store = Store(self.store_path, model=self.encoder.name, dim=self.encoder.dim, create=False)
        with self._writing(wait, store):
            report = reembed(
                store,
                self.encoder,
                batch_size=self.settings.batch_size,
                batch_passages=batch_passages,
                progress=progress,
            )
            if report.passages:
                # The keyword index only records the new generation; the vector changes are folded
                # into a new FAISS file, since every vector changed.
                Ingestor(store, self.encoder, self.settings).finish()
        return report

    def ingest_items(self, items: Iterable[Article | Skip], *, wait: float = 0.0) -> IngestReport:
        """Ingest articles that did not come from files (feed entries, eval corpora)."""
        with self._writing(wait) as store:
            ingestor = Ingestor(store, self.encoder, self.settings)
            report = ingestor.ingest(items)
            ingestor.finish()
        return report

    def forget(self, items: Iterable[str], *, wait: float = 0.0) -> IngestReport:
        """Remove these source items (articles that no other source holds go with them)."""
        report = IngestReport()
        with self._writing(wait) as store:
            ingestor = Ingestor(store, self.encoder, self.settings)
            ingestor.remove(items, report)
            ingestor.finish()
        return report

    def ensure_default_corpus(self) -> IngestReport | None:
        """On a fresh machine, index the shipped sample article so the demo has something to read."""
        if self.has_store():
            return None
        return self.ingest([SAMPLES_DIR], wait=60)

    # -- reading ---------------------------------------------------------------------------
    @property
    def searcher(self) -> Searcher:
        if self._searcher is None:
            self.refresh()
            self._catch_up_keyword()
        assert self._searcher is not None
        return self._searcher

    def _catch_up_keyword(self) -> None:
        """Bring a keyword index that is behind the store (a crash between their commits, or one an
        older newsbot built with another analyzer) up to date now, rather than answering from the
        vectors alone until the next ingest: when this process may write the store and no ingest
        holds it."""
        searcher = self._searcher
        if searcher is None or searcher.keyword.generation == searcher.generation:
            return
        if not os.access(self.store_path, os.W_OK):
            return
        log.info("keyword index of %s is behind the store; catching it up", self.store_path)
        try:
            with self._writing(0) as store:
                Ingestor(store, self.encoder, self.settings).finish()
        except StoreBusy:
            # An ingest is under way (its keyword commit follows its SQLite one), and catches it up.
            log.debug("keyword index of %s left to the ingest under way", self.store_path)
        except StoreError as err:
            log.warning("keyword index left for the next ingest: %s", err)

    def refresh(self) -> bool:
        """Swap in a snapshot of the store's newest generation; True when it changed."""
        with self._refresh_lock:
            current = self._searcher
            if current is not None and current.is_current():
                return False
            fresh = Searcher(
                self.store_path,
                self.encoder,
                factory=self.settings.index,
                threads=self.settings.search_threads,
            )
            self._searcher = fresh
        if current is not None:
            log.info("index now at generation %d (%d passages)", fresh.generation, fresh.size)
            # Questions still running on the old snapshot hold their own reference to it; its
            # SQLite connection closes when the last of them lets go.
        return True

    def ask(
        self, question: str, *, conversation: Conversation | None = None, guild: int | None = None
    ) -> Answer:
        """Answer a question; in a conversation, in the context of its last turns (and add this one).

        ``guild``: answer only from what that Discord guild can see; None (the command line): all."""
        question = check_question(question, self.settings.max_question_chars)
        searcher = self.searcher
        spelled = self.read_question(question, searcher)
        read = spelled.question
        resolved = conversation.resolve(read) if conversation is not None else Resolved.alone(read)
        result, _ = respond(
            searcher,
            resolved,
            search_options(self.settings),
            answer_options(self.settings),
            top_k=self.settings.top_k,
            guild=guild,
            reader=self.reader,
        )
        if conversation is not None:
            conversation.add(resolved, result)
        return replace(result, question=question, corrections=spelled.corrections)

    def read_question(self, question: str, searcher: Searcher) -> Spelling:
        """The question as newsbot reads it: without the chat around it ("hey, can you tell me ...":
        wording.py), and as the searcher's passages spell it unless the settings turn that off."""
        plain = plain_question(question)
        return searcher.spell(plain) if self.settings.spelling else Spelling(plain)
