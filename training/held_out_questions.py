"""Write questions from the SQuAD train articles the reader never trains on, as an eval file.

    .venv/bin/python training/held_out_questions.py OUT.jsonl [--n 600] [--swapped SWAPPED.jsonl]

The lines have `newsbot eval`'s layout (question, answers, title, context), so the reader's settings
(how many sentences it reads, how its score combines with the features) can be chosen on questions
that are neither training data nor a reported dev set. Written outside the repo: it is SQuAD's text.

``--swapped`` also writes the same questions made unanswerable the way the training's unanswerable
copies are (a name or number the paragraph holds swapped for another of the article's), with no
answers: abstaining can be calibrated on questions about a stored paragraph that it does not answer,
like SQuAD 2's, without reading SQuAD 2's dev set.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.train_reader import Item, load_squad, paragraph_words, swapped  # noqa: E402


def line(item: Item, record_id: str, question: str, answers: list[str]) -> str:
    """One question in `newsbot eval`'s layout, over the item's paragraph."""
    record = {
        "id": record_id,
        "question": question,
        "answers": answers,
        "title": item.title,
        "context": " ".join(item.sentences),
    }
    return json.dumps(record, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out")
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/squad11_train/train-v1.1.json.gz"))
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--swapped", help="also write unanswerable copies of the same questions here")
    args = parser.parse_args()
    squad = load_squad(Path(args.data))
    held = list(squad.held)
    random.Random(args.seed).shuffle(held)
    with open(args.out, "w", encoding="utf-8") as out:
        for item in held[: args.n]:
            answer = item.sentences[item.positive][item.answer[0] : item.answer[1]]
            out.write(line(item, item.id, item.question, [answer]))
    if args.swapped:
        rng = random.Random(args.seed)
        words = paragraph_words(squad)
        with open(args.swapped, "w", encoding="utf-8") as out:
            for item in held[: args.n]:
                made = swapped(rng, item, words, 0)
                if made is not None:
                    out.write(line(item, item.id + "-swapped", made[0], []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
