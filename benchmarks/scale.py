"""How the vector index behaves as the store grows: 10k, 100k and 1M passages.

    .venv/bin/python benchmarks/scale.py [--store STORE] [--sizes 10000 100000 1000000]

Vectors past the store's own are derived from its real article embeddings: each is a real passage
vector plus Gaussian noise, renormalised (said so in the output), so neighbourhoods keep the shape of
real text rather than of uniform random points. For each size: the index `auto` picks, its build
time, memory per passage, single-query search latency with one OpenMP thread, and recall@10 of that
index against exact search on 200 held-out queries.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from embeddings import index as vector_index
from embeddings.store import DB_NAME, connect, read_vectors

NOISE = 0.35


def derived(real: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    base = real[rng.integers(0, len(real), count)]
    noisy = base + rng.normal(0, NOISE / np.sqrt(real.shape[1]), base.shape).astype(np.float32)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--store", default="/tmp/newsbot-eval/13d3c418dbf90b4b", help="a store with real vectors"
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    if not (Path(args.store) / DB_NAME).exists():
        print(f"no store at {args.store}: ingest a corpus first", file=sys.stderr)
        return 2
    _, real = read_vectors(connect(Path(args.store) / DB_NAME, readonly=True), 384)
    rng = np.random.default_rng(7)
    faiss.omp_set_num_threads(1)
    print(
        f"{len(real)} real passage vectors from {args.store}; larger sizes add derived vectors "
        f"(real + Gaussian noise {NOISE}, renormalised)"
    )
    print(
        "| passages | index | build s | bytes/passage | search p50 ms | search p99 ms | recall@10 vs exact |"
    )
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        vectors = np.concatenate([real[: min(size, len(real))], derived(real, max(size - len(real), 0), rng)])
        ids = np.arange(size, dtype=np.int64)
        queries = derived(real, args.queries, rng)
        started = time.perf_counter()
        faiss.omp_set_num_threads(2)  # building may use both cores; searching is timed on one
        index = vector_index.build_index(ids, vectors, 384)
        faiss.omp_set_num_threads(1)
        build = time.perf_counter() - started
        size_bytes = faiss.serialize_index(index).nbytes
        latencies = []
        found = []
        for query in queries:
            started = time.perf_counter()
            _, got = vector_index.search(index, query, 10)
            latencies.append((time.perf_counter() - started) * 1000)
            found.append(got)
        exact = faiss.IndexFlatIP(384)
        exact.add(vectors)
        _, truth = exact.search(queries, 10)
        recall = np.mean(
            [len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)]
        )
        print(
            f"| {size:,} | {vector_index.choose_factory(size)} | {build:.1f} | {size_bytes / size:.0f} | "
            f"{np.percentile(latencies, 50):.2f} | {np.percentile(latencies, 99):.2f} | {recall:.3f} |"
        )
        del index, exact, vectors
    return 0


if __name__ == "__main__":
    sys.exit(main())
