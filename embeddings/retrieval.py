"""Searcher: an immutable snapshot of the store that answers top-k passage queries.

A Searcher holds one SQLite read transaction open for its whole life, and the vector index of exactly
that generation (a saved FAISS file plus the changes since, read in that same transaction), so every
answer comes from one state of the store even while an ingest writes the next one. The bot swaps in
a new Searcher when the generation moves on.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from embeddings import index as vector_index
from embeddings import keyword, spelling
from embeddings.encoder import Encoder
from embeddings.records import Article, Chunk, Hit
from embeddings.store import (
    ARTICLE_COLUMNS,
    Store,
    StoreError,
    article_from_row,
    needs_migration,
    open_readonly,
    passage_count,
    read_generation,
    scoped_articles,
)

FUSIONS = ("rrf", "weighted", "dense", "keyword")


@dataclass(frozen=True)
class SearchOptions:
    k: int = 5
    per_article: int = 2
    fusion: str = "rrf"
    rrf_k: int = 10
    dense_weight: float = 1.0
    keyword_weight: float = 2.0
    # How many candidates each side brings to the fusion.
    depth: int = 50
    # A follow-up's preferred articles (those just cited) rank their passages as a third list in the
    # fusion, with this weight.
    prefer_weight: float = 3.0


def fuse(
    dense_ids: np.ndarray,
    dense_scores: np.ndarray,
    keyword_ids: np.ndarray,
    keyword_scores: np.ndarray,
    options: SearchOptions,
) -> list[tuple[int, float]]:
    """One ranking from the dense and keyword candidate lists (each best first), as ``options`` says."""
    if options.fusion == "dense":
        return list(zip(dense_ids.tolist(), dense_scores.tolist(), strict=True))
    if options.fusion == "keyword":
        return list(zip(keyword_ids.tolist(), keyword_scores.tolist(), strict=True))
    scores: dict[int, float] = {}
    if options.fusion == "rrf":
        for weight, ids in ((options.dense_weight, dense_ids), (options.keyword_weight, keyword_ids)):
            for rank, chunk_id in enumerate(ids.tolist()):
                scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (options.rrf_k + rank + 1)
    elif options.fusion == "weighted":
        # Each side scaled to [0, 1] by its best score, so neither scale dominates by accident.
        for weight, ids, raw in (
            (options.dense_weight, dense_ids, dense_scores),
            (options.keyword_weight, keyword_ids, keyword_scores),
        ):
            if len(raw) and raw[0] > 0:
                for chunk_id, value in zip(ids.tolist(), (raw / raw[0]).tolist(), strict=True):
                    scores[chunk_id] = scores.get(chunk_id, 0.0) + weight * value
    else:
        raise ValueError(f"fusion {options.fusion!r} is not one of {', '.join(FUSIONS)}")
    return sorted(scores.items(), key=lambda item: -item[1])


class Searcher:
    def __init__(self, root: Path, encoder: Encoder, *, factory: str = "auto", threads: int = 1) -> None:
        self.root = Path(root)
        self.encoder = encoder
        # Read-only: a reader needs no write access to the store (the model is checked first).
        self._db = open_readonly(self.root, encoder.name, encoder.dim, encoder.identity)
        if needs_migration(self._db):
            # A store from an older newsbot is brought up to date when this user may write it, and
            # read as it is when not.
            self._db.close()
            with contextlib.suppress(StoreError):
                Store(
                    self.root, model=encoder.name, dim=encoder.dim, encoder=encoder.identity, create=False
                ).close()
            self._db = open_readonly(self.root, encoder.name, encoder.dim, encoder.identity)
        self._db.execute("BEGIN")
        self.generation = int(
            self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]
        )
        self._lock = threading.Lock()
        self.dense = vector_index.open_vectors(self.root, self._db, self.generation, encoder.dim, factory)
        self.size = passage_count(self._db)
        self.keyword = keyword.KeywordSearcher(self.root)
        self._articles: OrderedDict[str, Article] = OrderedDict()
        # Articles shared in a Discord guild are seen only there: their ids and the guilds that shared them.
        self.scoped = scoped_articles(self._db)
        faiss.omp_set_num_threads(threads)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def embed_query(self, question: str) -> np.ndarray:
        return self.encoder.encode([question])[0]

    def search(
        self,
        question: str,
        options: SearchOptions,
        query: np.ndarray | None = None,
        *,
        prefer: Collection[str] = (),
        guild: int | None = None,
    ) -> list[Hit]:
        """The best passages for a question, at most ``per_article`` from any one article.

        ``prefer``: articles whose passages rank higher (a follow-up's, just cited). ``guild``: only
        articles that guild can see (folder and feed articles, and those shared in it); None: all.
        """
        if query is None:
            query = self.embed_query(question)
        # Scoped-out passages are dropped after the fusion: reach deeper so k remain.
        depth = options.depth * (2 if self.scoped and guild is not None else 1)
        dense_scores, dense_ids = self.dense.search(query, depth)
        dense_by_id = dict(zip(dense_ids.tolist(), dense_scores.tolist(), strict=True))
        fused = self._fuse(question, dense_ids, dense_scores, options)
        if prefer:
            fused = self._prefer(fused, prefer, query, options)
        hits: list[Hit] = []
        per_article: dict[str, int] = {}
        for chunk_id, score in fused:
            chunk = self.chunk(chunk_id)
            if chunk is None or not self.visible(chunk.article_id, guild):
                continue
            if per_article.get(chunk.article_id, 0) >= options.per_article:
                continue
            per_article[chunk.article_id] = per_article.get(chunk.article_id, 0) + 1
            dense_score = dense_by_id.get(chunk_id)
            if dense_score is None:
                dense_score = float(np.dot(self.vector(chunk_id), query))
            hits.append(Hit(chunk, self.article(chunk.article_id), score, len(hits) + 1, dense_score))
            if len(hits) == options.k:
                break
        return hits

    def visible(self, article_id: str, guild: int | None) -> bool:
        if guild is None:
            return True
        guilds = self.scoped.get(article_id)
        return guilds is None or guild in guilds

    def _prefer(
        self,
        fused: list[tuple[int, float]],
        prefer: Collection[str],
        query: np.ndarray,
        options: SearchOptions,
    ) -> list[tuple[int, float]]:
        """Add the preferred articles' passages, ranked by meaning, to the fusion as a third list."""
        with self._lock:
            ids = [
                r[0]
                for article_id in prefer
                for r in self._db.execute("SELECT id FROM chunks WHERE article_id = ?", (article_id,))
            ]
        if not ids:
            return fused
        cosines = [float(np.dot(self.vector(i), query)) for i in ids]
        ranked = [ids[i] for i in np.argsort(cosines)[::-1]]
        scores = dict(fused)
        # The bonus is on the scale of the fused scores: rank fusion's, or the best score of the others.
        scale = 1.0 if options.fusion == "rrf" else (fused[0][1] if fused else 1.0) * (options.rrf_k + 1)
        for rank, chunk_id in enumerate(ranked):
            bonus = options.prefer_weight * scale / (options.rrf_k + rank + 1)
            scores[chunk_id] = scores.get(chunk_id, 0.0) + bonus
        return sorted(scores.items(), key=lambda item: -item[1])

    def _fuse(
        self, question: str, dense_ids: np.ndarray, dense_scores: np.ndarray, options: SearchOptions
    ) -> list[tuple[int, float]]:
        if options.fusion == "dense":
            return fuse(dense_ids, dense_scores, dense_ids[:0], dense_scores[:0], options)
        keyword_scores, keyword_ids = self.keyword_search(question, options.depth)
        return fuse(dense_ids, dense_scores, keyword_ids, keyword_scores, options)

    # -- rows of this snapshot --------------------------------------------------------------
    def keyword_search(self, question: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """BM25 scores and passage ids, best first (ids this snapshot lacks are dropped by search)."""
        return self.keyword.search(question, k)

    def spell(self, question: str) -> spelling.Spelling:
        """The question with the words no passage holds read as the passages spell them."""
        return spelling.correct(question, self.keyword)

    def idf(self, question: str) -> dict[str, float]:
        """The corpus rarity of the question's terms, for judging whether the passages answer it."""
        return self.keyword.idf(keyword.question_terms(question))

    def is_current(self) -> bool:
        """False once the store has moved on, or the keyword index has caught up with this snapshot."""
        if read_generation(self.root) != self.generation:
            return False
        if self.keyword.generation != self.generation:
            return keyword.read_generation(self.root) == self.keyword.generation
        return True

    def chunk(self, chunk_id: int) -> Chunk | None:
        with self._lock:
            row = self._db.execute(
                "SELECT c.article_id, c.ordinal, c.start, c.end, "
                "substr(a.text, c.start + 1, c.end - c.start), c.sentences, c.sentence_vectors "
                "FROM chunks c JOIN articles a ON a.id = c.article_id WHERE c.id = ?",
                (chunk_id,),
            ).fetchone()
        if row is None:
            return None
        spans = np.frombuffer(row[5], dtype=np.int32).reshape(-1, 2)
        vectors = np.frombuffer(row[6], dtype=np.float16).reshape(len(spans), self.encoder.dim)
        return Chunk(
            chunk_id,
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            tuple((int(a), int(b)) for a, b in spans),
            vectors.astype(np.float32),
        )

    def vector(self, chunk_id: int) -> np.ndarray:
        with self._lock:
            row = self._db.execute("SELECT vector FROM chunks WHERE id = ?", (chunk_id,)).fetchone()
        return np.frombuffer(row[0], dtype=np.float32)

    def article(self, article_id: str) -> Article:
        cached = self._articles.get(article_id)
        if cached is not None:
            return cached
        with self._lock:
            row = self._db.execute(
                f"SELECT {ARTICLE_COLUMNS} FROM articles WHERE id = ?", (article_id,)
            ).fetchone()
        article = article_from_row(row)
        self._articles[article_id] = article
        if len(self._articles) > 256:
            self._articles.popitem(last=False)
        return article

    def stats(self, guild: int | None = None) -> dict[str, object]:
        """What the store holds; with ``guild``, only what that guild can see."""
        hidden = [a for a, guilds in self.scoped.items() if guild is not None and guild not in guilds]
        passages = self.size
        with self._lock:
            if hidden:
                marks = ", ".join("?" * len(hidden))
                articles, updated = self._db.execute(
                    f"SELECT COUNT(*), MAX(updated) FROM articles WHERE id NOT IN ({marks})", hidden
                ).fetchone()
                passages -= self._db.execute(
                    f"SELECT COUNT(*) FROM chunks WHERE article_id IN ({marks})", hidden
                ).fetchone()[0]
            else:
                articles, updated = self._db.execute("SELECT COUNT(*), MAX(updated) FROM articles").fetchone()
        return {
            "articles": articles,
            "passages": passages,
            "updated": updated,
            "model": self.encoder.name,
            "generation": self.generation,
        }
