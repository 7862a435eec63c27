"""The FAISS side of the store: built from SQLite's vectors, saved per generation, memory-mapped on load."""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

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


def outgrown(index: faiss.Index, factory: str = "auto") -> bool:
    """Has the store grown (or shrunk) out of the kind of index `auto` built for it? Exact search past
    the limit, or an IVF index whose list count is off by more than 2x, is rebuilt by the next ingest."""
    if factory != "auto":
        return False
    want = choose_factory(int(index.ntotal))
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return want.startswith("IVF")
    if not want.startswith("IVF"):
        return int(index.ntotal) < EXACT_LIMIT // 2  # hysteresis: no flapping around the limit
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


def save_index(index: faiss.Index, root: Path, generation: int) -> Path:
    """Write atomically, then drop files of older generations."""
    path = index_file(root, generation)
    tmp = path.with_suffix(".tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    for old in root.glob("vectors-*.faiss"):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def load_index(root: Path, generation: int, mmap: bool = True) -> faiss.Index | None:
    """The saved index of this generation, or None; a mapped index is read-only but loads at once."""
    path = index_file(root, generation)
    if not path.exists():
        return None
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        index = faiss.read_index(str(path), flags)
    except RuntimeError:
        return None
    tune(index)
    return index


def apply_changes(
    index: faiss.Index, added_ids: np.ndarray, added: np.ndarray, removed_ids: np.ndarray
) -> None:
    if len(removed_ids):
        index.remove_ids(np.asarray(removed_ids, dtype=np.int64))  # type: ignore[arg-type]
    if len(added_ids):
        index.add_with_ids(np.asarray(added, dtype=np.float32), np.asarray(added_ids, dtype=np.int64))


def search(index: faiss.Index, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores and passage ids of the ``k`` nearest passages; ids of -1 mark empty slots."""
    if index.ntotal == 0:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    scores, ids = index.search(query.reshape(1, -1).astype(np.float32), min(k, index.ntotal))
    keep = ids[0] >= 0
    return scores[0][keep], ids[0][keep]
