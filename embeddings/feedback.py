"""Votes on answers (👍 / 👎 in Discord), kept in the store's SQLite beside the articles.

One vote per person per answer, changeable: the latest click wins. People are recorded as a keyed
hash of their user id (the key is made once per store and kept in it), never the id itself. The
export writes lines ``newsbot eval`` reads: a 👍 answer becomes a question whose answer is the quoted
sentence and whose article is the one cited; a 👎 one is written without answers or article, to be
reviewed and labelled by hand (as it stands, eval counts it as a question the bot should decline).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from embeddings.records import Answer
from embeddings.store import DB_NAME, connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    answer_key TEXT NOT NULL, user_hash TEXT NOT NULL, guild INTEGER NOT NULL,
    question TEXT NOT NULL, answer TEXT NOT NULL, answered INTEGER NOT NULL,
    passage_ids TEXT NOT NULL, article_ids TEXT NOT NULL,
    vote INTEGER NOT NULL, time REAL NOT NULL,
    PRIMARY KEY (answer_key, user_hash)
);
"""
UP, DOWN = 1, -1


@dataclass(frozen=True)
class Counts:
    up: int = 0
    down: int = 0
    answers: int = 0  # answers with at least one vote

    def __str__(self) -> str:
        return f"{self.up} 👍, {self.down} 👎 on {self.answers} answers"


@contextmanager
def _open(root: Path) -> Iterator[sqlite3.Connection]:
    db = connect(Path(root) / DB_NAME)
    try:
        db.executescript(SCHEMA)
        yield db
    finally:
        db.close()


def _key(db: sqlite3.Connection) -> bytes:
    row = db.execute("SELECT value FROM meta WHERE key = 'feedback_key'").fetchone()
    if row is None:
        db.execute("INSERT OR IGNORE INTO meta VALUES ('feedback_key', ?)", (secrets.token_hex(32),))
        row = db.execute("SELECT value FROM meta WHERE key = 'feedback_key'").fetchone()
    return bytes.fromhex(row[0])


def user_hash(db: sqlite3.Connection, user_id: int) -> str:
    return hmac.new(_key(db), str(user_id).encode(), hashlib.sha256).hexdigest()[:32]


def record_vote(root: Path, answer_key: str, answer: Answer, *, user_id: int, guild: int, vote: int) -> None:
    """Store (or change) one person's vote on one answer."""
    if vote not in (UP, DOWN):
        raise ValueError(f"a vote is {UP} or {DOWN}, not {vote}")
    with _open(root) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    answer_key,
                    user_hash(db, user_id),
                    guild,
                    answer.question,
                    answer.text,
                    int(answer.answered),
                    json.dumps([c.passage_id for c in answer.citations]),
                    json.dumps([c.article.id for c in answer.citations]),
                    vote,
                    time.time(),
                ),
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def counts(root: Path) -> Counts:
    """Votes so far, read-only (`stats` works on a store this user may not write)."""
    if not (Path(root) / DB_NAME).exists():
        return Counts()
    db = connect(Path(root) / DB_NAME, readonly=True)
    try:
        up, down, answers = db.execute(
            "SELECT COALESCE(SUM(vote = 1), 0), COALESCE(SUM(vote = -1), 0), COUNT(DISTINCT answer_key) "
            "FROM feedback"
        ).fetchone()
    except sqlite3.OperationalError:  # no feedback table: nobody voted yet
        return Counts()
    finally:
        db.close()
    return Counts(int(up), int(down), int(answers))


def export(root: Path, out: Path) -> int:
    """Write every voted answer as an eval line (see the module doc); returns how many."""
    with _open(root) as db:
        rows = db.execute(
            "SELECT answer_key, question, answer, answered, passage_ids, article_ids, guild, "
            "SUM(vote = 1), SUM(vote = -1), MAX(time) FROM feedback GROUP BY answer_key ORDER BY MAX(time)"
        ).fetchall()
    with out.open("w", encoding="utf-8") as handle:
        for key, question, text, answered, passages, articles, guild, up, down, when in rows:
            good = up > down and bool(answered)
            record = {
                "question": question,
                "answers": [text] if good else [],
                "article_id": json.loads(articles)[0] if good and json.loads(articles) else "",
                "vote": "up" if good else "down",
                "up": up,
                "down": down,
                "bot_answer": text,
                "passage_ids": json.loads(passages),
                "cited_articles": json.loads(articles),
                "guild": guild,
                "answer_key": key,
                "time": when,
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(rows)
