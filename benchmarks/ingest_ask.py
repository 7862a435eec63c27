"""Ingest and ask on a real corpus: throughput against the raw encoder, and answer latency.

    .venv/bin/python benchmarks/ingest_ask.py [--corpus DIR] [--backend onnx-int8]

Ingests the corpus (all but 10 articles) into a fresh store, encodes the very same passages with the
bare encoder (the limit ingest can approach), re-ingests with nothing changed, adds the 10 held-out
articles, then times `ask` over the development questions. Prints one table, each figure beside its target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from embeddings.articles import discover_files, load_paths
from embeddings.chunking import chunk_article, embed_title, embedding_text, load_tokenizer
from embeddings.engine import Engine
from embeddings.evaluate import read_questions
from embeddings.records import Article
from embeddings.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
HELD_OUT = 10


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default=str(REPO.parent / "shared" / "data" / "bbc_news" / "articles"))
    parser.add_argument("--backend", help="torch | onnx | onnx-int8 (default: the settings')")
    parser.add_argument(
        "--questions",
        nargs="*",
        default=[str(REPO / "tests/data/bbc_dev.jsonl"), str(REPO / "tests/data/offtopic.jsonl")],
    )
    args = parser.parse_args()
    files, _ = discover_files([args.corpus])
    if not files:
        print(f"no articles under {args.corpus}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="newsbot-bench-"))
    corpus = work / "corpus"
    corpus.mkdir()
    for n, path in enumerate(files[HELD_OUT:]):
        os.symlink(path, corpus / f"{n:05d}{path.suffix}")
    settings = load_settings(store=work / "store")
    if args.backend:
        settings = settings.replace(backend=args.backend)
    engine = Engine(settings)
    engine.encoder.encode(["warm up"])

    started = time.perf_counter()
    report = engine.ingest([corpus])
    ingest_s = time.perf_counter() - started
    articles = report.added + report.duplicates

    # The raw encoder on exactly the passages ingest embedded.
    tokenizer = load_tokenizer(engine.encoder.tokenizer_file)
    texts: list[str] = []
    for item in load_paths([corpus]):
        if isinstance(item, Article):
            title, _ = embed_title(tokenizer, item.title)
            chunks = chunk_article(
                item,
                tokenizer,
                max_tokens=engine.encoder.max_tokens,
                chunk_tokens=settings.chunk_tokens,
                overlap_sentences=settings.overlap_sentences,
            )
            texts.extend(embedding_text(title, c.text) for c in chunks)
    started = time.perf_counter()
    engine.encoder.encode(texts, batch_size=settings.batch_size)
    raw_s = time.perf_counter() - started

    started = time.perf_counter()
    again = engine.ingest([corpus])
    unchanged_s = time.perf_counter() - started
    for n, path in enumerate(files[:HELD_OUT]):
        os.symlink(path, corpus / f"new{n:02d}{path.suffix}")
    started = time.perf_counter()
    added = engine.ingest([corpus])
    add10_s = time.perf_counter() - started

    questions = [q.question for f in args.questions if Path(f).exists() for q in read_questions(Path(f))]
    latencies = []
    for question in questions:
        started = time.perf_counter()
        engine.ask(question)
        latencies.append((time.perf_counter() - started) * 1000)

    ingest_rate = report.passages / ingest_s
    raw_rate = len(texts) / raw_s
    print(
        f"corpus: {args.corpus} ({articles} articles + {HELD_OUT} held out), backend {settings.backend}, "
        f"{os.cpu_count()} cores"
    )
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| ingest articles/s | {articles / ingest_s:.1f} | |")
    print(f"| ingest passages/s | {ingest_rate:.1f} | >= 90% of raw encoder |")
    print(f"| raw encoder passages/s (same {len(texts)} passages) | {raw_rate:.1f} | the limit |")
    print(f"| ingest / raw encoder | {ingest_rate / raw_rate:.1%} | >= 90% |")
    print(f"| re-ingest, nothing changed | {unchanged_s:.2f} s ({again.unchanged} unchanged) | <= 2 s |")
    print(
        f"| add {HELD_OUT} new articles to the full index | {add10_s:.2f} s ({added.passages} passages) | "
        "in proportion to 10, not a rebuild |"
    )
    print(
        f"| ask p50 / p99 over {len(latencies)} questions | {statistics.median(latencies):.1f} / "
        f"{float(np.percentile(latencies, 99)):.1f} ms | |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
