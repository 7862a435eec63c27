"""The evaluation harness: retrieval recall, answer-sentence hits and abstention on a question file.

Input lines hold ``question``, ``answers`` (empty: the articles hold no answer) and a gold
``article_id`` and/or ``context``. A retrieved passage is a hit when it comes from the gold article
(or a stored duplicate of it) or contains a gold answer. Questions are embedded once and every
fusion is scored on the same vectors, so the rows of the table differ only by the fusion.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from embeddings.answer import AnswerOptions, answer, rerank
from embeddings.articles import make_article
from embeddings.engine import Engine, answer_options, search_options
from embeddings.records import Answer, Article, Hit
from embeddings.settings import Settings

KS = (1, 5, 10)


@dataclass(frozen=True)
class Question:
    question: str
    answers: tuple[str, ...]
    article_id: str = ""
    context: str = ""

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass
class Row:
    name: str
    questions: int = 0
    recall: dict[int, float] = field(default_factory=dict)
    mrr10: float = 0.0
    sentence_hit: float = 0.0  # the quote holds a gold answer
    quote_chars: float = 0.0  # the quote's mean length: one sentence, or two (AnswerOptions.pair_margin)
    abstain_unanswerable: float | None = None
    refuse_answerable: float = 0.0
    latency_ms: float = 0.0
    # Citations after [1] given with answers to answerable questions, and the share of them that are
    # relevant (gold article or a gold answer inside).
    extra_citations: int = 0
    extra_relevant: float | None = None


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def read_questions(path: Path) -> list[Question]:
    questions = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            questions.append(
                Question(
                    question=record["question"],
                    answers=tuple(record.get("answers") or ()),
                    article_id=str(record.get("article_id") or ""),
                    context=record.get("context") or "",
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{n}: not a question line ({err})") from None
    return questions


def context_id(context: str) -> str:
    return "ctx-" + hashlib.sha256(context.encode()).hexdigest()[:16]


def context_articles(path: Path) -> list[Article]:
    """The distinct gold paragraphs of a SQuAD-style file, one article each, titled by ``title``."""
    articles: dict[str, Article] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            context = record.get("context")
            if context and context_id(context) not in articles:
                articles[context_id(context)] = make_article(
                    id=context_id(context), title=record.get("title", ""), text=context, source=str(path)
                )
    return list(articles.values())


def is_relevant(hit: Hit, question: Question, gold_articles: set[str]) -> bool:
    if hit.article.id in gold_articles:
        return True
    passage = normalise(hit.chunk.text)
    return any(normalise(a) in passage for a in question.answers)


def sentence_hit(result: Answer, question: Question) -> bool:
    """Does the quote the bot would give hold a gold answer (whether or not it abstained)?"""
    sentence = normalise(result.sentence)
    return bool(sentence) and any(normalise(a) in sentence for a in question.answers)


def gold_article_ids(engine: Engine, question: Question) -> set[str]:
    """The stored article(s) a gold id stands for; duplicates are stored once under one id."""
    ids = set()
    if question.context:
        ids.add(context_id(question.context))
    if question.article_id:
        ids.add(question.article_id)
    if not ids:
        return ids
    store = engine.open_store()
    try:
        for item in list(ids):
            row = store.db.execute("SELECT article_id FROM sources WHERE item = ?", (item,)).fetchone()
            if row:
                ids.add(row[0])
    finally:
        store.close()
    return ids


def evaluate(
    engine: Engine,
    questions: Sequence[Question],
    fusions: Iterable[str],
    options: AnswerOptions | None = None,
    readers: Sequence[tuple[bool, int]] = ((True, 0),),
) -> tuple[list[Row], dict[str, list[float]]]:
    """One row per fusion and reader setting ((reader on, passages it reranks); also each
    answerable/unanswerable question's confidence, for calibration, keyed by the row's name."""
    options = options or answer_options(engine.settings)
    searcher = engine.searcher
    # As the bot reads them: without chat around them, misspelt words read as the passages spell them.
    texts = [engine.read_question(q.question, searcher).question for q in questions]
    queries = engine.encoder.encode(texts)
    golds = [gold_article_ids(engine, q) for q in questions]
    rows = []
    confidences: dict[str, list[float]] = {}
    for fusion, (with_reader, depth) in itertools.product(fusions, readers):
        reader = engine.reader if with_reader else None
        search = search_options(engine.settings)
        search = type(search)(**{**asdict(search), "fusion": fusion, "k": max(*KS, depth)})
        name = fusion if reader is None else f"{fusion} + reader"
        row = Row(name + (f", reranking {depth}" if reader is not None and depth else ""))
        recall = dict.fromkeys(KS, 0)
        answerable = unanswerable = abstained = refused = hits_at_sentence = quoted = 0
        extra = extra_relevant = 0
        mrr = 0.0
        conf_yes, conf_no = [], []
        started = time.perf_counter()
        for question, text, query, gold in zip(questions, texts, queries, golds, strict=True):
            hits = searcher.search(text, search, query)
            if reader is not None and depth:
                hits = rerank(text, query, hits, reader, depth)
            result = answer(text, query, hits[: engine.settings.top_k], searcher.idf(text), options, reader)
            if question.answerable:
                answerable += 1
                conf_yes.append(result.confidence)
                ranks = [h.rank for h in hits if is_relevant(h, question, gold)]
                first = min(ranks) if ranks else None
                for k in KS:
                    recall[k] += first is not None and first <= k
                mrr += 1.0 / first if first else 0.0
                hits_at_sentence += sentence_hit(result, question)
                quoted += len(result.sentence)
                refused += not result.answered
                if result.answered:
                    by_chunk = {h.chunk.text: h for h in hits}
                    for citation in result.citations[1:]:
                        extra += 1
                        hit = by_chunk.get(citation.passage)
                        extra_relevant += hit is not None and is_relevant(hit, question, gold)
            else:
                unanswerable += 1
                conf_no.append(result.confidence)
                abstained += not result.answered
        row.questions = len(questions)
        row.latency_ms = (time.perf_counter() - started) * 1000 / max(len(questions), 1)
        if answerable:
            row.recall = {k: recall[k] / answerable for k in KS}
            row.mrr10 = mrr / answerable
            row.sentence_hit = hits_at_sentence / answerable
            row.quote_chars = quoted / answerable
            row.refuse_answerable = refused / answerable
        row.extra_citations = extra
        if extra:
            row.extra_relevant = extra_relevant / extra
        if unanswerable:
            row.abstain_unanswerable = abstained / unanswerable
        rows.append(row)
        confidences[f"{row.name}:answerable"] = conf_yes
        confidences[f"{row.name}:unanswerable"] = conf_no
    return rows, confidences


def calibrate(answerable: Sequence[float], unanswerable: Sequence[float]) -> tuple[float, float, float]:
    """The threshold that best separates the two, by balanced accuracy: (threshold, answered, abstained)."""
    yes, no = np.asarray(answerable), np.asarray(unanswerable)
    best = (0.0, 1.0, 0.0)
    best_score = -1.0
    for threshold in np.unique(np.concatenate([yes, no])):
        answered = float((yes >= threshold).mean()) if len(yes) else 0.0
        abstained = float((no < threshold).mean()) if len(no) else 0.0
        if answered + abstained > best_score:
            best_score, best = answered + abstained, (float(threshold), answered, abstained)
    return best


def format_table(rows: Sequence[Row]) -> str:
    head = (
        "| retrieval | questions | R@1 | R@5 | R@10 | MRR@10 | answer sentence | quote chars "
        "| abstains (no answer) | refuses (answerable) | citations [2]+ relevant | ms/question |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        abstain = "-" if r.abstain_unanswerable is None else f"{r.abstain_unanswerable:.3f}"
        relevant = "-" if r.extra_relevant is None else f"{r.extra_relevant:.3f} of {r.extra_citations}"
        lines.append(
            f"| {r.name} | {r.questions} | {r.recall.get(1, 0):.3f} | {r.recall.get(5, 0):.3f} | "
            f"{r.recall.get(10, 0):.3f} | {r.mrr10:.3f} | {r.sentence_hit:.3f} | {r.quote_chars:.0f} | "
            f"{abstain} | {r.refuse_answerable:.3f} | {relevant} | {r.latency_ms:.1f} |"
        )
    return "\n".join(lines)


def corpus_store(corpus: Sequence[str | Path], settings: Settings) -> Path:
    """A store for an eval corpus, kept between runs so only the first run pays for embedding."""
    where = "|".join(str(Path(p).resolve()) for p in corpus)
    key = hashlib.sha256(f"{where}|{settings.model}|{settings.chunk_tokens}".encode()).hexdigest()
    if settings.backend != "torch":
        key = hashlib.sha256(f"{key}|{settings.backend}".encode()).hexdigest()
    return Path(tempfile.gettempdir()) / "newsbot-eval" / key[:16]


def corpus_engine(files: Sequence[Path], corpus: str | None, settings: Settings) -> Engine:
    """An engine over ``corpus`` (a path to ingest), or else over the QA files' own contexts, in its
    kept store (corpus_store): only what is new is embedded."""
    engine = Engine(settings.replace(store=corpus_store([corpus] if corpus else files, settings)))
    if corpus:
        engine.ingest([corpus], wait=600)
    else:
        engine.ingest_items([a for path in files for a in context_articles(path)], wait=600)
    return engine


def qa_command_line(description: str, settings: Settings) -> tuple[list[Path], Engine]:
    """What a QA benchmark's command line names (``QA.jsonl ... [--corpus PATH]``, the files as
    `newsbot eval` reads them), and the engine over that corpus (corpus_engine)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("qa", nargs="+", help="QA.jsonl files, as `newsbot eval` reads them")
    parser.add_argument("--corpus", help="index this corpus (else the files' contexts)")
    args = parser.parse_args()
    files = [Path(p) for p in args.qa]
    return files, corpus_engine(files, args.corpus, settings)


