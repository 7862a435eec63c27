"""Measuring follow-up questions: conversation files for `newsbot eval`.

Each line holds ``turns``: a list of ``{question, answers, article_id}``, and for every turn after the
first a ``standalone`` wording that needs no context. Rows of the table:

- follow-ups in their conversation: each later turn asked after the turns before it (the bot's way);
- the same follow-ups asked alone, without the conversation (what a search box would do);
- their standalone wording asked alone (the ceiling the conversation should come close to);
- first questions asked alone, and asked right after another, unrelated conversation: a new subject
  must not be dragged back to the old one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from embeddings.conversation import Conversation, Resolved, respond
from embeddings.engine import Engine, answer_options, search_options
from embeddings.evaluate import KS, Question, Row, gold_article_ids, is_relevant, sentence_hit
from embeddings.records import Answer, Hit


@dataclass(frozen=True)
class Turn:
    question: Question
    standalone: str = ""


def is_conversation_file(path: Path) -> bool:
    """Whether a question file holds conversations (its first record has ``turns``)."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                try:
                    return "turns" in json.loads(line)
                except json.JSONDecodeError:
                    return False
    return False


def read_conversations(path: Path) -> list[list[Turn]]:
    conversations = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            turns = [
                Turn(
                    Question(
                        question=t["question"],
                        answers=tuple(t.get("answers") or ()),
                        article_id=str(t.get("article_id") or ""),
                    ),
                    standalone=t.get("standalone") or "",
                )
                for t in record["turns"]
            ]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{n}: not a conversation line ({err})") from None
        if not turns:
            raise ValueError(f"{path}:{n}: a conversation needs at least one turn")
        conversations.append(turns)
    return conversations


class _Tally:
    def __init__(self, name: str) -> None:
        self.row = Row(name)
        self.recall = dict.fromkeys(KS, 0)
        self.answerable = self.refused = self.sentences = 0
        self.mrr = 0.0
        self.seconds = 0.0

    def add(
        self, question: Question, result: Answer, hits: Sequence[Hit], gold: set[str], seconds: float
    ) -> None:
        self.row.questions += 1
        self.seconds += seconds
        if not question.answerable:
            return
        self.answerable += 1
        ranks = [h.rank for h in hits if is_relevant(h, question, gold)]
        first = min(ranks) if ranks else None
        for k in KS:
            self.recall[k] += first is not None and first <= k
        self.mrr += 1.0 / first if first else 0.0
        self.sentences += sentence_hit(result, question)
        self.refused += not result.answered

    def done(self) -> Row:
        n = max(self.answerable, 1)
        self.row.recall = {k: self.recall[k] / n for k in KS}
        self.row.mrr10 = self.mrr / n
        self.row.sentence_hit = self.sentences / n
        self.row.refuse_answerable = self.refused / n
        self.row.latency_ms = self.seconds * 1000 / max(self.row.questions, 1)
        return self.row


def evaluate_conversations(engine: Engine, conversations: Sequence[Sequence[Turn]]) -> list[Row]:
    settings = engine.settings
    searcher = engine.searcher
    search = search_options(settings)
    search = type(search)(**{**asdict(search), "k": max(KS)})
    options = answer_options(settings)
    reader = engine.reader  # as the bot answers: None when the settings turn it off
    golds: dict[str, set[str]] = {}

    def gold(question: Question) -> set[str]:
        if question.article_id not in golds:
            golds[question.article_id] = gold_article_ids(engine, question)
        return golds[question.article_id]

    def ask(tally: _Tally, question: Question, text: str, conversation: Conversation | None) -> None:
        started = time.perf_counter()
        text = engine.read_question(text, searcher).question
        resolved = conversation.resolve(text) if conversation is not None else Resolved.alone(text)
        result, hits = respond(searcher, resolved, search, options, top_k=settings.top_k, reader=reader)
        if conversation is not None:
            conversation.add(resolved, result)
        tally.add(question, result, hits, gold(question), time.perf_counter() - started)

    in_context = _Tally("follow-ups, in their conversation")
    alone = _Tally("follow-ups asked alone (no context)")
    standalone = _Tally("follow-ups, standalone wording")
    first_alone = _Tally("first questions, alone")
    first_after = _Tally("first questions, after an unrelated conversation")
    standalone_after = _Tally("standalone wording, after an unrelated conversation")
    for i, turns in enumerate(conversations):
        conversation = Conversation()
        for n, turn in enumerate(turns):
            ask(in_context if n else _Tally("-"), turn.question, turn.question.question, conversation)
            if n:
                ask(alone, turn.question, turn.question.question, None)
                ask(standalone, turn.question, turn.standalone or turn.question.question, None)
        first = turns[0].question
        ask(first_alone, first, first.question, None)
        # The previous conversation, then this one's first question in the same conversation.
        previous = conversations[i - 1]
        carried = Conversation()
        for turn in previous:
            ask(_Tally("-"), turn.question, turn.question.question, carried)
        history = list(carried.turns)
        ask(first_after, first, first.question, carried)
        # Each standalone wording too, straight after the previous conversation.
        for turn in turns[1:]:
            after = Conversation()
            after.turns.extend(history)
            ask(standalone_after, turn.question, turn.standalone or turn.question.question, after)
    tallies = (in_context, alone, standalone, first_alone, first_after, standalone_after)
    return [t.done() for t in tallies]


def format_table(rows: Sequence[Row]) -> str:
    lines = [
        "| questions asked | n | R@1 | R@5 | R@10 | MRR@10 | answer sentence | refuses | ms/question |",
        "|" + "---|" * 9,
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.questions} | {r.recall.get(1, 0):.3f} | {r.recall.get(5, 0):.3f} | "
            f"{r.recall.get(10, 0):.3f} | {r.mrr10:.3f} | {r.sentence_hit:.3f} | "
            f"{r.refuse_answerable:.3f} | {r.latency_ms:.1f} |"
        )
    return "\n".join(lines)


def main(files: Sequence[Path], engine: Engine, out: Callable[[str], None] = print) -> list[Row]:
    conversations = [c for path in files for c in read_conversations(path)]
    rows = evaluate_conversations(engine, conversations)
    out(format_table(rows))
    return rows
