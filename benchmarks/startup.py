"""Start-up on a large store: from a cold process to the first answer.

    .venv/bin/python benchmarks/startup.py [--passages 100000] [--backend onnx-int8]

Builds (once, under /tmp) a store of PASSAGES passages: real BBC article texts re-used under new ids
with vectors derived from their real embeddings (said so in the output), then runs
`newsbot ask` in a fresh process several times and reports the wall time, and the part of it spent
opening the store (FAISS memory-mapped, BM25 memory-mapped, SQLite).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from embeddings.articles import load_paths, make_article
from embeddings.chunking import chunk_article, load_tokenizer
from embeddings.encoder import load_encoder, model_path
from embeddings.ingest import Ingestor
from embeddings.records import Article
from embeddings.settings import load_settings
from embeddings.store import Pending, Store, read_generation

REPO = Path(__file__).resolve().parent.parent


def build(store_dir: Path, corpus: Path, passages: int) -> None:
    settings = load_settings(store=store_dir)
    encoder = load_encoder(settings.model, "onnx-int8")
    tokenizer = load_tokenizer(model_path(settings.model))
    originals = [a for a in load_paths([corpus]) if isinstance(a, Article)]
    rng = np.random.default_rng(3)
    store = Store(store_dir, model=encoder.name, dim=encoder.dim)
    with store.writer():
        ingestor = Ingestor(store, encoder, settings)
        made, copy = 0, 0
        real_cache: dict[str, np.ndarray] = {}
        while made < passages:
            batch = []
            for original in originals:
                article = make_article(
                    id=f"{original.id}#copy{copy}",
                    title=original.title,
                    text=original.text,
                    source=f"{original.source}#copy{copy}",
                )
                chunks = chunk_article(article, tokenizer, chunk_tokens=settings.chunk_tokens)
                if original.id not in real_cache:
                    real_cache[original.id] = encoder.encode([c.text for c in chunks])
                vectors = real_cache[original.id] + rng.normal(0, 0.02, real_cache[original.id].shape)
                vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
                batch.append(Pending(article, article.source, chunks, vectors))
                made += len(chunks)
                if made >= passages:
                    break
            store.write(batch)
            copy += 1
        ingestor.finish()
    store.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--corpus", default=str(REPO.parent / "shared" / "data" / "bbc_news" / "articles"))
    parser.add_argument("--backend", default="onnx-int8")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    store_dir = Path(f"/tmp/newsbot-startup-{args.passages}")
    if read_generation(store_dir) == 0:
        started = time.perf_counter()
        build(store_dir, Path(args.corpus), args.passages)
        print(
            f"built {store_dir} in {time.perf_counter() - started:.0f} s "
            "(real BBC texts re-used under new ids; vectors = their real embeddings + small noise)"
        )
    env = {
        **os.environ,
        "NEWSBOT_STORE": str(store_dir),
        "NEWSBOT_BACKEND": args.backend,
        "HF_HUB_OFFLINE": "1",
    }
    command = [sys.executable, "-m", "bot.cli", "ask", "Who bought the football club?"]
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    probe = (
        "import time, sys; t=time.perf_counter(); from embeddings.engine import Engine; "
        "from embeddings.settings import load_settings; e=Engine(load_settings()); e.encoder.encode(['x']); "
        "t1=time.perf_counter(); e.searcher; t2=time.perf_counter(); e.ask('Who bought the club?'); "
        "print(f'{t1-t:.2f} {t2-t1:.2f} {time.perf_counter()-t2:.3f}')"
    )
    parts = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True)
    imports_model, open_store, first_answer = parts.stdout.split()
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| passages in the store | {args.passages:,} | |")
    print(
        f"| `newsbot ask` in a fresh process, median of {args.runs} | {statistics.median(times):.2f} s | "
        "bot answers within 3 s of start |"
    )
    print(f"| of which imports + model load | {imports_model} s | |")
    print(f"| of which opening the store (FAISS + BM25 mapped, SQLite) | {open_store} s | |")
    print(f"| of which the first answer | {first_answer} s | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