def main(args: argparse.Namespace, settings: Settings) -> int:
    from embeddings import conversation_eval

    if getattr(args, "reader", False) or getattr(args, "rerank", 0):
        settings = settings.replace(reader=True)  # rows without the reader pass none explicitly
    files = [Path(p) for p in args.qa]
    # Conversation files (lines with "turns") are measured turn by turn: see conversation_eval.
    conversations = [p for p in files if conversation_eval.is_conversation_file(p)]
    files = [p for p in files if p not in conversations]
    questions = [q for path in files for q in read_questions(path)]
    if args.corpus or any(q.context for q in questions):
        engine = corpus_engine(files, args.corpus, settings)
        settings = engine.settings
    else:
        engine = Engine(settings)
    if conversations:
        conversation_eval.main(conversations, engine)
        if not questions:
            return 0
    fusions = args.fusion or [settings.fusion]
    readers = [(False, 0)]
    if settings.reader:
        readers.append((True, 0))
    if getattr(args, "rerank", 0):
        readers.append((True, args.rerank))
    rows, confidences = evaluate(engine, questions, fusions, readers=readers)
    print(format_table(rows))
    for row, (with_reader, _) in zip(rows[: len(readers)], readers, strict=True):
        yes, no = confidences[f"{row.name}:answerable"], confidences[f"{row.name}:unanswerable"]
        if yes and no:
            threshold, answered, abstained = calibrate(yes, no)
            used = settings.reader_threshold if with_reader else settings.abstain_threshold
            print(
                f"abstention ({row.name}): the best threshold here is {threshold:.3f}, "
                f"answering {answered:.1%} of answerable and abstaining on {abstained:.1%} of unanswerable "
                f"(the settings use {used})"
            )
    if args.out:
        Path(args.out).write_text(
            json.dumps({"rows": [asdict(r) for r in rows], "confidences": confidences}, indent=1),
            encoding="utf-8",
        )
    return 0
