"""Answering from news-length stories: does a story's answering passage get lost among its others?

    .venv/bin/python benchmarks/long_stories.py [--questions /tmp/held_out.jsonl]

The hidden CNN set's misses include "the gold story among the top 5 but its answering passage not".
BBC stories are short (3 passages on average) and SQuAD's paragraphs are stored one per article, so
neither shows it. This cuts the held-out SQuAD train articles (never trained on; see
training/train_reader.py) into stories of 6 paragraphs (~620 words, CNN's length), stores them, asks
held-out questions (training/held_out_questions.py) and, for each retrieval setting, prints how
often the gold story is retrieved, how often a retrieved passage holds the answer, and how often
the quote does, with the reader as shipped.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
from pathlib import Path

from embeddings.articles import make_article
from embeddings.engine import Engine, search_options
from embeddings.evaluate import normalise, read_questions
from embeddings.records import Article
from embeddings.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.train_reader import HELD_OUT  # noqa: E402

PARAGRAPHS = 6
SETTINGS = ((2, 5), (3, 5), (5, 5), (2, 8))  # (per_article, top_k)


def stories(squad: Path) -> tuple[list[Article], dict[str, str]]:
    """The held-out articles as stories of PARAGRAPHS paragraphs, and each paragraph's story id."""
    with gzip.open(squad, "rt", encoding="utf-8") as f:
        data = json.load(f)["data"]
    found, story_of = [], {}
    for a, article in enumerate(data):
        if a % 20 != HELD_OUT:
            continue
        paragraphs = [p["context"] for p in article["paragraphs"]]
        for start in range(0, len(paragraphs), PARAGRAPHS):
            part = paragraphs[start : start + PARAGRAPHS]
            story = f"{article['title']}-{start // PARAGRAPHS}"
            title = article["title"].replace("_", " ")
            found.append(make_article(id=story, title=title, text="\n\n".join(part), source=str(squad)))
            story_of.update(dict.fromkeys((" ".join(p.split()) for p in part), story))
    return found, story_of


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/squad11_train/train-v1.1.json.gz"))
    parser.add_argument("--questions", required=True, help="held_out_questions.py's output")
    args = parser.parse_args()
    articles, story_of = stories(Path(args.data))
    questions = read_questions(Path(args.questions))
    words = sum(len(a.text.split()) for a in articles) / len(articles)
    print(f"{len(articles)} stories of {words:.0f} words on average; {len(questions)} questions\n")
    print("| per_article | top_k | gold story retrieved | a passage holds the answer | the quote holds it |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as store:
        settings = load_settings().replace(store=Path(store), reader=True)
        engine = Engine(settings)
        engine.ingest_items(articles, wait=60)
        for per_article, top_k in SETTINGS:
            engine.settings = settings.replace(per_article=per_article, top_k=top_k)
            story = passage = quote = 0
            for q in questions:
                answers = [normalise(a) for a in q.answers]

                def holds(text: str, answers: list[str] = answers) -> bool:
                    return any(a in normalise(text) for a in answers)

                hits = engine.searcher.search(q.question, search_options(engine.settings))[:top_k]
                gold = story_of.get(" ".join(q.context.split()))
                story += any(h.article.id == gold for h in hits)
                passage += any(holds(h.chunk.text) for h in hits)
                quote += holds(engine.ask(q.question).sentence)
            n = max(len(questions), 1)
            print(f"| {per_article} | {top_k} | {story / n:.3f} | {passage / n:.3f} | {quote / n:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
