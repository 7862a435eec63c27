"""Tune hybrid retrieval: fusion method and weights, against dense only and keyword only.

For every answerable development question the dense and BM25 candidate lists are computed once;
each fusion setting is then scored offline (recall@5 and MRR@10, with the per-article cap applied),
per set and pooled. The shipped default must beat both single sides on every set.

    .venv/bin/python benchmarks/tune_fusion.py
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from embeddings.engine import Engine, search_options
from embeddings.evaluate import context_articles, corpus_store, gold_article_ids, normalise, read_questions
from embeddings.retrieval import Searcher, SearchOptions, fuse
from embeddings.settings import load_settings

REPO = Path(__file__).resolve().parent.parent

Candidates = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[int, tuple[str, bool]]]


def collect(engine: Engine, qa: Path, depth: int) -> list[Candidates]:
    searcher: Searcher = engine.searcher
    questions = [q for q in read_questions(qa) if q.answerable]
    queries = engine.encoder.encode([q.question for q in questions])
    out = []
    for question, query in zip(questions, queries, strict=True):
        dense_scores, dense_ids = searcher.dense.search(query, depth)
        keyword_scores, keyword_ids = searcher.keyword_search(question.question, depth)
        gold = gold_article_ids(engine, question)
        answers = [normalise(a) for a in question.answers]
        info: dict[int, tuple[str, bool]] = {}
        for chunk_id in set(dense_ids.tolist()) | set(keyword_ids.tolist()):
            chunk = searcher.chunk(chunk_id)
            if chunk is not None:
                text = normalise(chunk.text)
                info[chunk_id] = (
                    chunk.article_id,
                    chunk.article_id in gold or any(a in text for a in answers),
                )
        out.append((dense_ids, dense_scores, keyword_ids, keyword_scores, info))
    return out


def measure(data: list[Candidates], options: SearchOptions) -> tuple[float, float]:
    r5 = mrr = 0.0
    for c in data:
        info = c[4]
        ranked, per_article = [], {}
        for chunk_id, _score in fuse(c[0], c[1], c[2], c[3], options):
            if chunk_id not in info:
                continue
            article, _ = info[chunk_id]
            if per_article.get(article, 0) >= options.per_article:
                continue
            per_article[article] = per_article.get(article, 0) + 1
            ranked.append(info[chunk_id][1])
            if len(ranked) == 10:
                break
        first = next((i + 1 for i, relevant in enumerate(ranked) if relevant), None)
        r5 += first is not None and first <= 5
        mrr += 1 / first if first else 0
    return r5 / len(data), mrr / len(data)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", default=str(REPO.parent / "shared"))
    args = parser.parse_args()
    data_dir = Path(args.shared) / "data"
    settings = load_settings()
    sets: dict[str, list[Candidates]] = {}
    squad_files = [
        data_dir / "squad2_dev5" / f"squad2_dev5_{k}.jsonl" for k in ("answerable", "unanswerable")
    ]
    engine = Engine(settings.replace(store=corpus_store(squad_files, settings)))
    engine.ingest_items([a for f in squad_files for a in context_articles(f)], wait=600)
    sets["squad"] = collect(engine, squad_files[0], 50)
    corpus = str(data_dir / "bbc_news" / "bbc_news.jsonl")
    engine = Engine(settings.replace(store=corpus_store([corpus], settings)), engine.encoder)
    engine.ingest([corpus], wait=600)
    sets["bbc"] = collect(engine, REPO / "tests" / "data" / "bbc_dev.jsonl", 50)

    base = search_options(settings)
    configs = [replace(base, fusion="dense"), replace(base, fusion="keyword")]
    for k in (10, 30, 60):
        for dw, kw in ((1, 1), (1, 1.5), (1, 2), (1.5, 1), (1, 0.7)):
            configs.append(replace(base, fusion="rrf", rrf_k=k, dense_weight=dw, keyword_weight=kw))
    for dw, kw in ((1, 1), (1, 0.5), (1, 0.7), (1, 1.5), (1, 2), (0.7, 1), (0.5, 1)):
        configs.append(replace(base, fusion="weighted", dense_weight=dw, keyword_weight=kw))
    # Fewer passages per article leave room for other stories in the top five.
    configs += [replace(c, per_article=1) for c in configs if c.fusion in ("dense", "keyword")]
    configs.append(replace(base, fusion="rrf", rrf_k=10, dense_weight=1, keyword_weight=2, per_article=1))
    print(
        "| fusion | rrf_k | dense w | keyword w | per article | "
        + " | ".join(f"{s} R@5 | {s} MRR@10" for s in sets)
        + " | mean R@5 | min R@5 |"
    )
    print("|---" * (7 + 2 * len(sets)) + "|")
    for options in configs:
        cells, r5s = [], []
        for data in sets.values():
            r5, mrr = measure(data, options)
            cells.append(f"{r5:.3f} | {mrr:.3f}")
            r5s.append(r5)
        print(
            f"| {options.fusion} | {options.rrf_k} | {options.dense_weight} | {options.keyword_weight} | "
            f"{options.per_article} | " + " | ".join(cells) + f" | {np.mean(r5s):.3f} | {min(r5s):.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
