"""The answer words the reader's span head marks inside the quote ("**China and Russia** oppose
..."): how often they are shown, and how often they are the answer, at each probability bar.

    .venv/bin/python benchmarks/answer_words.py tests/data/bbc_dev.jsonl \\
        --corpus ../shared/data/bbc_news/bbc_news.jsonl
    .venv/bin/python benchmarks/answer_words.py ../shared/data/squad2_dev5/squad2_dev5_answerable.jsonl

Answerable questions only, answered as `newsbot ask` answers them (with the reader). Of the answers
whose quote holds a gold answer, the table counts those whose marked words would be shown at each
bar (`answer_words` in AnswerOptions), and of those, how many are a gold answer exactly (SQuAD's
normalisation: case, punctuation and articles aside), hold one, or overlap one (token F1).
Choose the bar on held-out data (training/held_out_questions.py), not on the sets you report.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass

from embeddings.evaluate import qa_command_line, read_questions, sentence_hit
from embeddings.settings import load_settings

BARS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def normalise(text: str) -> str:
    text = "".join(c for c in text.lower() if c not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def f1(marked: str, gold: str) -> float:
    a, b = normalise(marked).split(), normalise(gold).split()
    common = sum((Counter(a) & Counter(b)).values())
    if not common:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


@dataclass
class Marked:
    probability: float
    exact: bool
    holds: bool
    f1: float


def main() -> int:
    files, engine = qa_command_line(__doc__, load_settings().replace(reader=True, answer_words=0.0))
    questions = [q for path in files for q in read_questions(path) if q.answerable]
    answered = right = 0
    marked: list[Marked] = []
    for question in questions:
        result = engine.ask(question.question)
        if not result.answered:
            continue
        answered += 1
        if not sentence_hit(result, question):
            continue
        right += 1
        if result.words is None:
            continue
        words = result.text[slice(*result.words)]
        marked.append(
            Marked(
                result.words_probability,
                any(normalise(words) == normalise(g) for g in question.answers),
                any(normalise(g) in normalise(words) for g in question.answers),
                max(f1(words, g) for g in question.answers),
            )
        )
    print(
        f"{len(questions)} answerable questions, {answered} answered, {right} with the answer in the "
        f"quote (every bar below counts among these {right})\n"
    )
    print("| bar | shown | exact | holds the answer | F1 |")
    print("|---|---|---|---|---|")
    for bar in BARS:
        shown = [m for m in marked if m.probability >= bar]
        n = max(len(shown), 1)
        print(
            f"| {bar:.1f} | {len(shown) / max(right, 1):.1%} | {sum(m.exact for m in shown) / n:.1%} "
            f"| {sum(m.holds for m in shown) / n:.1%} | {sum(m.f1 for m in shown) / n:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
