"""Misspelt words in a question, read as the stored articles spell them ("Neveda" -> "Nevada").

A misspelt name costs the keyword side its best clue and shifts the question's vector: one typo per
BBC dev question took R@5 from 1.000 to 0.986 and the quote from 0.878 to 0.851 (docs/quality.md).
A word is corrected only when neither the articles nor English know it: no stored passage holds it,
and no English word list does (symspellpy's, and the encoder's WordPiece vocabulary for names), so
an English word the articles lack ("const", "runny") stays as typed. Its replacement is one edit away
(a letter dropped, added, changed, or two swapped) and fits the rest of the question best: the
passage holding it and the question's other words scores highest. A passage must hold both, which
keeps a name the articles lack ("Senator Halvard Crenshaw") from becoming one they have
("Harvard"). Words under five letters are left alone: "Mrch" is one edit from "much" and "March".
A question with more than three unknown words is read as typed: it is another language, code or
noise rather than typos, and guessing at each word would mislead.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Protocol

from embeddings.keyword import LETTERS, QUESTION_WORDS, STOP_WORDS, fold, question_words, stems
from embeddings.onnx_model import model_dir

MIN_LETTERS = 5
MAX_SUSPECTS = 3
COMMON = 1000


class Vocabulary(Protocol):
    """What the stored passages say about words: the keyword index (keyword.KeywordSearcher)."""

    def passages_holding(self, words: Sequence[str]) -> list[int]: ...

    def best_with(self, word: str, others: Sequence[str]) -> float: ...


@dataclass(frozen=True)
class Spelling:
    """The question as read, and each word read otherwise: (as typed, as read)."""

    question: str
    corrections: tuple[tuple[str, str], ...] = ()


@cache
def english_words() -> dict[str, int]:
    """English words and common names, lower case, with how often English uses them: symspellpy's
    word list (82,765 words, most frequent first) and the whole words of the shipped encoder's
    WordPiece vocabulary (2,427 more names, "Aleksandr", counted 0)."""
    tokenizer = json.loads((model_dir("minilm") / "tokenizer.json").read_text(encoding="utf-8"))
    words = dict.fromkeys((w for w in tokenizer["model"]["vocab"] if w.isalpha()), 0)
    listed = resources.files("symspellpy") / "frequency_dictionary_en_82_765.txt"
    for line in listed.read_text(encoding="utf-8").splitlines():
        word, count = line.split(" ", 1)
        words[word] = int(count)
    return words


@cache
def common_words() -> frozenset[str]:
    """The most frequent English words ("say", "new", "year"): any passage may hold them."""
    ranked = sorted(english_words().items(), key=lambda item: -item[1])
    return frozenset(w for w, _ in ranked[:COMMON])


def one_edit(word: str) -> set[str]:
    """Every string one edit from ``word``: a letter dropped, added or changed, or two swapped."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    letters = string.ascii_lowercase
    return (
        {a + b[1:] for a, b in splits if b}
        | {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
        | {a + c + b[1:] for a, b in splits if b for c in letters}
        | {a + c + b for a, b in splits for c in letters}
    ) - {word}


def suspects(question: str, vocabulary: Vocabulary) -> list[str]:
    """The question's words (lower case) that no passage holds and English does not know."""
    english = english_words()
    words = [
        w
        for w in dict.fromkeys(fold(m.group()) for m in LETTERS.finditer(question))
        if len(w) >= MIN_LETTERS and w not in english and w not in STOP_WORDS and w not in QUESTION_WORDS
    ]
    if not words:
        return []
    return [w for w, n in zip(words, vocabulary.passages_holding(words), strict=True) if n == 0]


def best_edit(word: str, others: Sequence[str], vocabulary: Vocabulary) -> str | None:
    """The word one edit from ``word`` whose best passage also holding ``others`` scores highest.

    Candidates are English words, or strings that are their own stem: the index holds stems, and
    "beginned" (one edit from "beginner") stems to "begin"."""
    english = english_words()
    edits = sorted(one_edit(word))
    candidates = [c for c, stem in zip(edits, stems(edits), strict=True) if c in english or stem == c]
    held = [c for c, n in zip(candidates, vocabulary.passages_holding(candidates), strict=True) if n]
    # Ties (the same stem: "formed", "forms") go to the word English uses more.
    scored = [(vocabulary.best_with(c, others), c in english, english.get(c, 0), c) for c in held]
    best = max(scored, default=(0.0, False, 0, ""))
    return best[3] if best[0] > 0 else None


def _cased(typed: str, word: str) -> str:
    if typed.isupper():
        return word.upper()
    return word[0].upper() + word[1:] if typed[0].isupper() else word


def correct(question: str, vocabulary: Vocabulary) -> Spelling:
    """The question with its misspelt words read as the stored articles' (see the module's doc)."""
    wrong = suspects(question, vocabulary)
    if not wrong or len(wrong) > MAX_SUSPECTS:
        return Spelling(question)
    common = common_words()
    words = question_words(question)
    others = [w for w in words if w not in wrong and w not in common]
    fixes = {w: found for w in wrong if (found := best_edit(w, others, vocabulary)) is not None}
    # A word the question already has is not what another of its words meant: "When did Herve
    # serve ..." (the passage spells him "Hervé").
    fixes = {w: found for w, found in fixes.items() if found not in words}
    corrections: list[tuple[str, str]] = []

    def swap(match: re.Match[str]) -> str:
        typed = match.group()
        found = fixes.get(fold(typed))
        if found is None:
            return typed
        read = _cased(typed, found)
        if (typed, read) not in corrections:
            corrections.append((typed, read))
        return read

    read = LETTERS.sub(swap, question)
    return Spelling(read, tuple(corrections))
