"""The on-disk store: SQLite is the truth, the FAISS and keyword indexes are derived from it.

Articles, their sources, passages and passage vectors live in one SQLite database, written one
transaction per batch, so a crash leaves every article in its old or its new state. Each write
bumps a generation number, and every passage row and every removal (a tombstone in ``removed``)
carries the generation that made it, so "what changed since generation B" is one indexed query: a
saved FAISS file of generation B plus those changes is the vector index of any later generation
(see index.py). The keyword index records the generation it last caught up with, and the next
writer brings it back in step (see keyword.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeddings.articles import normalized_hash
from embeddings.records import Article, Chunk

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, author TEXT NOT NULL, published TEXT NOT NULL,
    source TEXT NOT NULL, url TEXT NOT NULL, text TEXT NOT NULL,
    content_hash TEXT NOT NULL, norm_hash TEXT NOT NULL, updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS articles_norm ON articles (norm_hash);
-- Every place an article was seen: a file, a JSON record or a feed entry. Duplicates share one article.
CREATE TABLE IF NOT EXISTS sources (
    item TEXT PRIMARY KEY, article_id TEXT NOT NULL, origin TEXT NOT NULL, content_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sources_article ON sources (article_id);
CREATE INDEX IF NOT EXISTS sources_origin ON sources (origin);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, article_id TEXT NOT NULL, ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL, end INTEGER NOT NULL, vector BLOB NOT NULL,
    -- The passage's sentences: int32 (start, end) pairs into its text, and float16 unit vectors.
    sentences BLOB NOT NULL, sentence_vectors BLOB NOT NULL,
    generation INTEGER NOT NULL  -- the store generation that wrote it
);
CREATE INDEX IF NOT EXISTS chunks_article ON chunks (article_id, ordinal);
CREATE INDEX IF NOT EXISTS chunks_generation ON chunks (generation);
-- Passages removed since the oldest saved FAISS file, and the generation that removed them.
CREATE TABLE IF NOT EXISTS removed (id INTEGER NOT NULL, generation INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS removed_generation ON removed (generation);
-- A checksum of each saved FAISS file: a file that no longer matches is rebuilt from the vectors here.
CREATE TABLE IF NOT EXISTS index_files (
    generation INTEGER PRIMARY KEY, size INTEGER NOT NULL, sha256 TEXT NOT NULL
);
"""

# Each source keeps the title and byline it was seen with: when the source an article was cited by
# leaves it (edited or deleted), the article is cited by one that still holds it.
SOURCE_FIELDS = ("title", "author", "published", "source", "url")

# Columns and tables added since the first schema, applied to older stores when they are opened for
# writing (readers cope with their absence).
MIGRATIONS = (
    # The Discord guild an item was shared in (0: a folder or feed, seen everywhere).
    ("sources", "guild", "ALTER TABLE sources ADD COLUMN guild INTEGER NOT NULL DEFAULT 0"),
    *(("sources", c, f"ALTER TABLE sources ADD COLUMN {c} TEXT") for c in SOURCE_FIELDS),
)

# Items shared in a Discord guild have ids "guild:<guild id>:<url or attachment>".
SHARED_PREFIX = "guild:"

DB_NAME = "newsbot.sqlite"
# meta key of an unfinished `newsbot reembed`: "<target encoder identity>\t<last passage id done>".
REEMBED_KEY = "reembed"
LOCK_NAME = "write.lock"


class StoreError(RuntimeError):
    """The store cannot be used as asked; the message says why and what to do."""


class StoreBusy(StoreError):
    """Another process holds the writer lock."""


@dataclass(frozen=True)
class Pending:
    """An item to store: embedded passages, or ``None`` to attach it to an identical stored story."""

    item: Article
    origin: str
    chunks: Sequence[Chunk] | None = None
    vectors: np.ndarray | None = None
    sentence_vectors: np.ndarray | None = None  # every chunk's sentences, chunk by chunk


