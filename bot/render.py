"""Turn an Answer into text people read: quotes trimmed at sentence or word boundaries, never mid-word."""

from __future__ import annotations

import re

from embeddings.records import Article, Citation

ELLIPSIS = "…"
_SENTENCE_END = re.compile(r"[.!?][\"'”’)]*\s")


def byline(article: Article) -> str:
    """'"Title", Author, Date' with whatever of those the article has."""
    parts = [f'"{article.title}"'] + [p for p in (article.author, article.published) if p]
    return ", ".join(parts)


def trim_words(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + ELLIPSIS


def quote(citation: Citation, limit: int = 300) -> tuple[str, str, str]:
    """The passage around the answer sentence, in three parts: before, the sentence, after.

    The sentence itself is kept whole when it fits; the context on either side is cut at sentence,
    else word, boundaries to fit ``limit`` characters in all.
    """
    passage = citation.passage
    start, end = citation.answer_start, citation.answer_end
    if end <= start:
        return "", trim_words(passage, limit), ""
    sentence = " ".join(passage[start:end].split())
    if len(sentence) >= limit:
        return "", trim_words(sentence, limit), ""
    room = limit - len(sentence)
    before = " ".join(passage[:start].split())
    after = " ".join(passage[end:].split())
    # Context after the answer reads better than context before it: give it two thirds.
    after_room = max(room * 2 // 3, room - len(before))
    after = _take_start(after, after_room)
    before = _take_end(before, room - len(after))
    return before, sentence, after


def _take_start(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text) if m.end() <= limit]
    if ends and ends[-1] > limit // 3:
        return text[: ends[-1]].rstrip() + " " + ELLIPSIS
    return trim_words(text, limit) if limit > 20 else ""


def _take_end(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    starts = [m.end() for m in _SENTENCE_END.finditer(text) if len(text) - m.end() <= limit]
    if starts:
        return ELLIPSIS + " " + text[starts[0] :]
    if limit <= 20:
        return ""
    tail = text[len(text) - limit + 2 :]
    space = tail.find(" ")
    return ELLIPSIS + " " + (tail[space + 1 :] if space >= 0 else tail)


def quote_text(citation: Citation, limit: int = 300) -> str:
    before, sentence, after = quote(citation, limit)
    return " ".join(p for p in (before, sentence, after) if p)
