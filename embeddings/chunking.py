"""Split an article into passages of whole sentences, sized in the model's own word pieces.

all-MiniLM-L6-v2 reads at most 256 word pieces and silently drops the rest, so every passage is
measured with the model's tokenizer and built to fit together with the title it is embedded with.
Consecutive passages share their boundary sentence(s), so an answer that straddles a boundary is
still whole in one of them.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from livekit.blingfire import text_to_sentences_with_offsets
from tokenizers import Tokenizer

from embeddings import onnx_model
from embeddings.records import Article, Chunk

# [CLS] and [SEP] take two of the model's positions.
SPECIAL_TOKENS = 2
# Past this many word pieces a title is only a prefix in the embedded text; the passage is never cut.
MAX_TITLE_TOKENS = 48

_LINE = re.compile(r"[^\n]+")
_SENTENCE_END = re.compile(r"[.!?:;][\"”’')\]]*$")
# Wrapped prose lines are long; headings, bylines and sign-offs are short.
_WRAP_WIDTH = 50
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    tokens: int


@lru_cache(maxsize=4)
def load_tokenizer(tokenizer_file: Path) -> Tokenizer:
    """The encoder's tokenizer (``Encoder.tokenizer_file``), counting every word piece."""
    tokenizer: Tokenizer = onnx_model.load_tokenizer(tokenizer_file)
    return tokenizer


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentence offsets into ``text``: lines are paragraphs, blingfire splits within each.

    Hard-wrapped prose (a plain-text file cut at 72 columns) is read as the paragraph it is: the
    wraps become spaces in a copy of the same length, so offsets still point into ``text``."""
    spans: list[tuple[int, int]] = []
    for line in _LINE.finditer(_unwrap(text)):
        if not line.group().strip():
            continue
        _, offsets = text_to_sentences_with_offsets(line.group())
        spans.extend((line.start() + a, line.start() + b) for a, b in offsets if b > a)
    return spans


def _unwrap(text: str) -> str:
    """``text`` with each line break inside a paragraph that is only a wrap turned into a space.

    A break is a wrap when its line ends mid-sentence and either is long or the next line carries
    on in lower case."""
    lines = text.split("\n")
    joined = []
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        wrap = (
            line.strip() != ""
            and following.strip() != ""
            and not _SENTENCE_END.search(line.rstrip())
            and (len(line) >= _WRAP_WIDTH or following[:1].islower())
        )
        joined.append(line + (" " if wrap else "\n"))
    return "".join(joined)[: len(text)]


def _token_ends(tokenizer: Tokenizer, text: str) -> list[int]:
    """The end offset of each word piece of ``text``, in order."""
    return [end for _, end in tokenizer.encode(text, add_special_tokens=False).offsets]


def _count(ends: Sequence[int], start: int, end: int) -> int:
    return bisect_right(ends, end) - bisect_left(ends, start + 1)


def _split_long(ends: Sequence[int], text: str, start: int, end: int, budget: int) -> list[Span]:
    """Cut a sentence longer than the budget at word boundaries, so nothing is truncated."""
    pieces: list[Span] = []
    piece_start = piece_end = start
    for word in _WORD.finditer(text, start, end):
        if _count(ends, piece_start, word.end()) > budget and piece_end > piece_start:
            pieces.append(Span(piece_start, piece_end, _count(ends, piece_start, piece_end)))
            piece_start = word.start()
        piece_end = word.end()
    if piece_end > piece_start:
        pieces.append(Span(piece_start, piece_end, _count(ends, piece_start, piece_end)))
    return pieces


def sentence_units(tokenizer: Tokenizer, text: str, budget: int) -> list[Span]:
    """Sentences with their token counts; any sentence over ``budget`` is split at words."""
    ends = _token_ends(tokenizer, text)
    units: list[Span] = []
    for start, end in sentence_spans(text):
        tokens = _count(ends, start, end)
        if tokens <= budget:
            units.append(Span(start, end, tokens))
        else:
            units.extend(_split_long(ends, text, start, end, budget))
    return units


def embed_title(tokenizer: Tokenizer, title: str) -> tuple[str, int]:
    """The title as it is embedded with each passage, and its word pieces."""
    encoding = tokenizer.encode(title, add_special_tokens=False)
    if len(encoding.ids) > MAX_TITLE_TOKENS:
        title = title[: encoding.offsets[MAX_TITLE_TOKENS - 1][1]]
        return title, MAX_TITLE_TOKENS
    return title, len(encoding.ids)


def chunk_id(article: Article, ordinal: int) -> int:
    """A FAISS id that is the same wherever and whenever this passage of this version is built."""
    key = f"{article.id}\0{article.content_hash}\0{ordinal}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


def chunk_article(
    article: Article,
    tokenizer: Tokenizer,
    *,
    max_tokens: int = 256,
    chunk_tokens: int = 200,
    overlap_sentences: int = 1,
) -> list[Chunk]:
    """Greedy windows of whole sentences under the token budget, overlapping by whole sentences."""
    _, title_tokens = embed_title(tokenizer, article.title)
    # The title and a separator share the model's window with the passage.
    budget = min(chunk_tokens, max_tokens - SPECIAL_TOKENS - title_tokens - 1)
    units = sentence_units(tokenizer, article.text, budget)
    windows: list[tuple[int, int]] = []  # [first, last) unit indexes
    first = 0
    while first < len(units):
        last, used = first, 0
        while last < len(units) and used + units[last].tokens <= budget:
            used += units[last].tokens
            last += 1
        windows.append((first, last))
        if last >= len(units):
            break
        # Step back by the overlap, but always move forward and keep the overlap under half a window.
        back = last
        while back > first + 1 and last - back < overlap_sentences:
            if sum(u.tokens for u in units[back - 1 : last]) > budget // 2:
                break
            back -= 1
        first = back
    return [
        Chunk(
            id=chunk_id(article, ordinal),
            article_id=article.id,
            ordinal=ordinal,
            start=units[a].start,
            end=units[b - 1].end,
            text=article.text[units[a].start : units[b - 1].end],
            sentences=tuple((u.start - units[a].start, u.end - units[a].start) for u in units[a:b]),
        )
        for ordinal, (a, b) in enumerate(windows)
    ]


def embedding_text(title: str, passage: str) -> str:
    """What the encoder reads for a passage: the (possibly shortened) title, then the passage."""
    return f"{title}. {passage}" if title else passage
