"""Choose the reader's settings on questions that are neither training data nor a reported dev set.

For each answerable question of QA.jsonl (by default SQuAD train questions the reader never trained
on, written by training/held_out_questions.py), the search runs as shipped, the features score the
leading passages' sentences, and the reader reads the best N of them with their neighbours. Prints
the answer-sentence hit rate for each N and each weight of the features' score added to the reader's
logit, beside the features alone.

    .venv/bin/python training/held_out_questions.py /tmp/held_out.jsonl
    .venv/bin/python benchmarks/tune_reader.py /tmp/held_out.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from embeddings.answer import read_sentences, score_sentences
from embeddings.engine import Engine, answer_options, search_options
from embeddings.evaluate import context_articles, corpus_store, normalise, read_questions
from embeddings.settings import load_settings

WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
SPAN_WEIGHTS = (0.0, 0.25, 0.5)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("qa", help="a SQuAD-style QA.jsonl (question, answers, title, context)")
    parser.add_argument("--sentences", type=int, nargs="*", default=[4, 6, 8, 10])
    parser.add_argument(
        "--wins", action="store_true", help="list the questions the features get wrong and the reader right"
    )
    args = parser.parse_args()
    path = Path(args.qa)
    settings = load_settings()
    engine = Engine(settings.replace(store=corpus_store([path], settings)))
    engine.ingest_items(context_articles(path), wait=600)
    reader = engine.reader
    assert reader is not None
    questions = [q for q in read_questions(path) if q.answerable]
    queries = engine.encoder.encode([q.question for q in questions])
    options = answer_options(settings)
    grid = [(w, v) for v in SPAN_WEIGHTS for w in WEIGHTS]
    print("| sentences read | features alone | best (w, v): reader + w x features + v x span | all (w, v) |")
    print("|---|---|---|---|")
    for n in args.sentences:
        features_hits = 0
        hits_by_weight = dict.fromkeys(grid, 0)
        for question, query in zip(questions, queries, strict=True):
            gold = [normalise(a) for a in question.answers]

            def right(text: str, gold: list[str] = gold) -> bool:
                return any(g in normalise(text) for g in gold)

            hits = engine.searcher.search(question.question, search_options(settings), query)
            sentences = score_sentences(question.question, query, hits, options)
            if not sentences:
                continue
            top = sentences[0]
            features_right = right(top.hit.chunk.text[top.start : top.end])
            features_hits += features_right
            read = read_sentences(question.question, sentences, reader, n)
            if not read:
                continue
            for w, v in grid:
                best = max(read, key=lambda s, w=w, v=v: s.final(w, v))
                reader_right = right(best.hit.chunk.text[best.start : best.end])
                hits_by_weight[w, v] += reader_right
                if args.wins and (w, v) == (0.0, 0.0) and reader_right and not features_right:
                    print(f"win (reads {n}): {question.question}", file=sys.stderr)
        total = len(questions)
        best_key = max(grid, key=lambda key: hits_by_weight[key])
        cells = ", ".join(f"{key}: {hits_by_weight[key] / total:.3f}" for key in grid)
        print(
            f"| {n} | {features_hits / total:.3f} | {best_key}: {hits_by_weight[best_key] / total:.3f} "
            f"| {cells} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
