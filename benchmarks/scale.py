"""The whole `ask` as the store grows: 10k, 100k and 1M passages.

    .venv/bin/python benchmarks/scale.py [--sizes 10000 100000 1000000] [--source STORE]

Each size is a real store on disk (built once under /tmp/newsbot-scale-N): copies of the BBC
articles of a source store under new ids, so the keyword index holds real text with real term
statistics; passage vectors are the real ones plus Gaussian noise, renormalised (said so in the
output), so neighbourhoods keep the shape of real text rather than of uniform random points;
sentence vectors are the real ones. Every size is then measured in a fresh process: time from
start to the first answer, `ask` p50/p99 over the development questions (embedding, keyword and
vector search, answer selection), resident memory, and recall@10 of the index `auto` chose
against exact search.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from embeddings.chunking import chunk_id
from embeddings.encoder import load_encoder
from embeddings.engine import Engine
from embeddings.evaluate import corpus_store, read_questions
from embeddings.index import choose_factory
from embeddings.ingest import Ingestor
from embeddings.records import Chunk
from embeddings.settings import load_settings
from embeddings.store import ARTICLE_COLUMNS, DB_NAME, Pending, Store, article_from_row, connect

REPO = Path(__file__).resolve().parent.parent
NOISE = 0.35
QUESTIONS = [REPO / "tests/data/bbc_dev.jsonl", REPO / "tests/data/offtopic.jsonl"]
# The limits, by store size.
TARGETS = {
    100_000: {"ask": "p50 <= 10 ms, p99 <= 25 ms", "ready": "<= 3 s"},
    1_000_000: {"ask": "p50 <= 20 ms", "recall": ">= 0.98", "memory": "<= 2 GB"},
}


def build(target: Path, source: Path, passages: int) -> None:
    """Copies of ``source``'s articles, with derived passage vectors, until ``passages`` passages."""
    settings = load_settings(store=target)
    encoder = load_encoder(settings.model, settings.backend)
    db = connect(source / DB_NAME, readonly=True)
    originals = [article_from_row(r) for r in db.execute(f"SELECT {ARTICLE_COLUMNS} FROM articles")]
    stored: dict[str, list[tuple]] = {}
    for row in db.execute(
        "SELECT article_id, ordinal, start, end, vector, sentences, sentence_vectors FROM chunks"
    ):
        stored.setdefault(row[0], []).append(row[1:])
    rng = np.random.default_rng(7)
    store = Store(target, model=encoder.name, dim=encoder.dim)
    with store.writer():
        made, copy = 0, 0
        while made < passages:
            batch: list[Pending] = []
            for original in originals:
                rows = sorted(stored.get(original.id, []))[: passages - made]
                if not rows:
                    continue
                article = replace(original, id=f"{original.id}#{copy}", source=f"{original.source}#{copy}")
                chunks, vectors, sentence_vectors = [], [], []
                for ordinal, start, end, vector, sentences, sentence_blob in rows:
                    spans = np.frombuffer(sentences, dtype=np.int32).reshape(-1, 2)
                    chunks.append(
                        Chunk(
                            chunk_id(article, ordinal),
                            article.id,
                            ordinal,
                            start,
                            end,
                            article.text[start:end],
                            tuple((int(a), int(b)) for a, b in spans),
                        )
                    )
                    vectors.append(np.frombuffer(vector, dtype=np.float32))
                    sentence_vectors.append(
                        np.frombuffer(sentence_blob, dtype=np.float16).reshape(len(spans), -1)
                    )
                real = np.stack(vectors)
                noisy = real + rng.normal(0, NOISE / np.sqrt(real.shape[1]), real.shape)
                noisy = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
                batch.append(
                    Pending(article, article.source, chunks, noisy, np.concatenate(sentence_vectors))
                )
                made += len(chunks)
                if made >= passages:
                    break
            store.write(batch)
            copy += 1
        # The FAISS index `auto` picks for this size, and the keyword index, built from what was stored.
        Ingestor(store, encoder, settings).finish()
    store.close()


def measure(store: Path, launched: float) -> dict[str, float]:
    """Run in a fresh process: start-up, ask latency, memory, recall of the index against exact."""
    engine = Engine(load_settings(store=store))
    questions = [q.question for path in QUESTIONS for q in read_questions(path)]
    engine.ask(questions[0])
    ready = time.time() - launched  # from the parent starting this process: imports included
    for question in questions[:20]:  # warm the caches a running bot would have warm
        engine.ask(question)
    latencies = []
    for question in questions:
        t = time.perf_counter()
        engine.ask(question)
        latencies.append((time.perf_counter() - t) * 1000)
    rss = _rss_mb()
    searcher = engine.searcher
    queries = engine.encoder.encode(questions)
    found = [searcher.dense.search(query, 10)[1] for query in queries]
    ids, vectors = _vectors(store)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    recall = np.mean([len(set(f.tolist()) & set(ids[e])) / 10 for f, e in zip(found, exact, strict=True)])
    return {
        "passages": searcher.size,
        "ready_s": ready,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "rss_mb": rss,
        "recall10": float(recall),
    }


def _vectors(store: Path) -> tuple[np.ndarray, np.ndarray]:
    db = connect(store / DB_NAME, readonly=True)
    rows = db.execute("SELECT id, vector FROM chunks").fetchall()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    return ids, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--source", help="a store of real articles (default: the BBC eval store)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args.launched)))
        return 0
    source = Path(args.source) if args.source else None
    if source is None:
        corpus = REPO.parent / "shared" / "data" / "bbc_news" / "bbc_news.jsonl"
        if not corpus.exists():
            print(f"no corpus at {corpus}: pass --source STORE", file=sys.stderr)
            return 2
        settings = load_settings()
        source = corpus_store([corpus], settings)
        Engine(settings.replace(store=source)).ingest([corpus], wait=600)
    print(
        f"stores: copies of the articles in {source} under new ids; passage vectors = real + Gaussian "
        f"noise {NOISE} (renormalised); real texts and sentence vectors; {os.cpu_count()} cores"
    )
    print("| measure | value | target |")
    print("|---|---|---|")
    for size in args.sizes:
        target = Path(f"/tmp/newsbot-scale-{size}")
        if not (target / DB_NAME).exists():
            started = time.perf_counter()
            build(target, source, size)
            print(f"(built {target} in {time.perf_counter() - started:.0f} s)", file=sys.stderr)
        out = subprocess.run(
            [sys.executable, __file__, "--measure", str(target), "--launched", str(time.time())],
            check=True,
            capture_output=True,
            text=True,
        )
        m = json.loads(out.stdout.strip().splitlines()[-1])
        n = int(m["passages"])
        disk = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        goal = TARGETS.get(size, {})
        rows = [
            (
                f"ask p50 / p99, {n:,} passages",
                f"{m['p50_ms']:.1f} / {m['p99_ms']:.1f} ms",
                goal.get("ask", ""),
            ),
            (
                f"index at {n:,} (`auto`), recall@10 vs exact",
                f"{choose_factory(n)}: {m['recall10']:.3f}",
                goal.get("recall", ""),
            ),
            (f"start to first answer, {n:,}", f"{m['ready_s']:.2f} s", goal.get("ready", "")),
            (
                f"resident memory serving {n:,}",
                f"{m['rss_mb']:,.0f} MB ({m['rss_mb'] * 1024 * 1024 / n:,.0f} B/passage)",
                goal.get("memory", ""),
            ),
            (f"disk, {n:,}", f"{disk / 2**30:.2f} GB ({disk / n / 1024:.1f} KB/passage)", ""),
        ]
        for row in rows:
            print(f"| {' | '.join(row)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
