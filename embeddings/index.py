"""The FAISS side of the store: built from SQLite's vectors, saved per generation, memory-mapped on load."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
from pathlib import Path

import faiss
import numpy as np

from embeddings.store import read_index_checksums, read_vectors, record_index_checksum, removed_since

log = logging.getLogger(__name__)

# Exact search costs ~3 ms a query at 50k passages on one core and grows with the store; above this an
# IVF index answers in about a millisecond with recall@10 of 0.99 against exact (benchmarks/scale.py).
EXACT_LIMIT = 50_000


def choose_factory(count: int, factory: str = "auto") -> str:
    if factory != "auto":
        return factory
    if count <= EXACT_LIMIT:
        return "IDMap2,Flat"
    # Full vectors in the lists: SQ8 codes saved memory but capped recall@10 at 0.956 at 1M passages.
    nlist = int(4 * np.sqrt(count))
    return f"IVF{nlist},Flat"


def outgrown(index: faiss.Index, passages: int, factory: str = "auto") -> bool:
    """Has the store grown (or shrunk) out of the kind of index `auto` built for it? Exact search past
    the limit, or an IVF index whose list count is off by more than 2x, is rebuilt by the next ingest."""
    if factory != "auto":
        return False
    want = choose_factory(passages)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return want.startswith("IVF")
    if not want.startswith("IVF"):
        return passages < EXACT_LIMIT // 2  # hysteresis: no flapping around the limit
    nlist = int(want[3 : want.index(",")])
    return not ivf.nlist / 2 <= nlist <= ivf.nlist * 2


def build_index(ids: np.ndarray, vectors: np.ndarray, dim: int, factory: str = "auto") -> faiss.Index:
    """An inner-product index (vectors are unit length) that maps FAISS ids to passage ids."""
    spec = choose_factory(len(ids), factory)
    index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(vectors)
    if len(ids):
        index.add_with_ids(vectors, ids)
    tune(index)
    return index


def tune(index: faiss.Index, nprobe: int = 128) -> None:
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = nprobe


def index_file(root: Path, generation: int) -> Path:
    return root / f"vectors-{generation}.faiss"


def saved_generations(root: Path) -> list[int]:
    """Generations with a saved index file, newest first."""
    found = []
    for path in root.glob("vectors-*.faiss"):
        with contextlib.suppress(ValueError):
            found.append(int(path.stem.split("-", 1)[1]))
    return sorted(found, reverse=True)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def save_index(index: faiss.Index, root: Path, generation: int, db: sqlite3.Connection) -> Path:
    """Write atomically with its checksum recorded in ``db`` first, then drop all but this and the
    previous file (a reader that opened an older snapshot a moment ago may still be looking for it)."""
    path = index_file(root, generation)
    tmp = path.with_suffix(".tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    record_index_checksum(db, generation, tmp.stat().st_size, file_sha256(tmp))
    os.replace(tmp, path)
    for old in saved_generations(root)[2:]:
        index_file(root, old).unlink(missing_ok=True)
    return path


# Files found intact, by (path, inode, size, mtime): saved files never change in place, so each is
# hashed once per process, not at every snapshot the bot opens.
_verified: set[tuple[str, int, int, int]] = set()
_verified_lock = threading.Lock()


def verify_index_file(root: Path, generation: int) -> str | None:
    """Why the saved file of this generation cannot be trusted, or None when it matches its checksum
    (or predates checksums)."""
    path = index_file(root, generation)
    expected = read_index_checksums(root).get(generation)
    if expected is None:
        return None
    size, digest = expected
    stat = path.stat()
    key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _verified_lock:
        if key in _verified:
            return None
    if stat.st_size != size:
        return f"{stat.st_size} bytes where {size} were written"
    if file_sha256(path) != digest:
        return "its checksum does not match the one recorded when it was written"
    with _verified_lock:
        _verified.add(key)
    return None


def load_index(root: Path, generation: int, mmap: bool = True) -> faiss.Index | None:
    """The saved index of exactly this generation, or None when it is missing or damaged; a mapped
    index is read-only but loads at once."""
    path = index_file(root, generation)
    try:
        problem = verify_index_file(root, generation)
    except FileNotFoundError:
        return None
    if problem is not None:
        log.warning("vector index %s is damaged (%s): rebuilding it from the store", path, problem)
        return None
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        index = faiss.read_index(str(path), flags)
    except RuntimeError:
        log.warning("vector index %s cannot be read: rebuilding it from the store", path)
        return None
    tune(index)
    return index


def load_base(root: Path, generation: int, mmap: bool = True) -> tuple[faiss.Index, int] | None:
    """The newest intact saved index of a generation up to ``generation``, and its generation."""
    for saved in saved_generations(root):
        if saved <= generation:
            index = load_index(root, saved, mmap)
            if index is not None:
                return index, saved
    return None


def apply_changes(
    index: faiss.Index, added_ids: np.ndarray, added: np.ndarray, removed_ids: np.ndarray
) -> None:
    if len(removed_ids):
        index.remove_ids(np.asarray(removed_ids, dtype=np.int64))  # type: ignore[arg-type]
    if len(added_ids):
        index.add_with_ids(np.asarray(added, dtype=np.float32), np.asarray(added_ids, dtype=np.int64))


def search(index: faiss.Index, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores and passage ids of the ``k`` nearest passages; ids of -1 mark empty slots."""
    if index.ntotal == 0 or k <= 0:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    scores, ids = index.search(query.reshape(1, -1).astype(np.float32), min(k, index.ntotal))
    keep = ids[0] >= 0
    return scores[0][keep], ids[0][keep]


