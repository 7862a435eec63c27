"""Choosing the answer sentence among a question's candidates: the reader against cosine and word overlap.

Precision@1 (the top-scored candidate is a right one) on:
- SelQA dev (``../shared/data/selqa/``): each question's candidates are one Wikipedia section's sentences;
- SQuAD dev5 (answerable): the gold paragraph's sentences, right = holds a gold answer;
- SQuAD train, held out (``--held-out N`` questions of the articles training/train_reader.py leaves out).

Nothing is tuned here: the table only reports.

    .venv/bin/python benchmarks/reader_sentences.py [--shared ../shared] [--model-dir models/reader]
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from embeddings.chunking import sentence_spans
from embeddings.encoder import load_encoder
from embeddings.evaluate import normalise
from embeddings.keyword import question_terms, tokenize
from embeddings.reader import Reader, Reading, in_passage

REPO = Path(__file__).resolve().parent.parent

# (question, title, text, sentence spans, which sentences are right, the answer texts where known)
Case = tuple[str, str, str, tuple[tuple[int, int], ...], frozenset[int], tuple[str, ...]]


def selqa(path: Path) -> list[Case]:
    cases = []
    for item in json.loads(path.read_text(encoding="utf-8")):
        text, spans = join_sentences(item["candidates"])
        title = f"{item['article']} ({item['section']})"
        cases.append((item["question"], title, text, spans, frozenset(item["answers"]), ()))
    return cases


def squad_lines(path: Path) -> list[Case]:
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        cases.append(
            _gold_case(record["question"], record.get("title", ""), record["context"], record["answers"])
        )
    return cases


def held_out(data: Path, n: int, seed: int = 5) -> list[Case]:
    sys.path.insert(0, str(REPO))  # training/ is a folder of scripts, not an installed package
    from training.train_reader import load_squad

    held = list(load_squad(data).held)
    random.Random(seed).shuffle(held)
    cases = []
    for it in held[:n]:
        text, spans = join_sentences(it.sentences)
        answer = it.sentences[it.positive][it.answer[0] : it.answer[1]]
        cases.append((it.question, it.title, text, spans, frozenset([it.positive]), (answer,)))
    return cases


def join_sentences(sentences: Sequence[str]) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The sentences joined by spaces, with each one's span in the text."""
    text, spans = "", []
    for sentence in sentences:
        start = len(text) + (1 if text else 0)
        text = f"{text} {sentence}" if text else sentence
        spans.append((start, start + len(sentence)))
    return text, tuple(spans)


def _gold_case(question: str, title: str, context: str, answers: Sequence[str]) -> Case:
    spans = tuple(sentence_spans(context))
    gold = [normalise(a) for a in answers]
    right = frozenset(i for i, (a, b) in enumerate(spans) if any(g in normalise(context[a:b]) for g in gold))
    return question, title, context, spans, right, tuple(answers)


def squad_normal(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def word_f1(got: str, gold: str) -> float:
    a, b = got.split(), gold.split()
    common = sum((Counter(a) & Counter(b)).values())
    if not common:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


def precision_at_1(cases: Sequence[Case], score: Callable[[Case], np.ndarray]) -> tuple[float, float]:
    """(precision@1 over the cases with a right candidate, seconds per question)."""
    usable = [c for c in cases if c[4]]
    started = time.perf_counter()
    hits = sum(int(np.argmax(score(c))) in c[4] for c in usable)
    return hits / max(len(usable), 1), (time.perf_counter() - started) / max(len(usable), 1)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", default=str(REPO.parent / "shared"))
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument("--sets", default="selqa,squad_dev5,held_out")
    args = parser.parse_args()
    data = Path(args.shared) / "data"
    if not data.is_dir():
        print(f"no development data at {data}", file=sys.stderr)
        return 2
    sets: dict[str, list[Case]] = {}
    wanted = args.sets.split(",")
    if "selqa" in wanted:
        sets["SelQA dev"] = selqa(data / "selqa" / "selqa-ass-dev.json")
    if "squad_dev5" in wanted:
        sets["SQuAD dev5 (gold paragraph)"] = squad_lines(
            data / "squad2_dev5" / "squad2_dev5_answerable.jsonl"
        )
    if "held_out" in wanted and args.held_out:
        sets["SQuAD train, held out"] = held_out(data / "squad11_train" / "train-v1.1.json.gz", args.held_out)

    reader = Reader(Path(args.model_dir) if args.model_dir else None)
    encoder = load_encoder("all-MiniLM-L6-v2", "onnx-int8", "cpu")

    cache: dict[int, Reading] = {}

    def read(case: Case) -> Reading:
        if id(case) not in cache:
            question, title, text, spans, *_ = case
            cache[id(case)] = reader.read(question, in_passage(title, [text[a:b] for a, b in spans]))
        return cache[id(case)]

    def by_reader(case: Case) -> np.ndarray:
        return read(case).scores

    def by_span(case: Case) -> np.ndarray:
        return read(case).span_scores

    def by_both(case: Case) -> np.ndarray:
        reading = read(case)
        return reading.scores + 0.5 * reading.span_scores

    def answer_words(case: Case) -> tuple[float, float] | None:
        """Exact match and word F1 of the reader's answer span in the right sentence, best over the
        gold answers (SQuAD's measures)."""
        _, _, text, spans, right, answers = case
        if not answers or not right:
            return None
        i = min(right)
        span = read(case).spans[i]
        a, b = spans[i]
        got = squad_normal(text[a:b][span[0] : span[1]]) if span else ""
        exact = max(float(got == squad_normal(g)) for g in answers)
        return exact, max(word_f1(got, squad_normal(g)) for g in answers)

    def by_cosine(case: Case) -> np.ndarray:
        question, _, text, spans, *_ = case
        vectors = encoder.encode([question] + [text[a:b] for a, b in spans])
        return vectors[1:] @ vectors[0]

    def by_overlap(case: Case) -> np.ndarray:
        question, _, text, spans, *_ = case
        asked = question_terms(question)
        return np.array([len(asked & set(t)) for t in tokenize([text[a:b] for a, b in spans])], dtype=float)

    print(
        "| set | questions | reader (sentence logit) | reader (best span) | reader (logit + 0.5 span) "
        "| MiniLM cosine | word overlap | reader ms/question | answer words in the right sentence: EM / F1 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, cases in sets.items():
        reader_p, reader_s = precision_at_1(cases, by_reader)
        span_p, _ = precision_at_1(cases, by_span)
        both_p, _ = precision_at_1(cases, by_both)
        cosine_p, _ = precision_at_1(cases, by_cosine)
        overlap_p, _ = precision_at_1(cases, by_overlap)
        n = sum(1 for c in cases if c[4])
        words = [m for m in map(answer_words, cases) if m is not None]
        span_cell = (
            f"{np.mean([m[0] for m in words]):.3f} / {np.mean([m[1] for m in words]):.3f}" if words else "-"
        )
        print(
            f"| {name} | {n} | {reader_p:.3f} | {span_p:.3f} | {both_p:.3f} | {cosine_p:.3f} "
            f"| {overlap_p:.3f} | {reader_s * 1000:.0f} | {span_cell} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
