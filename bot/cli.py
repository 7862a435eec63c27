"""`newsbot`: ingest articles, ask questions, serve the Discord bot, watch folders, evaluate."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.render import byline, corrections_line, quote_text
from embeddings.records import Answer, Skip

if TYPE_CHECKING:
    from embeddings.engine import Engine
    from embeddings.settings import Settings

EXIT_ERROR = 2
BATCH_PASSAGES = 1024  # embeddings.reembed.BATCH_PASSAGES, without importing the pipeline for --help

DESCRIPTION = """\
Ask questions about news articles and get short answers that cite their passages.

Typical use:
  newsbot ingest articles/            # embed new and changed articles into the store
  newsbot ask "Who opposed the ABM amendment?"
  newsbot reembed                     # after changing the encoder: re-embed the stored passages
  DISCORD_TOKEN=... newsbot serve     # answer in Discord (see `newsbot serve --help`)
"""

SERVE_HELP = """\
Run the Discord bot. The token is read only from the DISCORD_TOKEN environment variable.

Setting up the Discord side once:
  1. https://discord.com/developers/applications -> New Application -> Bot: reset and copy the token.
  2. Bot -> Privileged Gateway Intents: enable MESSAGE CONTENT (needed to read @mentions, questions in
     answer channels, follow-up replies, and the links and files shared in article channels; /ask and
     /add work without it).
  3. OAuth2 -> URL Generator: scopes `bot` and `applications.commands`; bot permissions: View Channels,
     Send Messages, Send Messages in Threads, Create Public Threads, Embed Links, Read Message History,
     Add Reactions. Open the generated URL to invite the bot to your server.
  4. Set guild_id in config/newsbot.toml (or NEWSBOT_GUILD_ID) so slash commands appear at once;
     without it they are registered globally, which Discord may take up to an hour to show.
