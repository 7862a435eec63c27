"""load -> chunk -> encode -> store, incremental by content hash.

Unchanged articles cost a hash lookup; the same story from a second place is attached to the stored
one without embedding; new and changed articles are embedded in large batches (the encoder is the
bottleneck) and written one transaction per batch. The derived FAISS and BM25 files are brought up
to the final generation at the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from embeddings import index as vector_index
from embeddings.articles import load_paths
from embeddings.chunking import chunk_article, embed_title, embedding_text, load_tokenizer
from embeddings.encoder import Encoder, model_path
from embeddings.keyword import KeywordIndex
from embeddings.records import Article, Skip
from embeddings.retrieval import passage_texts
from embeddings.settings import Settings
from embeddings.store import Delta, Pending, Store, read_vectors

log = logging.getLogger(__name__)


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
    def touched(self) -> int:
        return self.added + self.changed + self.duplicates + self.removed

    def summary(self) -> str:
        return (
            f"{self.added} added, {self.changed} changed, {self.unchanged} unchanged, "
            f"{self.duplicates} duplicates, {self.removed} removed, {len(self.skipped)} skipped; "
            f"{self.passages} passages embedded in {self.seconds:.1f} s"
        )


def origin_of(article: Article) -> str:
    """The file or feed an item came from: what must still exist for it to stay."""
    if article.source.startswith(("http://", "https://")):
        return article.source
    return article.source.split("#", 1)[0]


class Ingestor:
    """Writes articles into a store it holds the writer lock of, keeping the derived indexes in step."""

    def __init__(self, store: Store, encoder: Encoder, settings: Settings) -> None:
        self.store = store
        self.encoder = encoder
        self.settings = settings
        self.tokenizer = load_tokenizer(model_path(settings.model))
        self._dense = None  # loaded on first write

    # -- the public steps ---------------------------------------------------------------------
    def ingest(
        self,
        items: Iterable[Article | Skip],
        report: IngestReport | None = None,
        progress: bool = False,
        batch_passages: int = 512,
    ) -> IngestReport:
        report = report or IngestReport()
        started = time.perf_counter()
        batch: list[tuple[Article, list]] = []
        batch_size = 0
        seen: set[str] = set()
        bar = tqdm(desc="ingest", unit=" articles", disable=not progress, leave=False)
        for item in items:
            bar.update()
            if isinstance(item, Skip):
                log.warning("skipped %s", item)
                report.skipped.append(item)
                continue
            if item.id in seen:
                continue
            seen.add(item.id)
            if self.store.stored_hash(item.id) == item.content_hash:
                report.unchanged += 1
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
                report.skipped.append(Skip(item.source, "no sentences to index"))
                continue
            batch.append((item, chunks))
            batch_size += len(chunks)
            if batch_size >= batch_passages:
                self._embed_and_write(batch, report)
                batch, batch_size = [], 0
        if batch:
            self._embed_and_write(batch, report)
        bar.close()
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
            removed, delta = self.store.remove_items(gone)
            report.removed += removed
            self._apply(delta)

    def finish(self) -> None:
        """Save the derived indexes for the store's generation, unless they are already there."""
        root, generation = self.store.root, self.store.generation
        have_dense = vector_index.index_file(root, generation).exists()
        have_keyword = (root / f"keyword-{generation}" / "ids.npy").exists()
        if have_dense and have_keyword:
            return
        vector_index.save_index(self.dense(), root, generation)
        ids, texts = passage_texts(self.store.db)
        KeywordIndex.build(ids, texts).save(root, generation)

    # -- internals ----------------------------------------------------------------------------
    def dense(self):  # type: ignore[no-untyped-def]
        if self._dense is None:
            generation = self.store.generation
            # The writer changes its index in place, so it reads a private copy rather than a mapping.
            loaded = vector_index.load_index(self.store.root, generation, mmap=False)
            if loaded is not None:
                self._dense = loaded
            else:
                ids, vectors = read_vectors(self.store.db, self.encoder.dim)
                self._dense = vector_index.build_index(ids, vectors, self.encoder.dim, self.settings.index)
        return self._dense

    def _embed_and_write(self, batch: list[tuple[Article, list]], report: IngestReport) -> None:
        texts = []
        for article, chunks in batch:
            title, _ = embed_title(self.tokenizer, article.title)
            texts.extend(embedding_text(title, c.text) for c in chunks)
        started = time.perf_counter()
        vectors = self.encoder.encode(texts, batch_size=self.settings.batch_size)
        report.embed_seconds += time.perf_counter() - started
        pending, offset = [], 0
        for article, chunks in batch:
            pending.append(Pending(article, origin_of(article), chunks, vectors[offset : offset + len(chunks)]))
            offset += len(chunks)
        self._write(pending, report)
        report.passages += len(texts)

    def _write(self, pending: list[Pending], report: IngestReport) -> None:
        for p in pending:
            if p.chunks is None:
                report.duplicates += 1
            elif self.store.stored_hash(p.item.id) is None:
                report.added += 1
            else:
                report.changed += 1
        self._apply(self.store.write(pending))

    def _apply(self, delta: Delta) -> None:
        added = np.concatenate(delta.added_vectors) if delta.added_vectors else np.zeros((0, self.encoder.dim))
        vector_index.apply_changes(
            self.dense(), np.asarray(delta.added_ids, dtype=np.int64), added,
            np.asarray(delta.removed_ids, dtype=np.int64),
        )


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
            elif on_skip is not None:
                on_skip(item)
            yield item

    ingestor.ingest(tracked(), report, progress=progress)
    if prune:
        ingestor.prune([Path(p) for p in paths], seen, report)
    ingestor.finish()
    return report
