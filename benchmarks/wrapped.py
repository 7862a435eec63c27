"""Questions put as people put them in chat: "hey newsbot, can you tell me who ...", lower case with
no question mark. How the answers compare with the questions as written.

    .venv/bin/python benchmarks/wrapped.py tests/data/bbc_dev.jsonl tests/data/offtopic.jsonl \\
        --corpus ../shared/data/bbc_news/bbc_news.jsonl

Every question (answerable or not) is rewritten each way in turn, and `newsbot eval`'s table (with
the reader) is printed, one row per way. embeddings/wording.py takes the wrapping off before
anything else reads the question; docs/quality.md has the figures from before it did.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from embeddings.evaluate import corpus_engine, evaluate, format_table, read_questions
from embeddings.settings import load_settings


def _lowered(question: str) -> str:
    return question[:1].lower() + question[1:]


WAYS: dict[str, Callable[[str], str]] = {
    "as written": lambda q: q,
    "can you tell me ...": lambda q: "Can you tell me " + _lowered(q),
    "hey newsbot, ...": lambda q: "hey newsbot, " + _lowered(q),
    "do you know ...? thanks": lambda q: "do you know " + _lowered(q) + " thanks!",
    "lower case, no ?": lambda q: q.lower().rstrip("?"),
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("qa", nargs="+", help="QA.jsonl files, as `newsbot eval` reads them")
    parser.add_argument("--corpus", help="index this corpus (else the files' contexts)")
    args = parser.parse_args()
    files = [Path(p) for p in args.qa]
    written = [q for path in files for q in read_questions(path)]
    engine = corpus_engine(files, args.corpus, load_settings().replace(reader=True))
    rows = []
    for name, way in WAYS.items():
        questions = [replace(q, question=way(q.question)) for q in written]
        row = evaluate(engine, questions, [engine.settings.fusion], readers=[(True, 0)])[0][0]
        row.name = name
        rows.append(row)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
