"""`ask` latency on the BBC store with the reader on and off, and how much the reader reads.

    .venv/bin/python benchmarks/reader_latency.py [--shared ../shared] [--sentences 0 6] [--stop 4 inf]
        [--hopeless 6 2] [--repeat 2]

Uses the store `newsbot eval ... --corpus ../shared/data/bbc_news/bbc_news.jsonl` builds (built here
first if missing), and asks every BBC dev and off-topic question once to warm up, then times each.
Prints p50/p99 per setting (sentences to read; ``reader_stop``: inf reads them all;
``hopeless_sentences``: how many it reads when even a sure reader would refuse), the sentences and
word pieces the reader reads per question, and the targets.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embeddings.engine import Engine
from embeddings.evaluate import corpus_store, read_questions
from embeddings.reader import Candidate, Reading
from embeddings.settings import load_settings

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", default=str(REPO.parent / "shared"))
    parser.add_argument("--sentences", type=int, nargs="*", default=[0, 4, 6, 8, 12])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--stop",
        type=float,
        nargs="*",
        default=[4.0, float("inf")],
        help="reader_stop values (inf: read every sentence)",
    )
    parser.add_argument(
        "--hopeless",
        type=int,
        nargs="*",
        help="hopeless_sentences values: read this many when even a sure reader would refuse "
        "(default: the settings')",
    )
    args = parser.parse_args()
    corpus = Path(args.shared) / "data" / "bbc_news" / "bbc_news.jsonl"
    if not corpus.exists():
        print(f"no BBC corpus at {corpus}", file=sys.stderr)
        return 2
    settings = load_settings()
    settings = settings.replace(store=corpus_store([str(corpus)], settings))
    engine = Engine(settings)
    if not engine.has_store():
        engine.ingest([str(corpus)], wait=600)
    questions = [
        q.question
        for name in ("bbc_dev.jsonl", "offtopic.jsonl")
        for q in read_questions(REPO / "tests" / "data" / name)
    ]

    # Count what the reader reads per question: wrap its model call (a question may make several).
    engine.settings = settings.replace(reader=True)
    reader = engine.reader
    assert reader is not None
    read_now = [0, 0]  # sentences, word pieces of the question being asked
    inner_read = reader.read

    def counting_read(question: str, candidates: Sequence[Candidate]) -> Reading:
        reading = inner_read(question, candidates)
        read_now[0] += len(candidates)
        read_now[1] += reading.tokens
        return reading

    reader.read = counting_read  # type: ignore[method-assign]

    print(
        "| reader sentences | stops when sure (reader_stop) | questions | ask p50 ms | ask p99 ms "
        "| when hopeless | sentences read (mean) | word pieces (mean) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    runs = [
        (n, stop, hopeless)
        for n in args.sentences
        for stop in (args.stop if n else [float("inf")])
        for hopeless in ((args.hopeless or [settings.hopeless_sentences]) if n else [0])
    ]
    for n, stop, hopeless in runs:
        engine.settings = settings.replace(
            reader=n > 0, reader_sentences=n, reader_stop=stop, hopeless_sentences=hopeless
        )
        for q in questions[:20]:
            engine.ask(q)
        latencies, counts, tokens = [], [], []
        for _ in range(args.repeat):
            for q in questions:
                read_now[:] = [0, 0]
                started = time.perf_counter()
                engine.ask(q)
                latencies.append((time.perf_counter() - started) * 1000)
                counts.append(read_now[0])
                tokens.append(read_now[1])
        print(
            f"| {n or 'off'} | {stop if n else '-'} | {len(questions)} "
            f"| {np.percentile(latencies, 50):.1f} | {np.percentile(latencies, 99):.1f} "
            f"| {min(hopeless, n) if n else '-'} | {np.mean(counts):.1f} | {np.mean(tokens):.0f} |"
        )
    print("targets: ask p50 <= 40 ms, p99 <= 100 ms with the reader on (2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
