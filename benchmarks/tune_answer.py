"""Tune answer-sentence selection: which features help, and their weights.

For every answerable question of the development sets, the sentences of the leading passages are
scored with embeddings.answer's features; a sentence is right when it holds a gold answer. Prints
the hit rate of cosine alone, of each feature added to it, and of the best weights on a grid, per set
and their mean (what is optimised: each set counts the same, so neither the larger SQuAD set nor
the BBC set alone drives the weights).

    .venv/bin/python benchmarks/tune_answer.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from embeddings.answer import FEATURES, sentence_features
from embeddings.engine import Engine, search_options
from embeddings.evaluate import context_articles, corpus_store, normalise, read_questions
from embeddings.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
GRID = {
    "keywords": (0.3, 0.6, 0.9, 1.2, 1.6),
    "passage_rank": (0.0, 0.03, 0.1),
    "answer_type": (0.0, 0.1, 0.2, 0.3, 0.5, 0.8),
    "passage_cosine": (0.0, 0.2, 0.5),
    "context_keywords": (0.0, 0.2, 0.4, 0.8),
}


def collect(engine: Engine, qa_files: list[Path], candidates: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per answerable question: its candidates' feature rows and which of them hold an answer."""
    questions = [q for f in qa_files for q in read_questions(f) if q.answerable]
    queries = engine.encoder.encode([q.question for q in questions])
    options = search_options(engine.settings)
    out = []
    for question, query in zip(questions, queries, strict=True):
        hits = engine.searcher.search(question.question, options, query)
        spans, features = sentence_features(question.question, query, hits, candidates)
        answers = [normalise(a) for a in question.answers]
        labels = np.array(
            [any(a in normalise(h.chunk.text[s:e]) for a in answers) for h, s, e in spans], dtype=bool
        )
        out.append((features, labels))
    return out


def hit_rate(data: list[tuple[np.ndarray, np.ndarray]], weights: np.ndarray) -> float:
    hits = 0
    for features, labels in data:
        if len(labels):
            hits += bool(labels[int(np.argmax(features @ weights))])
    return hits / max(len(data), 1)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", default=str(REPO.parent / "shared"))
    parser.add_argument("--candidates", type=int, default=3)
    args = parser.parse_args()
    data_dir = Path(args.shared) / "data"
    if not data_dir.is_dir():
        print(f"no development data at {data_dir}", file=sys.stderr)
        return 2
    settings = load_settings()
    sets: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    squad = data_dir / "squad2_dev5" / "squad2_dev5_answerable.jsonl"
    squad_files = [squad, data_dir / "squad2_dev5" / "squad2_dev5_unanswerable.jsonl"]
    engine = Engine(settings.replace(store=corpus_store(squad_files, settings)))
    engine.ingest_items([a for f in squad_files for a in context_articles(f)], wait=600)
    sets["squad"] = collect(engine, [squad], args.candidates)

    corpus = str(data_dir / "bbc_news" / "bbc_news.jsonl")
    engine = Engine(settings.replace(store=corpus_store([corpus], settings)), engine.encoder)
    engine.ingest([corpus], wait=600)
    sets["bbc"] = collect(engine, [REPO / "tests" / "data" / "bbc_dev.jsonl"], args.candidates)

    def mean_rate(weights: np.ndarray) -> float:
        return sum(hit_rate(d, weights) for d in sets.values()) / len(sets)

    def row(name: str, weights: np.ndarray) -> str:
        cells = " | ".join(f"{hit_rate(d, weights):.3f}" for d in sets.values())
        return f"| {name} | {cells} | {mean_rate(weights):.3f} |"

    print(f"| weights ({', '.join(FEATURES)}) | {' | '.join(sets)} | mean |")
    print("|---" * (len(sets) + 2) + "|")
    base = np.zeros(len(FEATURES), dtype=np.float32)
    base[0] = 1.0
    print(row("cosine only", base))
    for i, name in enumerate(FEATURES[1:], start=1):
        best = max(GRID[name], key=lambda w, i=i: mean_rate(_with(base, i, w)))
        print(row(f"cosine + {name} x {best}", _with(base, i, best)))
    best_weights, best_rate = base, -1.0
    for combo in itertools.product(*GRID.values()):
        weights = np.array((1.0, *combo), dtype=np.float32)
        rate = mean_rate(weights)
        if rate > best_rate:
            best_weights, best_rate = weights, rate
    print(row("grid best " + str(tuple(round(float(w), 3) for w in best_weights)), best_weights))
    return 0


def _with(base: np.ndarray, index: int, value: float) -> np.ndarray:
    weights = base.copy()
    weights[index] = value
    return weights


if __name__ == "__main__":
    sys.exit(main())
