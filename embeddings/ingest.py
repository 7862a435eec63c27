"""load -> chunk -> encode -> store, incremental by content hash.

Unchanged articles cost a hash lookup; the same story from a second place is attached to the stored
one without embedding; new and changed articles are embedded in large batches (the encoder is the
bottleneck) and written one transaction per batch; the keyword index follows each batch. The FAISS
file is left alone unless the changes since it was saved have grown large: readers add them from
SQLite (see index.VectorIndex), so adding ten articles writes ten articles' worth.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeddings import index as vector_index
from embeddings.articles import discover_files, load_paths, normalized_hash, source_path
from embeddings.chunking import chunk_article, embed_title, embedding_text, load_tokenizer
from embeddings.encoder import Encoder
from embeddings.keyword import KeywordWriter
from embeddings.records import Article, Chunk, Skip
from embeddings.settings import Settings
from embeddings.store import Delta, Pending, Store, passage_count, read_vectors

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """Articles waiting to be embedded together, and the duplicates waiting for them."""

    articles: list[tuple[Article, list[Chunk]]] = field(default_factory=list)
    stories: set[str] = field(default_factory=set)
    attach_later: list[Article] = field(default_factory=list)
    size: int = 0

    def add(self, article: Article, chunks: list[Chunk], story: str) -> None:
        self.articles.append((article, chunks))
        self.stories.add(story)
        self.size += len(chunks)


# A batch being encoded on the worker thread: its passage and sentence vectors, when they come.
Flight = tuple[Batch, Future[tuple[np.ndarray, np.ndarray]]]


@dataclass
class IngestReport:
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    duplicates: int = 0
    removed: int = 0
    passages: int = 0
    skipped: list[Skip] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0

    @property
    def read(self) -> int:
        """Items read and stored (or found already stored): everything but the skipped."""
        return self.added + self.changed + self.unchanged + self.duplicates

    @property
    def touched(self) -> int:
        return self.added + self.changed + self.duplicates + self.removed

    def summary(self) -> str:
        return (
            f"{self.added} added, {self.changed} changed, {self.unchanged} unchanged, "
            f"{self.duplicates} duplicates, {self.removed} removed, {len(self.skipped)} skipped; "
            f"{self.passages} passages embedded in {self.seconds:.1f} s"
        )


# A batch is written once it holds this many passages, or about this many seconds of encoding, or
# has waited this long: a kill loses at most that much work, and a long ingest shows progress on disk.
BATCH_PASSAGES = 2048
BATCH_SECONDS = 10.0
# Passages encoded per call (the encoder's own batch), so the progress bar moves within a batch.
PROGRESS_STEP = 32


class Progress:
    """Passages embedded out of an estimated total, with tqdm's rate and ETA.

    The files were counted up front (a cheap walk), but how many passages they hold is known only
    once they are read: the total is the passages found so far plus the files still unread at the
    mean passages per file so far, so it settles as the ingest goes on.
    """

    def __init__(self, enabled: bool, files_total: int | None = None) -> None:
        # Imported here: tqdm costs a fresh process 20 ms, and answering a question never needs it.
        from tqdm import tqdm

        self.bar = tqdm(desc="embedding", unit=" passages", disable=not enabled, leave=False, smoothing=0.05)
        self.files_total = files_total
        self.files_read = 0
        self.found = 0  # passages to embed, among the files read so far
        self._file: str | None = None

    def read(self, item: Article | Skip) -> None:
        path = source_path(item.source)
        name = str(path) if path is not None else item.source
        if name != self._file:
            self._file = name
            self.files_read += 1

    def chunked(self, passages: int) -> None:
        self.found += passages
        estimate = self.found
        if self.files_total and self.files_read:
            left = max(self.files_total - self.files_read, 0)
            estimate += round(self.found / self.files_read * left)
        self.bar.total = max(estimate, self.bar.n)
        if self.files_total:
            self.bar.set_postfix_str(f"{self.files_read}/{self.files_total} files", refresh=False)
        self.bar.refresh()

    def embedded(self, passages: int) -> None:
        self.bar.update(passages)

    def close(self) -> None:
        self.bar.close()


def _log_skip(skip: Skip) -> None:
    log.warning("skipped %s", skip)


def origin_of(article: Article) -> str:
    """The file or feed an item came from: what must still exist for it to stay."""
    path = source_path(article.source)
    return str(path) if path is not None else article.source


class Ingestor:
    """Writes articles into a store it holds the writer lock of, keeping the derived indexes in step."""

    def __init__(self, store: Store, encoder: Encoder, settings: Settings) -> None:
        self.store = store
        self.encoder = encoder
        self.settings = settings
        self.tokenizer = load_tokenizer(encoder.tokenizer_file)
        self._keyword: KeywordWriter | None = None
        self._progress = Progress(False)
        self._rate = 25.0

    # -- the public steps ---------------------------------------------------------------------
    def ingest(
        self,
        items: Iterable[Article | Skip],
        report: IngestReport | None = None,
        progress: bool = False,
        batch_passages: int = BATCH_PASSAGES,
        on_skip: Callable[[Skip], None] | None = None,
        files_total: int | None = None,
    ) -> IngestReport:
        report = report or IngestReport()
        on_skip = on_skip or _log_skip
        started = time.perf_counter()
        batch = Batch()
        seen: set[str] = set()
        # One batch is encoded on a worker thread while the next is read and chunked here; the
        # encoder releases the GIL, so reading costs the encoder almost nothing.
        in_flight: Flight | None = None
        encoding = ThreadPoolExecutor(max_workers=1, thread_name_prefix="newsbot-encode")
        self._progress = Progress(progress, files_total)
        # Until the encoder's speed is measured, a first batch of 64 passages, which lands within
        # seconds (a cluster is given whole batches: each job has a start-up cost).
        self._rate = float("inf") if getattr(self.encoder, "remote", False) else 6.4
        batch_started = time.monotonic()
        try:
            for item in items:
                self._progress.read(item)
                if isinstance(item, Skip):
                    on_skip(item)
                    report.skipped.append(item)
                    continue
                if item.id in seen:
                    continue
                seen.add(item.id)
                if self.store.stored_hash(item.id) == item.content_hash:
                    report.unchanged += 1
                    continue
                norm = normalized_hash(item.text)
                if norm in batch.stories or (in_flight is not None and norm in in_flight[0].stories):
                    # Its twin is waiting to be stored: attach it once the twin is.
                    batch.attach_later.append(item)
                    continue
                if self.store.find_same_story(item) is not None:
                    self._write([Pending(item, origin_of(item))], report)
                    continue
                chunks = chunk_article(
                    item,
                    self.tokenizer,
                    max_tokens=self.encoder.max_tokens,
                    chunk_tokens=self.settings.chunk_tokens,
                    overlap_sentences=self.settings.overlap_sentences,
                )
                if not chunks:
                    skip = Skip(item.source, "no sentences to index")
                    on_skip(skip)
                    report.skipped.append(skip)
                    continue
                batch.add(item, chunks, norm)
                self._progress.chunked(len(chunks))
                full = batch.size >= min(batch_passages, max(64, self._rate * BATCH_SECONDS))
                if full or time.monotonic() - batch_started >= BATCH_SECONDS:
                    self._land(in_flight, report)
                    in_flight = (batch, encoding.submit(self._encode, batch))
                    batch, batch_started = Batch(), time.monotonic()
            self._land(in_flight, report)
            in_flight = None
            if batch.articles or batch.attach_later:
                self._land((batch, encoding.submit(self._encode, batch)), report)
        finally:
            encoding.shutdown(cancel_futures=True)
            self._progress.close()
        report.seconds += time.perf_counter() - started
        return report

    def prune(self, paths: Iterable[Path], seen_items: set[str], report: IngestReport) -> None:
        """Remove items whose file is gone, or that a re-read file under ``paths`` no longer holds."""
        roots = [Path(p).resolve() for p in paths]
        gone: list[str] = []
        for origin, items in self.store.items_by_origin().items():
            if origin.startswith(("http://", "https://")):
                continue
            path = Path(origin)
            if not any(path == root or root in path.parents for root in roots):
                continue
            gone.extend(item for item in items if not path.exists() or item not in seen_items)
        if gone:
            self.remove(gone, report)

    def remove(self, items: Iterable[str], report: IngestReport) -> None:
        """Forget these source items; articles no source holds any more leave the store."""
        keyword = self.keyword()
        removed, delta = self.store.remove_items(items)
        report.removed += removed
        self._apply(delta, keyword)

    def finish(self) -> None:
        """Leave the keyword index caught up with the store, and fold the vector changes into a new
        FAISS file when they have grown large (or the store outgrew its kind of index)."""
        for stale in self.store.root.glob("vectors-*.tmp"):  # a save killed half-way; as big as the index
            stale.unlink(missing_ok=True)
        self.keyword().close()
        self._keyword = None
        self._save_vectors()

    def _save_vectors(self) -> None:
        root, generation, db, dim = self.store.root, self.store.generation, self.store.db, self.encoder.dim
        passages = passage_count(db)
        current = vector_index.open_vectors(root, db, generation, dim, self.settings.index)
        if current.base_generation is None:
            index = current.base  # built from every stored vector just now
        elif vector_index.outgrown(current.base, passages, self.settings.index):
            # Readers keep answering from the saved index (and the changes since) meanwhile.
            log.info("rebuilding the vector index for %d passages", passages)
            index = vector_index.build_index(*read_vectors(db, dim), dim, self.settings.index)
        elif current.needs_compaction(passages):
            index = current.compacted(root)
        else:
            return  # readers add the changes since the saved file themselves
        vector_index.save_index(index, root, generation, db)
        # Tombstones older than every file left on disk are needed by no reader that opens now.
        self.store.forget_removals(through=vector_index.saved_generations(root)[-1])

    def keyword(self) -> KeywordWriter:
        if self._keyword is None:
            self._keyword = KeywordWriter(self.store.root)
            self._keyword.catch_up(self.store.db, self.store.generation)
        return self._keyword

    def _encode(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Passage vectors, and sentence vectors pooled from the same pass."""
        texts: list[str] = []
        spans: list[list[tuple[int, int]]] = []
        for article, chunks in batch.articles:
            title, _ = embed_title(self.tokenizer, article.title)
            for chunk in chunks:
                text = embedding_text(title, chunk.text)
                shift = len(text) - len(chunk.text)
                texts.append(text)
                spans.append([(a + shift, b + shift) for a, b in chunk.sentences])
        remote = getattr(self.encoder, "remote", False)
        step = len(texts) if remote else PROGRESS_STEP  # a cluster gets one job per batch
        if not texts:
            return self.encoder.encode_spans(texts, spans, batch_size=self.settings.batch_size)
        started = time.perf_counter()
        vectors, sentence_vectors = [], []
        for at in range(0, len(texts), step):
            v, sv = self.encoder.encode_spans(
                texts[at : at + step], spans[at : at + step], self.settings.batch_size
            )
            vectors.append(v)
            sentence_vectors.append(sv)
            self._progress.embedded(len(v))
        if not remote:
            self._rate = len(texts) / max(time.perf_counter() - started, 1e-3)
        return np.concatenate(vectors), np.concatenate(sentence_vectors)

    def _land(self, flight: Flight | None, report: IngestReport) -> None:
        """Wait for a batch's vectors, store it, then the duplicates that waited for it."""
        if flight is None:
            return
        batch, future = flight
        started = time.perf_counter()
        vectors, sentence_vectors = future.result()
        report.embed_seconds += time.perf_counter() - started
        pending, offset, sentence_offset = [], 0, 0
        for article, chunks in batch.articles:
            sentences = sum(len(c.sentences) for c in chunks)
            pending.append(
                Pending(
                    article,
                    origin_of(article),
                    chunks,
                    vectors[offset : offset + len(chunks)],
                    sentence_vectors[sentence_offset : sentence_offset + sentences],
                )
            )
            offset += len(chunks)
            sentence_offset += sentences
        if pending:
            self._write(pending, report)
        report.passages += len(vectors)
        self._attach(batch.attach_later, report)

    def _attach(self, items: list[Article], report: IngestReport) -> None:
        if items:
            self._write([Pending(item, origin_of(item)) for item in items], report)

    def _write(self, pending: list[Pending], report: IngestReport) -> None:
        for p in pending:
            if p.chunks is None:
                report.duplicates += 1
            elif self.store.stored_hash(p.item.id) is None:
                report.added += 1
            else:
                report.changed += 1
        keyword = self.keyword()  # caught up before the write, so the delta is not applied twice
        self._apply(self.store.write(pending), keyword)

    def _apply(self, delta: Delta, keyword: KeywordWriter) -> None:
        keyword.apply(delta.added_texts, delta.removed_ids)
        keyword.commit(self.store.generation)


def ingest_paths(
    paths: Iterable[str | Path],
    store: Store,
    encoder: Encoder,
    settings: Settings,
    *,
    prune: bool = False,
    progress: bool = False,
    on_skip: Callable[[Skip], None] | None = None,
) -> IngestReport:
    """Ingest files and folders into a store whose writer lock the caller holds."""
    paths = list(paths)
    ingestor = Ingestor(store, encoder, settings)
    report = IngestReport()
    seen: set[str] = set()

    def tracked() -> Iterator[Article | Skip]:
        for item in load_paths(paths, max_file_mb=settings.max_file_mb):
            if isinstance(item, Article):
                seen.add(item.id)
            yield item

    # Counting the files first is a walk of the folders, no reading: it gives the progress bar a total.
    files_total = len(discover_files(paths)[0]) if progress else None
    ingestor.ingest(tracked(), report, progress=progress, on_skip=on_skip, files_total=files_total)
    if prune:
        ingestor.prune([Path(p) for p in paths], seen, report)
    ingestor.finish()
    return report
