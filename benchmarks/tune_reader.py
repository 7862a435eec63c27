"""Choose the reader's settings on questions that are neither training data nor a reported dev set.

QA.jsonl holds SQuAD train questions from articles the reader never trained on (written by
training/held_out_questions.py). The first ``--answerable`` questions' paragraphs are stored; the
search runs as shipped, the features score the leading passages' sentences, and the reader reads the
best N of them. For each N and each weight of the features' score (and of the answer-span score)
added to the reader's logit, it prints the answer-sentence hit rate beside the features alone. Then,
for the best weights, it calibrates the abstention threshold: the reader's probability for the chosen
sentence on those questions against held-out questions whose paragraph is not stored (their
article's other paragraphs may be, as in SQuAD 2's unanswerable questions).

    .venv/bin/python training/held_out_questions.py /tmp/held_out.jsonl --n 1200
    .venv/bin/python benchmarks/tune_reader.py /tmp/held_out.jsonl

With ``--learned``, it fits a choice learned from the reader's and the features' inputs (a softmax
over each question's sentences read, cross-validated over two halves of the paragraphs) and prints
it beside the shipped rule, for 4, 6 and 8 sentences read.

With ``--stops``, it reads a round at a time and stops once no sentence left could win, at each
``reader_stop`` (inf reads them all): how often the quote holds the answer, how often it is not the
quote reading every sentence gives, and how many sentences are read.

With ``--quotes``, as the settings read otherwise, it prints how often the quote holds the answer when
it takes in the chosen sentence's neighbour that the reader scores within each margin (pair_margin).
"""

from __future__ import annotations

import argparse
import sys
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from embeddings.answer import (
    FEATURES,
    AnswerOptions,
    Sentence,
    answer_confidence,
    by_reader,
    quote_bounds,
    read_sentences,
    read_until_sure,
    score_sentences,
    sentence_features,
)
from embeddings.engine import Engine, answer_options, search_options
from embeddings.evaluate import Question, calibrate, context_articles, corpus_store, normalise, read_questions
from embeddings.reader import Reader
from embeddings.retrieval import SearchOptions
from embeddings.settings import load_settings

WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
STOPS = (3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
MARGINS = (-1.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)
SPAN_WEIGHTS = (0.0, 0.1, 0.25)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("qa", help="a SQuAD-style QA.jsonl (question, answers, title, context)")
    parser.add_argument("--answerable", type=int, default=600, help="questions whose paragraphs are stored")
    parser.add_argument(
        "--unanswerable", type=int, default=600, help="at most this many without their paragraph"
    )
    parser.add_argument("--sentences", type=int, nargs="*", default=[4, 6, 8, 10, 12])
    parser.add_argument(
        "--quotes", action="store_true", help="only the table of two-sentence quotes, as the settings read"
    )
    parser.add_argument(
        "--abstain",
        metavar="SWAPPED",
        help="only the abstention table: these unanswerable copies of the stored questions "
        "(training/held_out_questions.py --swapped) join the ones whose paragraph is not stored",
    )
    parser.add_argument(
        "--stops", action="store_true", help="only the table of reading until sure, at each reader_stop"
    )
    parser.add_argument(
        "--learned", action="store_true", help="only the table of a learned choice against the shipped rule"
    )
    parser.add_argument(
        "--wins", action="store_true", help="list the questions the features get wrong and the reader right"
    )
    args = parser.parse_args()
    path = Path(args.qa)
    settings = load_settings()
    everything = read_questions(path)
    questions = everything[: args.answerable]
    stored = {q.context for q in questions}
    unanswerable = [q for q in everything[args.answerable :] if q.context not in stored][: args.unanswerable]
    store = corpus_store([path, f"answerable={args.answerable}"], settings)
    engine = Engine(settings.replace(store=store))
    if not engine.has_store():
        kept = store.with_suffix(".jsonl")
        kept.parent.mkdir(parents=True, exist_ok=True)
        lines = path.read_text(encoding="utf-8").splitlines()[: args.answerable]
        kept.write_text("\n".join(lines) + "\n", encoding="utf-8")
        engine.ingest_items(context_articles(kept), wait=600)
    engine.settings = engine.settings.replace(reader=True)
    reader = engine.reader
    assert reader is not None
    options = answer_options(settings)
    search = search_options(settings)
    grid = [(w, v) for v in SPAN_WEIGHTS for w in WEIGHTS]
    shipped = (options.reader_feature_weight, options.reader_span_weight)

    features_confidence: dict[str, float] = {}

    def candidates(question: str, query: np.ndarray, n: int) -> tuple[list[Sentence], list[Sentence]]:
        """The features' sentences, best first, and the best ``n`` of them as the reader scores them."""
        hits = engine.searcher.search(question, search, query)[: settings.top_k]
        sentences = score_sentences(question, query, hits, options)
        idf = engine.searcher.idf(question)
        features_confidence[question] = answer_confidence(
            question, hits[: options.confidence_passages], sentences, idf, options
        )
        return sentences, read_sentences(question, sentences, reader, n) if sentences else []

    def gated(questions: list[Question], probabilities: list[float]) -> list[float]:
        """The reader's probability where the features' confidence would answer, else -1: the rule
        "answer when both say so"."""
        return [
            p if features_confidence[q.question] >= options.threshold else -1.0
            for q, p in zip(questions, probabilities, strict=True)
        ]

    queries = engine.encoder.encode([q.question for q in questions])
    if args.learned:
        return learned(engine, questions, queries, options, search)
    if args.stops:
        return stops(questions, queries, candidates, options, reader)
    if args.quotes:
        return quotes(questions, queries, options.reader_sentences, candidates, options)
    if args.abstain:
        swapped = read_questions(Path(args.abstain))
        groups = {"paragraph not stored": unanswerable, "a name or number swapped": swapped}
        return abstention(engine, questions, queries, groups, candidates, features_confidence, options)
    off_queries = engine.encoder.encode([q.question for q in unanswerable])
    print(
        f"{len(questions)} answerable questions (paragraph stored), "
        f"{len(unanswerable)} whose paragraph is not"
    )
    print(
        "| sentences read | answer among them | features alone | best (w, v): reader + w x features + "
        "v x span | all (w, v) |"
    )
    print("|---|---|---|---|---|")
    calibration = []
    for n in args.sentences:
        features_hits = reachable = 0
        hits_by_weight = dict.fromkeys(grid, 0)
        chosen_yes: dict[tuple[float, float], list[float]] = {key: [] for key in grid}
        for question, query in zip(questions, queries, strict=True):
            gold = [normalise(a) for a in question.answers]

            def right(text: str, gold: list[str] = gold) -> bool:
                return any(g in normalise(text) for g in gold)

            sentences, read = candidates(question.question, query, n)
            if not sentences:
                continue
            top = sentences[0]
            features_right = right(top.hit.chunk.text[top.start : top.end])
            features_hits += features_right
            reachable += any(right(s.hit.chunk.text[s.start : s.end]) for s in read)
            for w, v in grid:
                best = max(read, key=lambda s, w=w, v=v: s.final(w, v))
                reader_right = right(best.hit.chunk.text[best.start : best.end])
                hits_by_weight[w, v] += reader_right
                chosen_yes[w, v].append(best.probability)
                if args.wins and (w, v) == shipped and reader_right and not features_right:
                    print(f"win (reads {n}): {question.question}", file=sys.stderr)
        total = len(questions)
        best_key = max(grid, key=lambda key: hits_by_weight[key])
        cells = ", ".join(f"{key}: {hits_by_weight[key] / total:.3f}" for key in grid)
        print(
            f"| {n} | {reachable / total:.3f} | {features_hits / total:.3f} "
            f"| {best_key}: {hits_by_weight[best_key] / total:.3f} | {cells} |"
        )
        chosen_no = []
        for question, query in zip(unanswerable, off_queries, strict=True):
            _, read = candidates(question.question, query, n)
            if read:
                chosen_no.append(max(read, key=lambda s: s.final(*best_key)).probability)
            else:
                chosen_no.append(0.0)
        yes, no = chosen_yes[best_key], chosen_no
        calibration.append((n, best_key, "reader alone", calibrate(yes, no)))
        both = calibrate(gated(questions, yes), gated(unanswerable, no))
        calibration.append((n, best_key, f"features >= {options.threshold} and reader", both))
    conf_yes = [features_confidence[q.question] for q in questions]
    conf_no = [features_confidence[q.question] for q in unanswerable]
    answered = np.mean([c >= options.threshold for c in conf_yes])
    abstained = np.mean([c < options.threshold for c in conf_no])
    print(
        f"abstention, features alone at {options.threshold}: answers {answered:.1%} of answerable and "
        f"abstains on {abstained:.1%} of questions whose paragraph is not stored "
        f"(best threshold: {calibrate(conf_yes, conf_no)})"
    )
    for n, key, rule, (threshold, answered, abstained) in calibration:
        print(
            f"abstention, {n} sentences, {key}, {rule}: threshold {threshold:.3f} answers {answered:.1%} "
            f"of answerable and abstains on {abstained:.1%} of questions whose paragraph is not stored"
        )
    return 0


def quotes(
    questions: list[Question],
    queries: np.ndarray,
    n: int,
    candidates: Callable[[str, np.ndarray, int], tuple[list[Sentence], list[Sentence]]],
    options: AnswerOptions,
) -> int:
    """Quote the chosen sentence's neighbour too when the reader scores it within each margin: the
    answer hit rate of the quote, how often it is two sentences, and its length."""
    print("| pair margin | quote holds the answer | two sentences | quote chars (mean) | (max) |")
    print("|---|---|---|---|---|")
    readings = [
        (question, by_reader(candidates(question.question, query, n)[1], options))
        for question, query in zip(questions, queries, strict=True)
    ]
    for margin in MARGINS:
        settings = replace(options, pair_margin=margin)
        right = pairs = 0
        lengths = []
        for question, read in readings:
            if not read:
                continue
            start, end = quote_bounds(read[0], read, settings)
            quote = read[0].hit.chunk.text[start:end]
            right += any(normalise(a) in normalise(quote) for a in question.answers)
            pairs += (start, end) != (read[0].start, read[0].end)
            lengths.append(end - start)
        total = len(questions)
        print(
            f"| {margin} | {right / total:.3f} | {pairs / total:.3f} | {np.mean(lengths):.0f} "
            f"| {max(lengths)} |"
        )
    return 0


def stops(
    questions: list[Question],
    queries: np.ndarray,
    candidates: Callable[[str, np.ndarray, int], tuple[list[Sentence], list[Sentence]]],
    options: AnswerOptions,
    reader: Reader,
) -> int:
    """Read a round at a time (``reader.at_once`` sentences) until sure, at each ``reader_stop``,
    against reading all ``reader_sentences``: the quote, and what reading costs."""

    def quote(read: list[Sentence]) -> tuple[int, int, int]:
        ranked = by_reader(read, options)
        return (ranked[0].hit.chunk.id, *quote_bounds(ranked[0], ranked, options))

    def right(question: Question, place: tuple[int, int, int], read: list[Sentence]) -> bool:
        text = next(s.hit.chunk.text for s in read if s.hit.chunk.id == place[0])[place[1] : place[2]]
        return any(normalise(a) in normalise(text) for a in question.answers)

    n = options.reader_sentences
    holds = dict.fromkeys(STOPS, 0)
    changed, better, worse, first_round = (dict.fromkeys(STOPS, 0) for _ in range(4))
    counts: dict[float, list[int]] = {x: [] for x in STOPS}
    full_holds = total = 0
    for question, query in zip(questions, queries, strict=True):
        sentences, everything = candidates(question.question, query, n)
        total += 1
        if not everything:
            continue
        full = quote(everything)
        full_right = right(question, full, everything)
        full_holds += full_right
        for x in STOPS:
            read = read_until_sure(question.question, sentences, reader, replace(options, reader_stop=x))
            place = quote(read)
            now_right = right(question, place, read)
            holds[x] += now_right
            changed[x] += place != full
            better[x] += now_right and not full_right
            worse[x] += full_right and not now_right
            counts[x].append(len(read))
            first_round[x] += len(read) <= reader.at_once < len(everything)
    print(f"{total} answerable questions, {reader.at_once} sentences a round, {n} at most")
    print(
        "| reader_stop | quote holds the answer | quote not as reading all | better / worse "
        "| sentences read (mean) | stopped after the first round |"
    )
    print("|---|---|---|---|---|---|")
    print(f"| inf | {full_holds / total:.3f} | 0 | - | {n} | 0 |")
    for x in STOPS:
        print(
            f"| {x} | {holds[x] / total:.3f} | {changed[x]} | {better[x]} / {worse[x]} "
            f"| {np.mean(counts[x]):.2f} | {first_round[x] / total:.1%} |"
        )
    return 0


def abstention(
    engine: Engine,
    questions: list[Question],
    queries: np.ndarray,
    groups: dict[str, list[Question]],
    candidates: Callable[[str, np.ndarray, int], tuple[list[Sentence], list[Sentence]]],
    features_confidence: dict[str, float],
    options: AnswerOptions,
) -> int:
    """Answer when the features' confidence + w x (the reader's probability - 0.5) reaches a
    threshold: for each w, the best threshold and what it answers and refuses, and the same at the
    shipped threshold."""

    def scores(asked: list[Question], queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        confidence, probability = [], []
        for question, query in zip(asked, queries, strict=True):
            read = by_reader(candidates(question.question, query, options.reader_sentences)[1], options)
            confidence.append(features_confidence[question.question])
            probability.append(read[0].probability if read else 0.0)
        return np.asarray(confidence), np.asarray(probability)

    yes = scores(questions, queries)
    no = {
        name: scores(asked, engine.encoder.encode([q.question for q in asked]))
        for name, asked in groups.items()
    }
    print(f"{len(questions)} answerable; " + ", ".join(f"{len(g)} {name}" for name, g in groups.items()))
    names = list(no)
    print(
        "| w | best threshold | answers | abstains (all) | "
        + " | ".join(f"at {options.threshold}: abstains ({n})" for n in names)
        + f" | at {options.threshold}: answers |"
    )
    print("|---|---|---|---|" + "---|" * len(names) + "---|")
    for w in (0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2):
        combined_yes = yes[0] + w * (yes[1] - 0.5)
        combined_no = {n: c + w * (p - 0.5) for n, (c, p) in no.items()}
        everything_no = np.concatenate(list(combined_no.values()))
        threshold, answered, abstained = calibrate(combined_yes, everything_no)
        fixed = " | ".join(f"{np.mean(combined_no[n] < options.threshold):.1%}" for n in names)
        print(
            f"| {w} | {threshold:.3f} | {answered:.1%} | {abstained:.1%} | {fixed} "
            f"| {np.mean(combined_yes >= options.threshold):.1%} |"
        )
    return 0


INPUTS = ("logit", "span", "features' score", "features' rank", "first of its passage", "logit - best logit")


def learned(
    engine: Engine,
    questions: list[Question],
    queries: np.ndarray,
    options: AnswerOptions,
    search: SearchOptions,
) -> int:
    """Choose among the sentences read by a softmax over their inputs (the reader's logit and span
    score, the features' score and each raw feature, ranks) fitted on one half of the paragraphs and
    measured on the other, both ways, against the shipped rule (logit + w x features' score)."""
    reader = engine.reader
    assert reader is not None
    groups: list[tuple[np.ndarray, np.ndarray]] = []  # per question: inputs x 8 sentences, answers
    halves: list[int] = []
    for question, query in zip(questions, queries, strict=True):
        hits = engine.searcher.search(question.question, search, query)[: engine.settings.top_k]
        spans, raw = sentence_features(question.question, query, hits, options.candidates)
        by_place = {(id(hit), a): row for (hit, a, _), row in zip(spans, raw, strict=True)}
        read = read_sentences(
            question.question, score_sentences(question.question, query, hits, options), reader, 8
        )
        if not read:
            continue
        best = max(s.reader_logit or 0.0 for s in read)
        rows = [
            [
                s.reader_logit or 0.0,
                s.reader_span,
                s.score,
                k,
                float(s.hit.chunk.sentences.index((s.start, s.end)) == 0),
                (s.reader_logit or 0.0) - best,
                *by_place[id(s.hit), s.start],
            ]
            for k, s in enumerate(read)
        ]
        answers = [normalise(a) for a in question.answers]
        holds = [any(a in normalise(s.hit.chunk.text[s.start : s.end]) for a in answers) for s in read]
        groups.append((np.asarray(rows, dtype=np.float64), np.asarray(holds, dtype=np.float64)))
        halves.append(zlib.crc32(question.context.encode()) % 2)
    print(f"{len(groups)} answerable questions; inputs: {', '.join((*INPUTS, *FEATURES))}")
    print("| sentences read | the answer among them | shipped rule | learned (two halves) |")
    print("|---|---|---|---|")
    w = options.reader_feature_weight
    for n in (4, 6, 8):
        cut = [(x[:n], y[:n]) for x, y in groups]
        rule = np.mean([y[np.argmax(x[:, 0] + w * x[:, 2])] for x, y in cut])
        right = 0.0
        for half in (0, 1):
            weights, mean, scale = fit_softmax([g for g, h in zip(cut, halves, strict=True) if h != half])
            right += sum(
                y[np.argmax(((x - mean) / scale) @ weights)]
                for (x, y), h in zip(cut, halves, strict=True)
                if h == half
            )
        reach = np.mean([y.max() for _, y in cut])
        print(f"| {n} | {reach:.3f} | {rule:.3f} | {right / len(cut):.3f} |")
    return 0


def fit_softmax(
    groups: list[tuple[np.ndarray, np.ndarray]], l2: float = 0.01, steps: int = 400
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights of a softmax over each group's rows that puts the probability on its answers
    (standardised inputs, gradient descent with an L2 penalty), with the standardisation."""
    stacked = np.concatenate([x for x, _ in groups])
    mean, scale = stacked.mean(0), stacked.std(0) + 1e-6
    usable = [((x - mean) / scale, y / y.sum()) for x, y in groups if y.sum() > 0]
    weights = np.zeros(stacked.shape[1])
    weights[0] = 1.0  # start from the reader alone
    for _ in range(steps):
        gradient = l2 * weights
        for x, target in usable:
            p = np.exp(x @ weights - (x @ weights).max())
            gradient += x.T @ (p / p.sum() - target) / len(usable)
        weights -= 0.5 * gradient
    return weights, mean, scale


if __name__ == "__main__":
    sys.exit(main())