@dataclass
class Delta:
    """What a write changed, for keeping the keyword index in step."""

    generation: int  # the generation the write creates
    added_texts: list[tuple[int, str]] = field(default_factory=list)  # what the keyword index reads
    removed_ids: list[int] = field(default_factory=list)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    check_database_file(path)
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    if readonly:
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.OperationalError:
            # A WAL database whose -shm file this user cannot create (a read-only folder, no writer
            # running): SQLite can only read it as an immutable file, which is what it is for us.
            conn.close()
            conn = sqlite3.connect(
                f"file:{path}?mode=ro&immutable=1",
                uri=True,
                check_same_thread=False,
                isolation_level=None,
                timeout=30,
            )
    else:
        # WAL lets the bot read a consistent snapshot while an ingest writes.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def check_database_file(path: Path) -> None:
    """A zero-byte database is a lost one (truncated, or a copy that failed), not an empty store."""
    with contextlib.suppress(FileNotFoundError):
        if os.stat(path).st_size == 0:
            raise StoreError(
                f"{path} is empty (0 bytes): the store's database was truncated or never written; "
                "restore it from a backup, or delete it and ingest the articles again"
            )


def create_database(path: Path) -> None:
    """Create the database beside its place, then link it in whole: a process opening the store at the
    same moment sees either no file or one with its tables, never the empty file SQLite starts with
    (which :func:`check_database_file` rightly refuses)."""
    partial = path.with_name(f"{path.name}.new-{os.getpid()}")
    conn = connect(partial)
    try:
        conn.executescript(SCHEMA)
        migrate(conn)  # born with today's columns: no process needs to add them later
    finally:
        conn.close()
    try:
        os.link(partial, path)
    except FileExistsError:
        pass  # another process created it first; theirs is as good
    finally:
        partial.unlink()


def damaged(root: Path, err: sqlite3.DatabaseError) -> StoreError:
    """The one-line error for a database SQLite finds damaged (or that is no database at all)."""
    return StoreError(
        f"the store's database {Path(root) / DB_NAME} is damaged ({err}): restore it from a backup, "
        "or ingest the articles into a new --store"
    )


def not_writable(root: Path, err: OSError | sqlite3.Error) -> StoreError:
    if isinstance(err, OSError):
        where = f" ({err.filename})" if err.filename else ""
        reason = (err.strerror or str(err)).lower()
    else:
        where, reason = f" ({Path(root) / DB_NAME}: {err})", "permission denied"
    return StoreError(
        f"cannot write to store {root}: {reason}{where}; run as a user who may write there, "
        "or pass another --store"
    )


def write_failed(root: Path, err: sqlite3.Error | OSError) -> StoreError:
    """The one-line error for a write that failed part-way: the transaction rolled back, so what was
    stored before is unchanged. A full disk (or a file-size limit) is the usual cause."""
    if isinstance(err, PermissionError) or "readonly" in str(err):
        return not_writable(root, err)
    if isinstance(err, sqlite3.DatabaseError) and not isinstance(err, sqlite3.OperationalError):
        return damaged(root, err)
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return StoreError(
        f"writing to store {root} failed ({reason}): is the disk full, or a file-size limit reached? "
        "Free some space and ingest again; what was stored before is unchanged"
    )


def check_model(db: sqlite3.Connection, root: Path, model: str, dim: int, encoder: str | None = None) -> bool:
    """Whether the store records a model; a clear error when it is another one than the settings', or
    when the store records an ``encoder`` (``Encoder.identity``) other than the given one."""
    stored = dict(
        db.execute("SELECT key, value FROM meta WHERE key IN ('model', 'dim', 'encoder')").fetchall()
    )
    if not stored:
        return False
    if stored.get("model") != model or int(stored.get("dim", 0)) != dim:
        raise StoreError(
            f"store {root} was built with model {stored.get('model')!r} ({stored.get('dim')} dims), "
            f"but the settings ask for {model!r} ({dim} dims): use that model, "
            "or another --store for this one"
        )
    if encoder is not None and stored.get("encoder", encoder) != encoder:
        raise StoreError(
            f"store {root} was embedded by {stored['encoder']!r}, but the settings' encoder is "
            f"{encoder!r}: run `newsbot reembed` to re-embed it with this one, "
            "or go back to the settings that built it"
        )
    return True


def _missing_columns(db: sqlite3.Connection) -> list[str]:
    """The statements of MIGRATIONS whose column this store lacks."""
    return [
        statement
        for table, column, statement in MIGRATIONS
        if column not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
    ]