class VectorIndex:
    """A saved base index plus the passages added and removed since it was saved.

    Small updates then cost no FAISS file writes: the changes since the base are read from SQLite
    (by generation) when a snapshot opens, kept in a small exact index beside the memory-mapped base,
    and removed ids are filtered out of the base's results. An ingest folds them into a new base
    once they pass a share of the store (``needs_compaction``).
    """

    def __init__(
        self,
        base: faiss.Index,
        base_generation: int | None,
        added_ids: np.ndarray,
        added: np.ndarray,
        removed_ids: np.ndarray,
    ) -> None:
        self.base = base
        self.base_generation = base_generation  # None: built from SQLite just now, not saved yet
        self.added = faiss.IndexIDMap2(faiss.IndexFlatIP(base.d))
        if len(added_ids):
            self.added.add_with_ids(
                np.asarray(added, dtype=np.float32), np.asarray(added_ids, dtype=np.int64)
            )
        # A re-added id's base copy is stale too: hide it, the delta holds the current one.
        self.hidden = np.union1d(removed_ids, added_ids).astype(np.int64)
        self.removed = len(removed_ids)

    @property
    def changes(self) -> int:
        return int(self.added.ntotal) + self.removed

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and passage ids of the ``k`` nearest passages, best first."""
        scores, ids = search(self.base, query, k + len(self.hidden))
        if len(self.hidden):
            keep = ~np.isin(ids, self.hidden)
            scores, ids = scores[keep], ids[keep]
        if self.added.ntotal:
            more_scores, more_ids = search(self.added, query, k)
            scores, ids = np.concatenate([scores, more_scores]), np.concatenate([ids, more_ids])
            order = np.argsort(-scores, kind="stable")
            scores, ids = scores[order], ids[order]
        return scores[:k], ids[:k]

    def compacted(self, root: Path) -> faiss.Index:
        """A private, writable copy of the saved base with the changes since folded in."""
        assert self.base_generation is not None, "only a saved base has changes since"
        copy = load_index(root, self.base_generation, mmap=False)
        assert copy is not None, "the base was loaded a moment ago"
        added_ids = faiss.vector_to_array(self.added.id_map)
        added = faiss.downcast_index(self.added.index).reconstruct_n(0, self.added.ntotal)
        apply_changes(copy, added_ids, added, self.hidden)
        return copy

    def needs_compaction(self, passages: int) -> bool:
        """Fold the changes into a new base when they pass 10% of the store (at least 256, at most
        20,000): the delta's exact search and the base's over-fetch stay small."""
        return self.changes > max(256, min(20_000, passages // 10))


def open_vectors(
    root: Path, db: sqlite3.Connection, generation: int, dim: int, factory: str = "auto"
) -> VectorIndex:
    """The vector index of the store at ``generation``, as ``db``'s transaction sees it: the newest
    saved file at or below that generation plus the changes since, or, when no file was saved yet (an
    ingest killed before its first save), one built from every stored vector."""
    loaded = load_base(root, generation)
    if loaded is None:
        ids, vectors = read_vectors(db, dim)
        base = build_index(ids, vectors, dim, factory)
        return VectorIndex(base, None, ids[:0], vectors[:0], ids[:0])
    base, saved = loaded
    return VectorIndex(base, saved, *read_vectors(db, dim, since=saved), removed_since(db, saved))
