"""Ingest and ask on a real corpus: throughput against the raw encoder, and answer latency, for the
default encoder and the one it replaced, in one run.

    .venv/bin/python benchmarks/ingest_ask.py [--corpus DIR] [--backend onnx-int8] [--encoders new old]

For each encoder: ingests the corpus (all but 10 articles) into a fresh store, encodes the very same
passages with the bare encoder (the limit ingest can approach), re-ingests with nothing changed, adds
the 10 held-out articles, times `ask` over the development questions, and times a fresh process from
its start to its first answer on that store. "new" is the settings' backend (by default the int8 file
shipped in models/minilm/, on onnxruntime alone); "old" is what newsbot ran before it shipped that
file: the same int8 model exported from the PyTorch weights at first use into the ONNX cache, checked
with the onnx package at each start (needs the torch extra; left out without it). Prints one table,
each figure beside its target.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
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
from embeddings.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
HELD_OUT = 10


LABELS = {
    "new": "int8 shipped in models/minilm/, onnxruntime only",
    "old": "int8 exported with torch at first use (before)",
}


def make_engine(which: str, settings: Settings) -> Engine:
    if which == "new":
        return Engine(settings)
    from embeddings.encoder import DEFAULT_MODEL, model_path
    from embeddings.onnx_encoder import OnnxEncoder

    # The weights' folder given as a path: exported and quantised into the ONNX cache on first use.
    return Engine(settings, OnnxEncoder(str(model_path(DEFAULT_MODEL)), quantized=True))


def first_answer(store: Path, which: str, backend: str | None, question: str) -> float:
    """Seconds from launching a fresh Python to its first answer on ``store`` (imports included)."""
    launched = time.time()
    command = [sys.executable, __file__, "--first-answer", str(store), "--encoders", which]
    command += ["--launched", str(launched), "--questions", question]
    out = subprocess.run(
        [*command, *(["--backend", backend] if backend else [])],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["ready_s"])


def measure(which: str, args: argparse.Namespace, files: list[Path], questions: list[str]) -> list[tuple]:
    work = Path(tempfile.mkdtemp(prefix="newsbot-bench-"))
    corpus = work / "corpus"
    corpus.mkdir()
    for n, path in enumerate(files[HELD_OUT:]):
        os.symlink(path, corpus / f"{n:05d}{path.suffix}")
    settings = load_settings(store=work / "store")
    if args.backend:
        settings = settings.replace(backend=args.backend)
    engine = make_engine(which, settings)
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

    latencies = []
    for question in questions:
        started = time.perf_counter()
        engine.ask(question)
        latencies.append((time.perf_counter() - started) * 1000)
    ready = [first_answer(settings.store, which, args.backend, questions[0]) for _ in range(3)]

    ingest_rate = report.passages / ingest_s
    raw_rate = len(texts) / raw_s
    print(
        f"{which}: {LABELS[which]}; corpus {args.corpus} ({articles} articles + {HELD_OUT} held out), "
        f"backend {settings.backend}, {os.cpu_count()} cores",
        file=sys.stderr,
    )
    tag = f" ({which}: {LABELS[which]})"
    return [
        (f"ingest articles/s{tag}", f"{articles / ingest_s:.1f}", ""),
        (f"ingest passages/s{tag}", f"{ingest_rate:.1f}", ">= 90% of raw encoder"),
        (f"raw encoder passages/s (same {len(texts)} passages){tag}", f"{raw_rate:.1f}", "the limit"),
        (f"ingest / raw encoder{tag}", f"{ingest_rate / raw_rate:.1%}", ">= 90%"),
        (f"re-ingest, nothing changed{tag}", f"{unchanged_s:.2f} s ({again.unchanged} unchanged)", "<= 2 s"),
        (
            f"add {HELD_OUT} new articles to the full index{tag}",
            f"{add10_s:.2f} s ({added.passages} passages)",
            "in proportion to 10, not a rebuild",
        ),
        (
            f"ask p50 / p99 over {len(latencies)} questions{tag}",
            f"{statistics.median(latencies):.1f} / {float(np.percentile(latencies, 99)):.1f} ms",
            "",
        ),
        (
            f"fresh process, start to first answer on this store (best / worst of 3){tag}",
            f"{min(ready):.2f} / {max(ready):.2f} s",
            "<= 0.5 s",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default=str(REPO.parent / "shared" / "data" / "bbc_news" / "articles"))
    parser.add_argument("--backend", help="torch | onnx | onnx-int8 for 'new' (default: the settings')")
    torch_extra = importlib.util.find_spec("torch") is not None
    parser.add_argument(
        "--encoders",
        nargs="+",
        choices=sorted(LABELS),
        default=["new", "old"] if torch_extra else ["new"],
        help="which to measure (default: both when the torch extra is installed)",
    )
    parser.add_argument(
        "--questions",
        nargs="*",
        default=[str(REPO / "tests/data/bbc_dev.jsonl"), str(REPO / "tests/data/offtopic.jsonl")],
    )
    parser.add_argument("--first-answer", help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first_answer:  # the child of first_answer(): --questions holds the one question
        settings = load_settings(store=Path(args.first_answer))
        if args.backend:
            settings = settings.replace(backend=args.backend)
        make_engine(args.encoders[0], settings).ask(args.questions[0])
        print(json.dumps({"ready_s": time.time() - args.launched}))
        return 0
    files, _ = discover_files([args.corpus])
    if not files:
        print(f"no articles under {args.corpus}", file=sys.stderr)
        return 2
    questions = [q.question for f in args.questions if Path(f).exists() for q in read_questions(Path(f))]
    rows = [row for which in args.encoders for row in measure(which, args, files, questions)]
    print("| measure | value | target |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