def migrate(db: sqlite3.Connection) -> None:
    """Add what later versions added to an existing store; a no-op on an up-to-date one."""
    if _missing_columns(db):
        # Two writers opening an older store at once both saw the column missing, and the second's
        # ALTER failed ("duplicate column name"): the check is repeated under the write lock.
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _missing_columns(db):
                db.execute(statement)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    # Few items are shared in guilds: this finds them without reading every source.
    db.execute("CREATE INDEX IF NOT EXISTS sources_guild ON sources (guild) WHERE guild > 0")


def needs_migration(db: sqlite3.Connection) -> bool:
    """Whether a store lacks columns this newsbot adds (read-only: a reader asks before migrating)."""
    return bool(_missing_columns(db))


def shared_item_id(guild: int, key: str) -> str:
    """The source item id of something shared in a guild (a link, an attachment)."""
    return f"{SHARED_PREFIX}{guild}:{key}"


def guild_of_item(item_id: str) -> int:
    """The guild an item was shared in; 0 for folders and feeds."""
    if not item_id.startswith(SHARED_PREFIX):
        return 0
    head = item_id[len(SHARED_PREFIX) :].partition(":")[0]
    return int(head) if head.isdigit() else 0


def scoped_articles(db: sqlite3.Connection) -> dict[str, frozenset[int]]:
    """Articles only guilds can see (every source of theirs was shared in a guild), and which guilds."""
    if "guild" not in {r[1] for r in db.execute("PRAGMA table_info(sources)")}:
        return {}  # a store from before sharing, opened read-only (a writer adds the column)
    rows = db.execute(
        "SELECT article_id, group_concat(guild) FROM sources "
        "WHERE article_id IN (SELECT article_id FROM sources WHERE guild > 0) "
        "GROUP BY article_id HAVING MIN(guild) > 0"
    ).fetchall()
    return {article_id: frozenset(int(g) for g in guilds.split(",")) for article_id, guilds in rows}


def article_from_row(row: Sequence) -> Article:
    return Article(
        id=row[0],
        title=row[1],
        author=row[2],
        published=row[3],
        source=row[4],
        url=row[5],
        text=row[6],
        content_hash=row[7],
    )


ARTICLE_COLUMNS = "id, title, author, published, source, url, text, content_hash"


