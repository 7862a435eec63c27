"""The keyword side: BM25 over the passages with SQLite's FTS5, inside the store's own database.

Keeping the keyword index in the same SQLite file as the passages means it changes in the same
transactions: adding ten articles adds their rows and nothing else, a crash can never leave it out
of step with the vectors' rows, and a reader's snapshot covers both. The table is contentless (the
text already lives in ``articles``), so a passage is removed by handing FTS5 the text it indexed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

import bm25s
import numpy as np
import Stemmer

TABLE = "passages_fts"
# Porter stemming and diacritics folding for the documents; the query goes through the same tokenizer.
SCHEMA = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING fts5("
    "text, content='', tokenize='porter unicode61 remove_diacritics 2')"
)

_STEMMER = Stemmer.Stemmer("english")


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Stemmed words without stop words, for comparing a question's wording with sentences'."""
    return bm25s.tokenize(
        list(texts), stopwords="en", stemmer=_STEMMER, return_ids=False, show_progress=False
    )


def passage_text(title: str, passage: str) -> str:
    """What BM25 sees of a passage: the article's title, then the passage."""
    return f"{title}. {passage}"


def index_passages(db: sqlite3.Connection, rows: Iterable[tuple[int, str]]) -> None:
    """Add (passage id, text) rows; the caller's transaction makes them visible with the passages."""
    db.executemany(f"INSERT INTO {TABLE} (rowid, text) VALUES (?, ?)", rows)


def unindex_passages(db: sqlite3.Connection, rows: Iterable[tuple[int, str]]) -> None:
    """Remove (passage id, text) rows; ``text`` must be exactly what :func:`index_passages` was given."""
    db.executemany(f"INSERT INTO {TABLE} ({TABLE}, rowid, text) VALUES ('delete', ?, ?)", rows)


def match_query(question: str) -> str | None:
    """An FTS5 query matching passages that share any content word with the question."""
    tokens = bm25s.tokenize([question], stopwords="en", return_ids=False, show_progress=False)
    words = dict.fromkeys(tokens[0])
    if not words:
        return None
    # Tokens are runs of word characters, so quoting each one is all the escaping FTS5 needs.
    return " OR ".join(f'"{word}"' for word in words)


def search(db: sqlite3.Connection, question: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """BM25 scores (higher is better) and passage ids, best first."""
    query = match_query(question)
    if query is None or k <= 0:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    rows = db.execute(
        f"SELECT rowid, -bm25({TABLE}) FROM {TABLE} WHERE {TABLE} MATCH ? ORDER BY rank LIMIT ?",
        (query, k),
    ).fetchall()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    scores = np.fromiter((r[1] for r in rows), dtype=np.float32, count=len(rows))
    return scores, ids


def indexed_ids(db: sqlite3.Connection) -> list[int]:
    """Every passage id in the keyword index (for integrity checks)."""
    return [r[0] for r in db.execute(f"SELECT rowid FROM {TABLE}")]
