"""Questions put as people put them in chat: "hey newsbot, can you tell me who ...", lower case with
no question mark. How the answers compare with the questions as written.

    .venv/bin/python benchmarks/wrapped.py tests/data/bbc_dev.jsonl tests/data/offtopic.jsonl \\
        --corpus ../shared/data/bbc_news/bbc_news.jsonl

Every question (answerable or not) is rewritten each way in turn, and `newsbot eval`'s table (with
the reader) is printed, one row per way. In conversation files (tests/data/bbc_conversations.jsonl)
every turn is rewritten, a follow-up's leading "and" kept in front ("and can you tell me how ..."),
plus one more way for follow-ups alone: "and can you tell me" before each; the rows are the
follow-ups in their conversation and the first questions. embeddings/wording.py takes the wrapping off before
anything else reads the question; docs/quality.md has the figures from before it did.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from embeddings import conversation_eval
from embeddings.conversation_eval import Turn, evaluate_conversations, read_conversations
from embeddings.engine import Engine
from embeddings.evaluate import evaluate, format_table, qa_command_line, read_questions
from embeddings.settings import load_settings
from embeddings.wording import FOLLOW_UP_LEADS


def _lowered(question: str) -> str:
    return question[:1].lower() + question[1:]


WAYS: dict[str, Callable[[str], str]] = {
    "as written": lambda q: q,
    "can you tell me ...": lambda q: "Can you tell me " + _lowered(q),
    "hey newsbot, ...": lambda q: "hey newsbot, " + _lowered(q),
    "do you know ...? thanks": lambda q: "do you know " + _lowered(q) + " thanks!",
    "lower case, no ?": lambda q: q.lower().rstrip("?"),
}

# A follow-up's leading conjunction, which people put before the wrapping.
_LEAD = re.compile(rf"^(?:{FOLLOW_UP_LEADS})\s+", re.IGNORECASE)


def _turn(way: Callable[[str], str]) -> Callable[[str], str]:
    def wrapped(question: str) -> str:
        lead = _LEAD.match(question)
        return way(question) if lead is None else lead[0].lower() + way(question[lead.end() :])

    return wrapped


FOLLOW_UP_WAYS: dict[str, Callable[[str], str]] = {
    "and can you tell me ... (follow-ups)": lambda q: "and can you tell me " + _lowered(_LEAD.sub("", q)),
}


def conversations(engine: Engine, files: list[Path]) -> None:
    """The conversations' table, one pair of rows per way."""
    written = [c for path in files for c in read_conversations(path)]
    rows = []
    ways = {name: (_turn(way), _turn(way)) for name, way in WAYS.items()}
    ways |= {name: ((lambda q: q), way) for name, way in FOLLOW_UP_WAYS.items()}
    for name, (first_way, follow_way) in ways.items():
        rewritten = [
            [
                Turn(replace(t.question, question=(follow_way if n else first_way)(t.question.question)))
                for n, t in enumerate(turns)
            ]
            for turns in written
        ]
        in_context, _, _, first, _, _ = evaluate_conversations(engine, rewritten)
        in_context.name, first.name = f"{name}: follow-ups", f"{name}: first questions"
        rows += [in_context, first]
    print(conversation_eval.format_table(rows))


def main() -> int:
    files, engine = qa_command_line(__doc__, load_settings().replace(reader=True))
    talks = [p for p in files if conversation_eval.is_conversation_file(p)]
    if talks:
        conversations(engine, talks)
    files = [p for p in files if p not in talks]
    if not files:
        return 0
    written = [q for path in files for q in read_questions(path)]
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