class Store:
    """One store directory. Reading is always allowed; writing needs :meth:`writer`."""

    def __init__(
        self, root: Path, *, model: str, dim: int, encoder: str | None = None, create: bool = True
    ) -> None:
        """``encoder`` is the identity of the encoder that will embed questions or passages for this
        store (``Encoder.identity``): a store embedded by another is refused. None skips that check
        (``newsbot reembed``, which replaces the vectors)."""
        self.root = Path(root)
        self.model = model
        self.dim = dim
        self.encoder = encoder
        db = self.root / DB_NAME
        if not db.exists() and not create:
            raise StoreError(f"no store at {self.root}: run `newsbot ingest PATH` first")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not db.exists():
                create_database(db)
            self.db = connect(db)
            self.db.executescript(SCHEMA)
            migrate(self.db)
        except sqlite3.OperationalError as err:
            if "readonly" in str(err) or "unable to open" in str(err):
                raise not_writable(self.root, err) from None
            if "no such column" not in str(err):
                raise StoreError(f"cannot open store {self.root}: {err}") from None
            raise StoreError(
                f"store {self.root} was made by an older newsbot whose tables this one cannot read: "
                "ingest the articles into a new --store"
            ) from None
        except sqlite3.DatabaseError as err:
            raise damaged(self.root, err) from None
        except PermissionError as err:
            raise not_writable(self.root, err) from None
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"cannot open store {self.root}: {err}") from None
        self._check_model()
        self._lock_file: int | None = None

    # -- identity ---------------------------------------------------------------------------
    def _check_model(self) -> None:
        if not check_model(self.db, self.root, self.model, self.dim, self.encoder):
            with self.transaction():
                self.db.executemany(
                    "INSERT OR IGNORE INTO meta VALUES (?, ?)",
                    [("model", self.model), ("dim", str(self.dim)), ("generation", "0")],
                )
        if self.encoder is not None and "encoder" not in self.meta("encoder"):
            # New, or from a newsbot that did not record its encoder: every such store was embedded by
            # the int8 file now shipped (byte for byte what was exported at first use) or by torch,
            # whose vectors it matches to a cosine of 0.99, so the current encoder is taken as its own.
            with self.transaction():
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('encoder', ?)", (self.encoder,))

    def meta(self, *keys: str) -> dict[str, str]:
        marks = ", ".join("?" * len(keys))
        return dict(self.db.execute(f"SELECT key, value FROM meta WHERE key IN ({marks})", keys).fetchall())

    @property
    def generation(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    # -- writing ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def writer(self, wait: float = 0.0) -> Iterator[Store]:
        """Hold the store's single-writer lock; wait up to ``wait`` seconds for another writer."""
        try:
            fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError as err:
            raise not_writable(self.root, err) from None
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
                    os.close(fd)
                    raise StoreBusy(
                        f"store {self.root} is being written by pid {holder}; "
                        "wait for that ingest to finish (or pass --wait SECONDS)"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_file = fd
        try:
            self._check_no_reembed()
            yield self
        finally:
            self._lock_file = None
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _check_no_reembed(self) -> None:
        """A reembed left unfinished must be finished before the old encoder writes again: its progress
        is a position in passage-id order, which passages written meanwhile would fall behind."""
        target = self.meta(REEMBED_KEY).get(REEMBED_KEY, "").split("\t")[0]
        if self.encoder is not None and target and target != self.encoder:
            raise StoreError(
                f"store {self.root} is half re-embedded to {target!r}: run `newsbot reembed` with the "
                "settings that started it to finish"
            )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _require_writer(self) -> None:
        if self._lock_file is None:
            raise StoreError("writing needs the writer lock: use `with store.writer():`")

    def stored_hash(self, item_id: str) -> str | None:
        row = self.db.execute("SELECT content_hash FROM sources WHERE item = ?", (item_id,)).fetchone()
        return row[0] if row else None

    def find_same_story(self, article: Article) -> str | None:
        """The id of a stored article with the same text, up to case and spacing, held by another source.

        An item's own stored version is not its twin: a new headline (or a fixed typo in the case) of an
        article nobody else holds is a change to embed, not a duplicate to attach.
        """
        row = self.db.execute(
            "SELECT a.id FROM articles a WHERE a.norm_hash = ? AND EXISTS "
            "(SELECT 1 FROM sources s WHERE s.article_id = a.id AND s.item != ?) LIMIT 1",
            (normalized_hash(article.text), article.id),
        ).fetchone()
        return row[0] if row else None

    def write(self, batch: Iterable[Pending]) -> Delta:
        """Store a batch in one transaction: each item ends fully old or fully new."""
        self._require_writer()
        now = time.time()
        with self.transaction() as db:
            delta = Delta(self.generation + 1)
            for pending in batch:
                self._write_one(db, pending, delta, now)
            db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        return delta

    def _write_one(self, db: sqlite3.Connection, pending: Pending, delta: Delta, now: float) -> None:
        item = pending.item
        row = db.execute("SELECT article_id FROM sources WHERE item = ?", (item.id,)).fetchone()
        previous = row[0] if row else None
        if pending.chunks is None:
            target = self.find_same_story(item)
            if target is None:
                raise StoreError(f"{item.source}: nothing stored to attach it to")
        else:
            target = item.id
            taken = db.execute("SELECT 1 FROM sources WHERE article_id = ? AND item != ?", (target, item.id))
            if taken.fetchone():
                # Other sources still hold the old text under this id: the new version gets its own.
                target = f"{item.id}@{item.content_hash[:12]}"
            if target == previous:
                self._delete_article(db, previous, delta)
                previous = None
            db.execute(
                f"INSERT OR REPLACE INTO articles ({ARTICLE_COLUMNS}, norm_hash, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    target,
                    item.title,
                    item.author,
                    item.published,
                    item.source,
                    item.url,
                    item.text,
                    item.content_hash,
                    normalized_hash(item.text),
                    now,
                ),
            )
            assert pending.vectors is not None and len(pending.vectors) == len(pending.chunks)
            vectors = np.ascontiguousarray(pending.vectors, dtype=np.float32)
            assert pending.sentence_vectors is not None
            sentence_vectors = pending.sentence_vectors.astype(np.float16)
            rows, offset = [], 0
            for c, v in zip(pending.chunks, vectors, strict=True):
                n = len(c.sentences)
                spans = np.asarray(c.sentences, dtype=np.int32).reshape(n, 2)
                sv = sentence_vectors[offset : offset + n]
                row = (c.id, target, c.ordinal, c.start, c.end, v.tobytes(), spans.tobytes(), sv.tobytes())
                rows.append((*row, delta.generation))
                offset += n
            db.executemany(
                "INSERT OR REPLACE INTO chunks "
                "(id, article_id, ordinal, start, end, vector, sentences, sentence_vectors, generation) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            delta.added_texts.extend((c.id, passage_text(item.title, c.text)) for c in pending.chunks)
        db.execute(
            "INSERT OR REPLACE INTO sources (item, article_id, origin, content_hash, guild, "
            "title, author, published, source, url) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                item.id,
                target,
                pending.origin,
                item.content_hash,
                guild_of_item(item.id),
                item.title,
                item.author,
                item.published,
                item.source,
                item.url,
            ),
        )
        if previous is not None and previous != target:
            self._collect(db, previous, delta)

    def _collect(self, db: sqlite3.Connection, article_id: str, delta: Delta) -> None:
        """Delete an article that no source refers to any more; one whose cited source left it (an
        edited or deleted copy of a story others still hold) is cited by a remaining source instead."""
        row = db.execute(
            "SELECT s.item, COALESCE(s.title, a.title), COALESCE(s.author, a.author), "
            "COALESCE(s.published, a.published), COALESCE(s.source, s.item), COALESCE(s.url, '') "
            "FROM sources s JOIN articles a ON a.id = s.article_id WHERE s.article_id = ? "
            "ORDER BY (COALESCE(s.source, s.item) = a.source) DESC, s.item LIMIT 1",
            (article_id,),
        ).fetchone()
        if row is None:
            self._delete_article(db, article_id, delta)
            return
        db.execute(
            "UPDATE articles SET title = ?, author = ?, published = ?, source = ?, url = ? "
            "WHERE id = ? AND source != ?",
            (*row[1:], article_id, row[4]),
        )

    @staticmethod
    def _delete_article(db: sqlite3.Connection, article_id: str, delta: Delta) -> None:
        ids = [r[0] for r in db.execute("SELECT id FROM chunks WHERE article_id = ?", (article_id,))]
        db.executemany("INSERT INTO removed VALUES (?, ?)", [(i, delta.generation) for i in ids])
        delta.removed_ids.extend(ids)
        db.execute("DELETE FROM chunks WHERE article_id = ?", (article_id,))
        db.execute("DELETE FROM articles WHERE id = ?", (article_id,))

    def remove_items(self, items: Iterable[str]) -> tuple[int, Delta]:
        """Forget these sources; articles left without any source leave the store."""
        self._require_writer()
        removed = 0
        with self.transaction() as db:
            delta = Delta(self.generation + 1)
            for item in items:
                row = db.execute("SELECT article_id FROM sources WHERE item = ?", (item,)).fetchone()
                if row is None:
                    continue
                db.execute("DELETE FROM sources WHERE item = ?", (item,))
                self._collect(db, row[0], delta)
                removed += 1
            if removed:
                db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        return removed, delta

    def forget_removals(self, through: int) -> None:
        """Drop the tombstones of generations up to ``through``: no saved vector index needs them."""
        self._require_writer()
        with self.transaction() as db:
            db.execute("DELETE FROM removed WHERE generation <= ?", (through,))

    def items_by_origin(self) -> dict[str, list[str]]:
        origins: dict[str, list[str]] = {}
        for item, origin in self.db.execute("SELECT item, origin FROM sources"):
            origins.setdefault(origin, []).append(item)
        return origins

    # -- reading ----------------------------------------------------------------------------
    def stats(self) -> dict[str, object]:
        return read_stats(self.db, self.root)

    def close(self) -> None:
        self.db.close()


def read_stats(db: sqlite3.Connection, root: Path) -> dict[str, object]:
    """What a store holds; ``updated`` is when an article last changed, in seconds since the epoch."""
    articles = db.execute("SELECT COUNT(*), MAX(updated) FROM articles").fetchone()
    meta = dict(db.execute("SELECT key, value FROM meta"))
    return {
        "store": str(root),
        "articles": articles[0],
        "sources": db.execute("SELECT COUNT(*) FROM sources").fetchone()[0],
        "passages": passage_count(db),
        "model": meta.get("model"),
        "dim": int(meta.get("dim", 0)),
        "encoder": meta.get("encoder"),
        "generation": int(meta.get("generation", 0)),
        "updated": articles[1],
    }


def open_readonly(
    root: Path, model: str | None, dim: int | None, encoder: str | None = None
) -> sqlite3.Connection:
    """A read-only connection to an existing store made with this model (any, when None) and, when
    given, embedded by this encoder; reading needs no write access."""
    path = Path(root) / DB_NAME
    if not path.exists():
        raise StoreError(f"no store at {root}: run `newsbot ingest PATH` first")
    try:
        db = connect(path, readonly=True)
        if model is not None and dim is not None:
            check_model(db, root, model, dim, encoder)
        else:
            db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    except sqlite3.DatabaseError as err:
        raise damaged(root, err) from None
    return db


def passage_text(title: str, passage: str) -> str:
    """What the keyword index reads for a passage: the article's title, then the passage."""
    return f"{title}. {passage}"


def passage_texts(db: sqlite3.Connection, ids: Collection[int]) -> Iterator[tuple[int, str]]:
    """The keyword-index text of these passages, as stored."""
    select = (
        "SELECT c.id, a.title, substr(a.text, c.start + 1, c.end - c.start) "
        "FROM chunks c JOIN articles a ON a.id = c.article_id"
    )
    if len(ids) > 10_000:  # one pass over the table beats many lookups
        wanted = set(ids)
        rows: Iterable[tuple] = (r for r in db.execute(select) if r[0] in wanted)
    else:
        rows = (r for chunk_id in ids for r in db.execute(f"{select} WHERE c.id = ?", (chunk_id,)))
    for chunk_id, title, passage in rows:
        yield chunk_id, passage_text(title, passage)


def chunk_ids(db: sqlite3.Connection) -> set[int]:
    return {r[0] for r in db.execute("SELECT id FROM chunks")}


def read_generation(root: Path) -> int:
    """The store's generation, read without opening it for writing; 0 when there is no store."""
    path = Path(root) / DB_NAME
    if not path.exists():
        return 0
    conn = connect(path, readonly=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def read_vectors(db: sqlite3.Connection, dim: int, since: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Passage ids and vectors: all of them in id order, or those written after generation ``since``
    (through the generation index: asking for id order there would make SQLite scan every row)."""
    if since is None:
        rows = db.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
    else:
        rows = db.execute("SELECT id, vector FROM chunks WHERE generation > ?", (since,)).fetchall()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
    return ids, vectors


def removed_since(db: sqlite3.Connection, since: int) -> np.ndarray:
    """Ids of passages removed (or replaced) after generation ``since``."""
    rows = db.execute("SELECT DISTINCT id FROM removed WHERE generation > ?", (since,)).fetchall()
    return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))


def record_index_checksum(db: sqlite3.Connection, generation: int, size: int, sha256: str) -> None:
    """Remember a FAISS file's size and checksum (before it is put in place), forgetting files gone."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("INSERT OR REPLACE INTO index_files VALUES (?, ?, ?)", (generation, size, sha256))
        db.execute(
            "DELETE FROM index_files WHERE generation < (SELECT MIN(generation) FROM (SELECT "
            "generation FROM index_files ORDER BY generation DESC LIMIT 3))"
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def read_index_checksums(root: Path) -> dict[int, tuple[int, str]]:
    """Generation -> (size, sha256) of the saved FAISS files, read afresh: a reader's snapshot may
    predate the row of a file saved just after it. A store from before checksums has none."""
    path = Path(root) / DB_NAME
    conn = connect(path, readonly=True)
    try:
        rows = conn.execute("SELECT generation, size, sha256 FROM index_files").fetchall()
    except sqlite3.OperationalError:  # no such table: written by an older newsbot, opened read-only
        return {}
    finally:
        conn.close()
    return {int(g): (int(size), str(digest)) for g, size, digest in rows}


def passage_count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