"""


def _settings(args: argparse.Namespace) -> Settings:
    from embeddings.settings import load_settings

    overrides: dict[str, Any] = {}
    if getattr(args, "store", None):
        overrides["store"] = Path(args.store)
    return load_settings(Path(args.config) if args.config else None, **overrides)


def _engine(args: argparse.Namespace) -> Engine:
    from embeddings.engine import Engine

    return Engine(_settings(args))


def _warn(skip: Skip) -> None:
    print(f"warning: skipped {skip}", file=sys.stderr)


# What `--ray` takes as a cluster address; anything else right after it is the first PATH.
_RAY_ADDRESS = re.compile(r"(local|auto|[a-z][a-z0-9+.-]*://\S+|\[?[\w.:-]+\]?:\d+)", re.IGNORECASE)


def ray_target(ray: str | None, paths: Sequence[str]) -> tuple[str | None, list[str]]:
    """Split `--ray [ADDRESS] PATH...`: argparse gives `--ray articles/` the folder as the address."""
    if ray is not None and not _RAY_ADDRESS.fullmatch(ray):
        return "local", [ray, *paths]
    return ray, list(paths)


EXIT_SKIPPED = 1


def cmd_ingest(args: argparse.Namespace) -> int:
    """Exit 0 when every input was read, 1 when some were skipped (the rest are stored), 2 when a
    named path does not exist (nothing is ingested: with --prune a typo would remove articles) or
    nothing at all could be ingested."""
    ray, paths = ray_target(args.ray, args.paths)
    if not paths:
        print("error: give at least one PATH to ingest", file=sys.stderr)
        return EXIT_ERROR
    missing = [p for p in paths if not os.path.lexists(os.path.expanduser(p))]
    if missing:
        print(f"error: no such file or folder: {', '.join(missing)} (nothing was ingested)", file=sys.stderr)
        return EXIT_ERROR
    engine = _engine(args)
    created = not engine.has_store()
    report = engine.ingest(
        paths, prune=args.prune, progress=not args.quiet, wait=args.wait, on_skip=_warn, ray=ray
    )
    if created:
        print(f"created a new store at {engine.store_path}", file=sys.stderr)
    print(report.summary())
    if report.skipped and not report.read:
        print(
            "error: nothing could be ingested: every input was skipped (see the warnings above)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return EXIT_SKIPPED if report.skipped else 0


def require_store(settings: Settings) -> None:
    """A named store must exist: only the default one is created on first use (by `ask`, `serve`)."""
    from embeddings.store import DB_NAME, StoreError

    if not settings.default_store and not (Path(settings.store) / DB_NAME).exists():
        raise StoreError(
            f"no store at {settings.store}: check the path (--store, NEWSBOT_STORE or the settings file), "
            f"or create it with `newsbot --store {settings.store} ingest PATH`"
        )


def cmd_reembed(args: argparse.Namespace) -> int:
    engine = _engine(args)
    print(engine.reembed(progress=not args.quiet, wait=args.wait, batch_passages=args.batch).summary())
    return 0


def format_answer(answer: Answer) -> str:
    lines = [f"Q: {answer.question}"]
    if answer.corrections:
        lines.append(f"   ({corrections_line(answer)})")
    if answer.answered:
        lines.append(f"A: {' '.join(answer.text.split())} [1]")
    else:
        lines.append(f"A: {answer.text}")
        if answer.citations:
            lines.append("The closest passages:")
    for citation in answer.citations:
        article = citation.article
        where = article.link or _display_path(article.source)
        lines.append(f"[{citation.n}] {byline(article)} ({where})")
        lines.append(f'    "{quote_text(citation)}"')
    return "\n".join(lines)


def answer_json(answer: Answer) -> dict[str, Any]:
    return {
        "question": answer.question,
        "answered": answer.answered,
        "answer": answer.text if answer.answered else None,
        "message": answer.text,
        # With the reader on (the default), its probability that the quoted sentence answers; without
        # it, the features' score, not a probability (docs/quality.md).
        "answer_score": round(answer.confidence, 4),
        "read_as": dict(answer.corrections),
        # The words of the answer that answer, when the reader marks them surely enough (answer_words).
        "answer_words": answer.text[slice(*answer.words)] if answer.words else None,
        "citations": [
            {
                "n": c.n,
                "title": c.article.title,
                "author": c.article.author,
                "date": c.article.published,
                "source": c.article.link or c.article.source,
                "article_id": c.article.id,
                "passage": c.passage,
                "answer_start": c.answer_start,
                "answer_end": c.answer_end,
                "score": round(c.score, 4),
            }
            for c in answer.citations
        ],
    }


def _display_path(source: str) -> str:
    try:
        return os.path.relpath(source)
    except ValueError:
        return source


def cmd_ask(args: argparse.Namespace) -> int:
    from embeddings.answer import check_question
    from embeddings.engine import Engine

    settings = _settings(args)
    question = check_question(" ".join(args.question), settings.max_question_chars)
    require_store(settings)
    engine = Engine(settings)
    report = engine.ensure_default_corpus()
    if report is not None and not args.json:
        print(f"(no store yet: indexed the sample article into {engine.store_path})", file=sys.stderr)
    answer = engine.ask(question)
    print(
        json.dumps(answer_json(answer), ensure_ascii=False, indent=2) if args.json else format_answer(answer)
    )
    return 0


def when(epoch: float | None, now: float | None = None) -> tuple[str, str]:
    """An epoch time as ISO 8601 (UTC, to the second) and as "3 minutes ago"."""
    if epoch is None:
        return "never", ""
    from datetime import UTC, datetime

    iso = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return iso, ago(time.time() - epoch if now is None else now - epoch)


def ago(seconds: float) -> str:
    if seconds < 0:
        return "in the future (is this machine's clock right?)"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def cmd_chat(args: argparse.Namespace) -> int:
    """Questions line by line from standard input, each in the context of the ones before."""
    from embeddings.answer import QuestionError
    from embeddings.conversation import Conversation
    from embeddings.engine import Engine

    settings = _settings(args)
    require_store(settings)
    engine = Engine(settings)
    report = engine.ensure_default_corpus()
    if report is not None and not args.json:
        print(f"(no store yet: indexed the sample article into {engine.store_path})", file=sys.stderr)
    conversation = Conversation()
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        if not line.strip():
            continue
        try:
            answer = engine.ask(line, conversation=conversation)
        except QuestionError as err:
            # One bad line is not the end of the conversation.
            print(f"error: {err}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(answer_json(answer), ensure_ascii=False), flush=True)
        else:
            print(format_answer(answer) + "\n", flush=True)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from embeddings.store import DB_NAME, damaged, open_readonly, read_stats

    settings = _settings(args)
    root = Path(settings.store)

    if not (root / DB_NAME).exists():
        print(f"error: no store at {root}: run `newsbot --store {root} ingest PATH` first", file=sys.stderr)
        return EXIT_ERROR
    from embeddings import feedback

    # Read-only, without loading the model: any user who may read the store may count it.
    db = open_readonly(root, model=None, dim=None)
    try:
        stats = read_stats(db, root)
        votes = feedback.counts(root)
    except sqlite3.DatabaseError as err:
        raise damaged(root, err) from None
    finally:
        db.close()
    stats["feedback"] = {"up": votes.up, "down": votes.down, "answers": votes.answers}
    iso, relative = when(stats["updated"])  # type: ignore[arg-type]
    stats["updated"] = iso
    if args.json:
        stats["updated_ago"] = relative
        print(json.dumps(stats, indent=2))
    else:
        stats["updated"] = f"{iso} ({relative})" if relative else iso
        for key, value in stats.items():
            print(f"{key:>11}: {votes if key == 'feedback' else value}")
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from embeddings import feedback
    from embeddings.store import DB_NAME

    settings = _settings(args)
    if not (Path(settings.store) / DB_NAME).exists():
        print(f"error: no store at {settings.store}: run `newsbot ingest PATH` first", file=sys.stderr)
        return EXIT_ERROR
    if args.export:
        written = feedback.export(Path(settings.store), Path(args.export))
        print(f"wrote {written} rated answers to {args.export} (👎 ones have no answers yet: label them)")
    else:
        print(feedback.counts(Path(settings.store)))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.client import run_bot

    settings = _settings(args)
    require_store(settings)
    return run_bot(settings)


def cmd_watch(args: argparse.Namespace) -> int:
    from bot.watch import run_watch

    return run_watch(_settings(args), args.folders, args.feed, once=args.once, wait=args.wait)


def cmd_eval(args: argparse.Namespace) -> int:
    from embeddings.evaluate import main as eval_main

    settings = _settings(args)
    if not args.corpus:
        require_store(settings)
    return eval_main(args, settings)


def cmd_bench(args: argparse.Namespace) -> int:
    import runpy

    from embeddings.settings import PROJECT_ROOT

    script = PROJECT_ROOT / "benchmarks" / f"{args.name}.py"
    if not script.exists():
        print(f"error: no benchmark {args.name!r} in {script.parent}", file=sys.stderr)
        return EXIT_ERROR
    sys.argv = [str(script), *args.args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newsbot", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="settings file (default: config/newsbot.toml, or NEWSBOT_CONFIG)")
    parser.add_argument("--store", help="store directory (default: NEWSBOT_STORE, or the settings' store)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="embed new and changed articles from files and folders")
    # "*", not "+": `--ray PATH` hands the first path to --ray, and cmd_ingest gives it back.
    p.add_argument("paths", nargs="*", metavar="PATH", help=".txt .md .html .json .jsonl files or folders")
    p.add_argument("--prune", action="store_true", help="remove stored articles whose file is gone")
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another ingest on the same store to finish",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="embed through Ray Data: alone, on a Ray started here for this ingest; with an address "
        "(auto, HOST:6379, ray://HOST:10001), on that running cluster (README: Backfills on Ray)",
    )
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser(
        "reembed",
        help="re-embed every stored passage with the current encoder (after changing backend or model file)",
        description="Re-embed every stored passage from the text the store holds (no file is read "
        "again), with the encoder the settings choose. Safe to interrupt: the next run carries on.",
    )
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait for another writer")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--batch",
        type=int,
        default=BATCH_PASSAGES,
        metavar="PASSAGES",
        help=f"passages per transaction: what an interruption can cost (default {BATCH_PASSAGES})",
    )
    p.set_defaults(func=cmd_reembed)

    p = sub.add_parser("ask", help="answer a question from the stored articles, with citations")
    p.add_argument("question", nargs="+", help="the question (quote it, or not)")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser(
        "chat",
        help="answer questions line by line from standard input, each in the context of the ones before",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (a line) per answer")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("feedback", help="the 👍 / 👎 votes on the bot's answers")
    p.add_argument(
        "--export", metavar="FILE.jsonl", help="write the rated answers as lines `newsbot eval` reads"
    )
    p.set_defaults(func=cmd_feedback)

    p = sub.add_parser("stats", help="what the store holds")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser(
        "serve",
        help="run the Discord bot",
        description=SERVE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("watch", help="ingest files as they land in folders, and poll feeds")
    p.add_argument("folders", nargs="*", metavar="FOLDER")
    p.add_argument("--feed", action="append", default=[], metavar="URL", help="an RSS or Atom feed to poll")
    p.add_argument("--once", action="store_true", help="one pass over folders and feeds, then exit")
    p.add_argument(
        "--wait",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long a pass waits for another ingest on the same store (default 300)",
    )
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("eval", help="measure retrieval and answer quality on a question file")
    p.add_argument(
        "qa",
        nargs="+",
        metavar="QA.jsonl",
        help="lines with question, answers (empty: unanswerable) and article_id or context",
    )
    p.add_argument("--corpus", help="index this corpus into a temporary store first")
    p.add_argument("--fusion", action="append", help="compare these fusions (default: the settings')")
    p.add_argument("--reader", action="store_true", help="also a row with the reader choosing and abstaining")
    p.add_argument(
        "--rerank", type=int, default=0, help="also a row with the reader reranking this many passages"
    )
    p.add_argument("--out", help="also write the results as JSON here")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="run a benchmark from benchmarks/ and print its table")
    p.add_argument("name", help="all, ingest_ask, encoders, scale, discord_latency, tune_fusion, tune_answer")
    p.add_argument("args", nargs=argparse.REMAINDER, help="passed to the benchmark (try --help)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from embeddings.answer import QuestionError
    from embeddings.encoder import EncoderError
    from embeddings.settings import SettingsError
    from embeddings.store import StoreError

    try:
        return int(args.func(args))
    except BrokenPipeError:
        # Whoever read our output (head, grep -m1) stopped early: nothing went wrong here.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (QuestionError, StoreError, SettingsError, EncoderError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except sqlite3.DatabaseError as err:
        # Damage found past the open (pages read later): one line, and nothing written.
        print(
            f"error: the store's database is damaged ({err}): restore it from a backup, "
            "or ingest the articles into a new --store",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
