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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("qa", help="a SQuAD-style QA.jsonl (question, answers, title, context)")
    parser.add_argument("--sentences", type=int, nargs="*", default=[4, 6, 8, 10])
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
    print(f"| sentences read | features alone | {' | '.join(f'reader + {w} x features' for w in WEIGHTS)} |")
    print("|---" * (len(WEIGHTS) + 2) + "|")
    for n in args.sentences:
        features_hits = 0
        hits_by_weight = dict.fromkeys(WEIGHTS, 0)
        for question, query in zip(questions, queries, strict=True):
            gold = [normalise(a) for a in question.answers]

            def right(text: str, gold: list[str] = gold) -> bool:
                return any(g in normalise(text) for g in gold)

            hits = engine.searcher.search(question.question, search_options(settings), query)
            sentences = score_sentences(question.question, query, hits, options)
            if not sentences:
                continue
            top = sentences[0]
            features_hits += right(top.hit.chunk.text[top.start : top.end])
            read = read_sentences(question.question, sentences, reader, n)
            if not read:
                continue
            for w in WEIGHTS:
                best = max(read, key=lambda s, w=w: s.final(w))
                hits_by_weight[w] += right(best.hit.chunk.text[best.start : best.end])
        total = len(questions)
        cells = " | ".join(f"{hits_by_weight[w] / total:.3f}" for w in WEIGHTS)
        print(f"| {n} | {features_hits / total:.3f} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
