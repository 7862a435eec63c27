"""Compare the encoders newsbot can use: sentence-transformers on torch, ONNX fp32 and ONNX int8.

For each: passages/s on ~200-word passages (what ingest embeds), the latency of encoding one short
query (what every question pays), and how close the vectors are to torch's (cosine, mean and min).

    .venv/bin/python benchmarks/encoders.py [--passages 256] [--queries 200] [--threads N]

Passages are 200-word windows of the BBC articles in ../shared/data/bbc_news/articles when present
(their headlines serve as queries), else synthetic text. Numbers on a shared or busy machine vary by
10-30% between runs (each number is the best of --repeats runs): compare rows from one run, and rerun
before quoting a number.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make `embeddings` importable without installing
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from embeddings.encoder import Encoder, TorchEncoder  # noqa: E402
from embeddings.onnx_encoder import OnnxEncoder  # noqa: E402
from embeddings.onnx_model import X64_PRECISION_ENV, default_threads, needs_x64_precision  # noqa: E402

BBC = ROOT.parent / "shared" / "data" / "bbc_news" / "articles"
WINDOW = 200
SYNTHETIC_WORDS = (
    "government minister said market shares rose fell percent company report year police court "
    "election vote team match season film music award technology software phone internet bank "
    "interest rates inflation economy growth profits sales workers union strike health hospital "
    "school students climate energy oil prices europe china america london city council plans"
)


@dataclass
class Row:
    name: str
    load_s: float
    passages_per_s: float
    query_median_ms: float
    query_p99_ms: float
    passage_cos: np.ndarray
    query_cos: np.ndarray


def load_corpus(n_passages: int, n_queries: int) -> tuple[list[str], list[str], str]:
    """(passages, queries, where they came from): evenly spread over the BBC categories when present."""
    files = sorted(BBC.glob("*/*.txt")) if BBC.is_dir() else []
    if files:
        rng = random.Random(0)
        rng.shuffle(files)
        passages: list[str] = []
        queries: list[str] = []
        for path in files:
            title, _, body = path.read_text(encoding="utf-8", errors="replace").partition("\n")
            if len(queries) < n_queries and title.strip():
                queries.append(title.strip())
            words = body.split()
            # Whole windows only, so every passage is ~200 words like ingest's chunks.
            for start in range(0, len(words) - WINDOW + 1, WINDOW):
                if len(passages) < n_passages:
                    passages.append(" ".join(words[start : start + WINDOW]))
            if len(passages) >= n_passages and len(queries) >= n_queries:
                break
        return passages, queries, f"BBC news, {BBC}"
    return (*synthetic(n_passages, n_queries), "synthetic text (BBC articles not found)")


def synthetic(n_passages: int, n_queries: int) -> tuple[list[str], list[str]]:
    rng = random.Random(0)
    vocab = SYNTHETIC_WORDS.split()
    passages = [" ".join(rng.choices(vocab, k=WINDOW)) + "." for _ in range(n_passages)]
    queries = [
        "What did the " + " ".join(rng.choices(vocab, k=rng.randint(4, 10))) + "?" for _ in range(n_queries)
    ]
    return passages, queries


def measure(
    name: str,
    make: Callable[[], Encoder],
    passages: Sequence[str],
    queries: Sequence[str],
    reference: tuple[np.ndarray, np.ndarray] | None,
    batch_size: int,
    repeats: int,
) -> tuple[Row, tuple[np.ndarray, np.ndarray]]:
    """Best of ``repeats`` runs for each number: other processes on a shared machine only ever slow a
    run down, so the fastest run is the closest to what the encoder itself costs."""
    start = time.perf_counter()
    encoder = make()
    load_s = time.perf_counter() - start
    # Warm-up: first runs allocate buffers and (torch) pick kernels; ingest and the bot run warm.
    encoder.encode(list(passages[:batch_size]), batch_size=batch_size)
    for q in queries[:20]:
        encoder.encode([q])

    best_seconds = float("inf")
    best_latencies: list[float] = []
    passage_vectors = np.zeros(0)
    query_vectors: list[np.ndarray] = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        passage_vectors = encoder.encode(list(passages), batch_size=batch_size)
        best_seconds = min(best_seconds, time.perf_counter() - t0)
        latencies = []
        query_vectors = []
        for q in queries:
            t0 = time.perf_counter()
            query_vectors.append(encoder.encode([q])[0])
            latencies.append((time.perf_counter() - t0) * 1000)
        if not best_latencies or statistics.median(latencies) < statistics.median(best_latencies):
            best_latencies = latencies
    mine = (passage_vectors, np.stack(query_vectors))
    ref = reference or mine
    row = Row(
        name=name,
        load_s=load_s,
        passages_per_s=len(passages) / best_seconds,
        query_median_ms=statistics.median(best_latencies),
        query_p99_ms=float(np.percentile(best_latencies, 99)),
        passage_cos=(mine[0] * ref[0]).sum(axis=1),
        query_cos=(mine[1] * ref[1]).sum(axis=1),
    )
    return row, mine


def other_int8(threads: int) -> OnnxEncoder:
    before = os.environ.get(X64_PRECISION_ENV)
    os.environ[X64_PRECISION_ENV] = "0" if needs_x64_precision() else "1"
    try:
        return OnnxEncoder(quantized=True, threads=threads)
    finally:
        if before is None:
            del os.environ[X64_PRECISION_ENV]
        else:
            os.environ[X64_PRECISION_ENV] = before


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passages", type=int, default=256, help="passages to embed (default 256)")
    parser.add_argument("--queries", type=int, default=200, help="single queries to time (default 200)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="runs per encoder; the best is reported")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="fp32 ONNX export cache (default as newsbot)"
    )
    args = parser.parse_args(argv)

    passages, queries, source = load_corpus(args.passages, args.queries)
    import onnxruntime
    import torch

    threads = args.threads or default_threads()
    auto_precision = needs_x64_precision()
    print(f"text: {source}")
    print(
        f"{len(passages)} passages of {WINDOW} words, batch {args.batch_size}; {len(queries)} queries, "
        f"mean {statistics.mean(len(q.split()) for q in queries):.1f} words; best of {args.repeats} runs"
    )
    print(
        f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); onnxruntime "
        f"{onnxruntime.__version__} ({threads} threads, x64quantprecision={int(auto_precision)})"
    )

    candidates: list[tuple[str, Callable[[], Encoder]]] = [
        ("torch (sentence-transformers)", TorchEncoder),
        ("onnx fp32", lambda: OnnxEncoder(quantized=False, cache_dir=args.cache_dir, threads=threads)),
        (
            f"onnx int8 (shipped), x64quantprecision={int(auto_precision)}",
            lambda: OnnxEncoder(quantized=True, threads=threads),
        ),
        # The other int8 kernel choice than this CPU's default: on a VNNI CPU, the cost of the exact U8U8
        # kernels that CPUs without VNNI get; on those, what the faster, saturating U8S8 kernels would
        # do to the cosine. Either way the row tells whether the default choice is right for this CPU.
        (
            f"onnx int8, x64quantprecision={int(not auto_precision)}",
            lambda: other_int8(threads),
        ),
    ]
    rows: list[Row] = []
    reference: tuple[np.ndarray, np.ndarray] | None = None
    for name, make in candidates:
        row, vectors = measure(name, make, passages, queries, reference, args.batch_size, args.repeats)
        reference = reference or vectors
        rows.append(row)
        print(f"  measured {name} (loaded in {row.load_s:.1f} s)", file=sys.stderr, flush=True)

    print()
    print(
        "| encoder | passages/s | query median ms | query p99 ms "
        "| cosine to torch, passages mean / min | queries mean / min |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.name} | {r.passages_per_s:.1f} | {r.query_median_ms:.2f} | {r.query_p99_ms:.2f} "
            f"| {r.passage_cos.mean():.4f} / {r.passage_cos.min():.4f} "
            f"| {r.query_cos.mean():.4f} / {r.query_cos.min():.4f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
