"""Questions with one misspelt word: how much they cost, and how much reading them right wins back.

    .venv/bin/python benchmarks/misspelt.py tests/data/bbc_dev.jsonl tests/data/offtopic.jsonl \\
        --corpus ../shared/data/bbc_news/bbc_news.jsonl
    .venv/bin/python benchmarks/misspelt.py ../shared/data/squad2_dev5/squad2_dev5_answerable.jsonl \\
        ../shared/data/squad2_dev5/squad2_dev5_unanswerable.jsonl

Each answerable question gets one typo (seeded by its text) in one word of five letters or more:
a vowel changed, two letters swapped, a letter dropped, or a doubled letter made single ("Time
Wraner", "Neveda"). Unanswerable questions stay as written: they measure whether correcting makes
the bot answer what the articles do not hold. Prints `newsbot eval`'s table (with the reader) for
the questions as written and as misspelt, with spelling (settings.spelling) on and off, and how
many misspelt questions were read back exactly as written.
"""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import replace

from embeddings.evaluate import Question, evaluate, format_table, qa_command_line, read_questions
from embeddings.keyword import QUESTION_WORDS
from embeddings.settings import load_settings

VOWELS = "aeiou"
_LONG_WORD = re.compile(r"[A-Za-z]{5,}")


def misspell(word: str, rng: random.Random) -> str:
    """``word`` with one typo of a kind people make, never at its first or last letter."""
    kinds = ["vowel", "swap", "drop", "double"]
    rng.shuffle(kinds)
    for kind in kinds:
        if kind == "vowel":
            spots = [i for i in range(1, len(word) - 1) if word[i].lower() in VOWELS]
            if spots:
                i = rng.choice(spots)
                return word[:i] + rng.choice([v for v in VOWELS if v != word[i].lower()]) + word[i + 1 :]
        elif kind == "swap":
            spots = [i for i in range(1, len(word) - 2) if word[i] != word[i + 1]]
            if spots:
                i = rng.choice(spots)
                return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        elif kind == "drop":
            i = rng.randrange(1, len(word) - 1)
            return word[:i] + word[i + 1 :]
        else:
            spots = [i for i in range(1, len(word) - 1) if word[i] == word[i + 1]]
            if spots:
                i = rng.choice(spots)
                return word[:i] + word[i + 1 :]
    return word


def misspelt(question: Question) -> Question:
    """The question with one of its words (five letters or more, not "which") misspelt."""
    rng = random.Random(zlib.crc32(question.question.encode()))
    spots = [m for m in _LONG_WORD.finditer(question.question) if m.group().lower() not in QUESTION_WORDS]
    if not question.answerable or not spots:
        return question
    m = rng.choice(spots)
    return replace(
        question,
        question=question.question[: m.start()] + misspell(m.group(), rng) + question.question[m.end() :],
    )


def main() -> int:
    files, engine = qa_command_line(__doc__, load_settings().replace(reader=True))
    written = [q for path in files for q in read_questions(path)]
    typed = [misspelt(q) for q in written]
    settings = engine.settings
    rows = []
    for name, questions, spelling in (
        ("as written", written, True),
        ("misspelt, spelling off", typed, False),
        ("misspelt, spelling on", typed, True),
    ):
        engine.settings = settings.replace(spelling=spelling)
        row = evaluate(engine, questions, [settings.fusion], readers=[(True, 0)])[0][0]
        row.name = name
        rows.append(row)
    print(format_table(rows))
    searcher = engine.searcher
    changed = [(w, t) for w, t in zip(written, typed, strict=True) if w.question != t.question]
    restored = sum(searcher.spell(t.question).question == w.question for w, t in changed)
    read_otherwise = sum(bool(searcher.spell(q.question).corrections) for q in written)
    print(
        f"\nmisspelt: {len(changed)} of {len(written)} questions; read back exactly as written: "
        f"{restored} ({restored / max(len(changed), 1):.1%}). Questions as written that had a word "
        f"read otherwise: {read_otherwise} of {len(written)}."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
