"""The keyword side: BM25 over the passages with tantivy, in the store's ``keyword/`` folder.

tantivy adds and deletes documents in place (segments, merged in the background), so ten new
articles cost ten articles' worth of indexing, and it answers a top-50 query in about a millisecond
at 100k passages, where SQLite's FTS5 scores every matching row and took tens of milliseconds.

SQLite stays the truth. Each ingest applies its changes here after writing them there, commits, and
records the store generation it has caught up with; a writer that finds the recorded generation
behind the store's (a crash between the two commits) compares passage ids and applies the
difference. Readers filter keyword hits through their own SQLite snapshot, so a keyword index that
is briefly ahead or behind can cost a candidate, never show a passage from another state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import Stemmer
import tantivy

from embeddings.store import chunk_ids, passage_texts

log = logging.getLogger(__name__)

FOLDER = "keyword"
_GENERATION = "generation"

# The index's analyzer is tantivy's en_stem (words of letters and digits, at most 40 bytes, lower
# case, Snowball English stems) with accents folded, so "Hervé", "Herve" and "HERVE" are one term:
# people type names without the accents the articles give them. Python's side runs the same analyzer
# without the stemmer, then PyStemmer's Snowball English, so terms stemmed here can be looked up in
# the index.
_TOKENIZER = "en_fold"
_STEMMER = Stemmer.Stemmer("english")


def _analyzer(*, stem: bool) -> tantivy.TextAnalyzer:
    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
    )
    return (builder.filter(tantivy.Filter.stemmer("english")) if stem else builder).build()


_FOLDED = _analyzer(stem=False)
LETTERS = re.compile(r"[^\W\d_]+")  # a run of letters, accented ones too

# Words nearly every question has and passages rarely repeat: they say nothing about which passage
# or sentence answers, and would make a short question look only half covered.
_WH_WORDS = {"who", "whom", "whose", "what", "when", "where", "which", "why", "how"}
QUESTION_WORDS = frozenset(_WH_WORDS | {"did", "does", "do", "many", "much"})


# Lucene's English stop words, as bm25s.tokenize used them here (importing bm25s for it cost a fresh
# process 45 ms before its first answer).
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "  # noqa: SIM905
    "they this to was will with".split()
)


def words(text: str) -> list[str]:
    """The text's words of two characters or more, as the index reads them (lower case, accents
    folded) but unstemmed, without stop words, in order."""
    return [w for w in _FOLDED.analyze(text) if len(w) > 1 and w not in STOP_WORDS]


def fold(word: str) -> str:
    """One word as the index reads it, unstemmed: "Hervé" -> "herve"."""
    return "".join(_FOLDED.analyze(word))


def name_key(word: str) -> str:
    """A name as it is compared with the names elsewhere: lower case, accents folded, without the
    dots and quotes around it or a possessive ("Hervé's" -> "herve")."""
    word = word.lower().strip(".,'’").removesuffix("'s").removesuffix("’s")
    return word if word.isascii() else LETTERS.sub(lambda m: fold(m.group()), word)


def stems(words: Sequence[str]) -> list[str]:
    """Each word's stem, as the index and :func:`tokenize` stem it."""
    return _STEMMER.stemWords(list(words))


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Stemmed words without stop words, for comparing a question's wording with sentences'."""
    return [stems(words(text)) for text in texts]


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("id", stored=False, indexed=True, fast=True)
    # The analyzer above; the text itself lives in SQLite and is not stored twice. BM25 needs
    # term frequencies but no positions (no phrase queries), which makes indexing cheaper.
    builder.add_text_field("text", stored=False, tokenizer_name=_TOKENIZER, index_option="freq")
    return builder.build()


def _index(path: str | None = None) -> tantivy.Index:
    """The index at ``path`` (in memory when None), with this module's analyzer. Raises ValueError for
    an index of another schema (an older newsbot's, which stemmed without folding accents)."""
    index = tantivy.Index(_schema(), path=path, reuse=True)
    index.register_tokenizer(_TOKENIZER, _analyzer(stem=True))
    return index


# tantivy's own files a reader never needs; every other file of the folder is part of the index.
_LOCKS = (".tantivy-meta.lock", ".tantivy-writer.lock")
_META = ("meta.json", ".managed.json")


def _readonly_view(folder: Path) -> tempfile.TemporaryDirectory[str]:
    """The index as a folder this process may write to: tantivy's reader takes a lock file, which a
    store folder this user cannot write does not allow. Segment files never change once written, so
    links to them do; the two small files that do change are copied."""
    view = tempfile.TemporaryDirectory(prefix="newsbot-keyword-")
    for path in folder.iterdir():
        if path.name in _LOCKS:
            continue
        if path.name in _META:
            shutil.copyfile(path, Path(view.name) / path.name)
        else:
            os.symlink(path, Path(view.name) / path.name)
    return view


def _open(root: Path, *, repair: bool = False) -> tantivy.Index | None:
    """The store's keyword index, created when missing. One built with another schema (an older
    newsbot) is None for a reader, and is thrown away for a writer, which then rebuilds it."""
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return _index(str(folder))
    except ValueError as err:
        if not repair:
            log.warning(
                "keyword index %s cannot be read (%s); answering from the vectors until it is rebuilt "
                "from the store",
                folder,
                err,
            )
            return None
        # Built by another newsbot (another schema), or damaged.
        log.warning("keyword index %s cannot be used (%s); rebuilding it from the store", folder, err)
    shutil.rmtree(folder)
    folder.mkdir()
    return _index(str(folder))


def _open_reader(root: Path) -> tuple[tantivy.Index | None, tempfile.TemporaryDirectory[str] | None]:
    """A reader's index, and the view folder it was opened from when the store is not writable here."""
    folder = Path(root) / FOLDER
    if (os.access(Path(root), os.W_OK) and os.access(folder, os.W_OK)) or not folder.is_dir():
        try:
            return _open(root), None
        except (OSError, ValueError) as err:
            if folder.is_dir():
                raise
            log.warning("keyword index %s is missing and cannot be created (%s): vectors only", folder, err)
            return None, None
    try:
        view = _readonly_view(folder)
        return _index(view.name), view
    except (OSError, ValueError) as err:
        log.warning(
            "keyword index %s cannot be read by this user (%s): answering from the vectors alone; "
            "fix the files' permissions, or re-ingest as the store's owner",
            folder,
            err,
        )
        return None, None


def question_words(question: str) -> list[str]:
    """The question's content words, lower-cased, unstemmed, each once."""
    return [w for w in dict.fromkeys(words(question)) if w not in QUESTION_WORDS]


def question_terms(question: str) -> set[str]:
    """The question's content words, stemmed like :func:`tokenize` and the index stem them."""
    return set(stems(question_words(question)))


def query_text(question: str) -> str:
    """The question's content words, space-separated: tantivy's parser ORs them."""
    # words() keeps runs of word characters, lower-cased, so no query syntax (AND, OR, quotes,
    # field:value) can reach the parser.
    return " ".join(question_words(question))


def read_generation(root: Path) -> int | None:
    """The store generation the keyword index last caught up with; None when it never did."""
    with contextlib.suppress(OSError, ValueError):
        return int((Path(root) / FOLDER / _GENERATION).read_text())
    return None


class KeywordSearcher:
    """A point-in-time view of the keyword index."""

    def __init__(self, root: Path) -> None:
        # Read before the index, so a commit landing in between makes this view look older, not newer.
        self.generation = read_generation(root)
        index, self._view = _open_reader(root)
        if index is None:  # unreadable: answer from the vectors alone until an ingest rebuilds it
            index, self.generation = _index(), None
        index.reload()
        self._index = index
        self._searcher = index.searcher()

    @property
    def size(self) -> int:
        return int(self._searcher.num_docs)

    def search(self, question: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """BM25 scores and passage ids, best first."""
        text = query_text(question)
        if not text or k <= 0 or not self._searcher.num_docs:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        query = self._index.parse_query(text, ["text"])
        hits = self._searcher.search(query, k, count=False).hits
        ids = self._searcher.fast_field_values("id", [address for _, address in hits])
        return np.array([s for s, _ in hits], dtype=np.float32), np.array(ids, dtype=np.int64)

    def passages_holding(self, words: Sequence[str]) -> list[int]:
        """For each (unstemmed) word, how many passages hold it, stemmed as the index stems it."""
        return [self._searcher.doc_freq("text", stem) for stem in stems(words)]

    def best_with(self, word: str, others: Sequence[str]) -> float:
        """The best BM25 score of a passage holding ``word`` and one of ``others`` at least (any
        passage holding ``word`` when there are no others); 0.0 when none does. Words as
        :func:`words` gives them, so no query syntax reaches the parser."""
        text = f"+{word} +({' '.join(others)})" if others else f"+{word}"
        hits = self._searcher.search(self._index.parse_query(text, ["text"]), 1, count=False).hits
        return float(hits[0][0]) if hits else 0.0

    def idf(self, terms: Iterable[str]) -> dict[str, float]:
        """How rare each stemmed term is among the passages; a term none holds is the rarest."""
        n = max(self.size, 1)
        return {t: float(np.log(1 + n / (self._searcher.doc_freq("text", t) + 1))) for t in terms}

    def ids(self) -> set[int]:
        """Every passage id in the index (for catching up after a crash, and for checks)."""
        total = int(self._searcher.num_docs)
        if not total:
            return set()
        hits = self._searcher.search(tantivy.Query.all_query(), total, count=False).hits
        values = self._searcher.fast_field_values("id", [address for _, address in hits])
        return {int(v) for v in values if v is not None}


class KeywordWriter:
    """Applies the store's changes to the keyword index; one at a time, under the store's writer lock."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        index = _open(self.root, repair=True)
        assert index is not None, "a writer repairs what it cannot open"
        self._index = index
        self._writer = index.writer(heap_size=64_000_000, num_threads=1)
        self._dirty = False

    def generation(self) -> int | None:
        return read_generation(self.root)

    def apply(self, added: Iterable[tuple[int, str]], removed: Iterable[int]) -> None:
        for chunk_id in removed:
            self._writer.delete_documents_by_term("id", chunk_id)
            self._dirty = True
        # Added ids are new to the index: ids are content hashes of passages SQLite did not hold, and
        # catch_up (run before a writer's first change) leaves nothing half-applied from a crash.
        for chunk_id, text in added:
            self._writer.add_document(tantivy.Document(id=chunk_id, text=text))
            self._dirty = True

    def commit(self, generation: int) -> None:
        """Publish the changes, then record that the index now matches ``generation``."""
        if self._dirty:
            self._writer.commit()
            self._dirty = False
            self._share_meta()
        if self.generation() != generation:
            path = self.root / FOLDER / _GENERATION
            tmp = path.with_suffix(".tmp")
            tmp.write_text(str(generation))
            os.replace(tmp, path)

    def _share_meta(self) -> None:
        """tantivy writes its meta files readable by their owner only; give them the database file's
        mode, so whoever may read the store (a bot running as another user) may read its index too."""
        mode = (self.root / "newsbot.sqlite").stat().st_mode & 0o666
        for name in _META:
            with contextlib.suppress(OSError):
                os.chmod(self.root / FOLDER / name, mode)

    def catch_up(self, db: sqlite3.Connection, generation: int) -> None:
        """Bring an index left behind (or ahead) by a crash back in step with the store's passages."""
        if self.generation() == generation:
            return
        self._writer.commit()  # nothing pending of ours; makes everything committed visible
        indexed, stored = KeywordSearcher(self.root).ids(), chunk_ids(db)
        missing, extra = stored - indexed, indexed - stored
        if missing or extra:
            log.info("keyword index: adding %d and removing %d passages", len(missing), len(extra))
        self.apply(passage_texts(db, sorted(missing)), sorted(extra))
        self.commit(generation)

    def close(self) -> None:
        self._writer.wait_merging_threads()
