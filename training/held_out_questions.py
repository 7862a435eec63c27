"""Write questions from the SQuAD train articles the reader never trains on, as an eval file.

    .venv/bin/python training/held_out_questions.py OUT.jsonl [--n 600]

The lines have `newsbot eval`'s layout (question, answers, title, context), so the reader's settings
(how many sentences it reads, how its score combines with the features) can be chosen on questions
that are neither training data nor a reported dev set. Written outside the repo: it is SQuAD's text.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.train_reader import load_squad  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out")
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/squad11_train/train-v1.1.json.gz"))
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    held = list(load_squad(Path(args.data)).held)
    random.Random(args.seed).shuffle(held)
    with open(args.out, "w", encoding="utf-8") as out:
        for item in held[: args.n]:
            answer = item.sentences[item.positive][item.answer[0] : item.answer[1]]
            record = {
                "id": item.id,
                "question": item.question,
                "answers": [answer],
                "title": item.title,
                "context": " ".join(item.sentences),
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
