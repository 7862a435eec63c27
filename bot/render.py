"""Turn an Answer into text people read: quotes trimmed at sentence or word boundaries, never mid-word."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from embeddings.records import Answer, Article, Citation

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


# -- Discord ---------------------------------------------------------------------------------
# Discord's limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
CONTENT_LIMIT = 2000
DESCRIPTION_LIMIT = 4096
TITLE_LIMIT = 256
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FIELD_COUNT_LIMIT = 25
EMBED_TOTAL_LIMIT = 6000
FOOTER_LIMIT = 2048

ANSWER_COLOUR = 0x2B6CB0
NOT_FOUND_COLOUR = 0x718096


def escape(text: str) -> str:
    """Article text shown as plain text: markdown and mention syntax are neutralised.

    allowed_mentions=none already stops pings; escaping also keeps "@everyone" and "<@123>" from
    rendering as mentions, and stray ``*`` or ``_`` from breaking the bold around the answer.
    """
    import discord

    return discord.utils.escape_mentions(discord.utils.escape_markdown(" ".join(text.split())))


def citation_field(citation: Citation, limit: int = FIELD_VALUE_LIMIT) -> tuple[str, str]:
    """One embed field: the numbered title, then who and when, then the quote, answer in bold."""
    article = citation.article
    name = trim_words(f"[{citation.n}] {article.title}", FIELD_NAME_LIMIT)
    meta = " · ".join(escape(p) for p in (article.author, article.published) if p)
    if article.link:
        # Angle brackets keep Discord from unfurling a preview of every cited page.
        meta = f"{meta} · [source](<{article.link}>)" if meta else f"[source](<{article.link}>)"
    head = f"{meta}\n" if meta else ""
    # Escaping can lengthen the text; shrink the quote until the whole field fits.
    budget = max(limit - len(head) - 10, 40)
    while True:
        before, sentence, after = quote(citation, budget)
        parts = [escape(before), f"**{escape(sentence)}**" if sentence else "", escape(after)]
        body = "> " + " ".join(p for p in parts if p)
        if len(head) + len(body) <= limit or budget <= 40:
            break
        budget = int(budget * 0.8)
    return name, (head + body)[:limit]


def passages_text(citations: Sequence[Citation], limit: int = DESCRIPTION_LIMIT) -> str:
    """The full cited passages, for the asker's "Show passages" view, within one embed description."""
    each = max(limit // max(len(citations), 1) - 120, 100)
    blocks = []
    for citation in citations:
        head = f"**[{citation.n}] {escape(trim_words(citation.article.title, 200))}**"
        blocks.append(f"{head}\n{escape(trim_words(citation.passage, each))}")
    return "\n\n".join(blocks)[:limit] or "No passages."


def embed_length(embed: dict[str, Any]) -> int:
    total = len(embed.get("title", "")) + len(embed.get("description", ""))
    total += len(embed.get("footer", {}).get("text", ""))
    total += sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))
    return total


def corrections_line(answer: Answer) -> str:
    """Which words of the question were read otherwise, so the asker can tell a wrong guess."""
    read = ", ".join(f"\u201c{typed}\u201d as \u201c{as_read}\u201d" for typed, as_read in answer.corrections)
    return f"Read {read}." if read else ""


def answer_embed(answer: Answer, max_citations: int = 3) -> dict[str, Any]:
    """The reply as an embed dict within every Discord limit, whatever the article text holds."""
    if answer.answered:
        description = f"{answer_text(answer)} [1]"
        footer = "Answer quoted from the articles; [n] are the cited passages."
    else:
        description = "The articles do not say. " + ("The closest passages:" if answer.citations else "")
        footer = "No passage answers this well enough to quote."
    note = f"*{escape(corrections_line(answer))}*\n" if answer.corrections else ""
    embed: dict[str, Any] = {
        "type": "rich",
        "description": note + trim_words(description, DESCRIPTION_LIMIT - 10 - len(note)),
        "color": ANSWER_COLOUR if answer.answered else NOT_FOUND_COLOUR,
        "footer": {"text": footer},
        "fields": [],
    }
    citations = answer.citations[: min(max_citations, FIELD_COUNT_LIMIT)]
    share = min(
        FIELD_VALUE_LIMIT, (EMBED_TOTAL_LIMIT - embed_length(embed) - 50) // max(len(citations), 1) - 260
    )
    for citation in citations:
        name, value = citation_field(citation, max(share, 200))
        embed["fields"].append({"name": name, "value": value, "inline": False})
    while embed["fields"] and embed_length(embed) > EMBED_TOTAL_LIMIT:
        embed["fields"].pop()
    return embed


def answer_text(answer: Answer) -> str:
    """The quote, escaped, with the words that answer in bold when the reader marked them."""
    if answer.words is None:
        return escape(answer.text)
    a, b = answer.words
    return (
        f"{_escape_between(answer.text[:a])}**{escape(answer.text[a:b])}**{_escape_between(answer.text[b:])}"
    )


def _escape_between(text: str) -> str:
    """``escape`` for text beside the bold words, keeping the one space that parted them, if any
    ("**76**%", "rose **76%** to")."""
    inner = escape(text)
    if not inner:
        return " " if text else ""
    return (" " if text[0].isspace() else "") + inner + (" " if text[-1].isspace() else "")


def question_line(question: str, limit: int = 300) -> str:
    """The question echoed as message content, so a reply reads on its own in a busy channel."""
    return trim_words(f"**Q:** {escape(question)}", limit)


def embed_as_text(content: str | None, embed: dict[str, Any], limit: int = CONTENT_LIMIT) -> str:
    """An answer embed as plain message content within ``limit`` characters, for a server that
    refuses the embed: the question line, the answer, then as many citations as fit, whole."""
    head = [p for p in (content, embed.get("description", "")) if p]
    fields = [f"**{f['name']}**\n{f['value']}" for f in embed.get("fields", [])]
    while True:
        text = "\n\n".join(["\n".join(head), *fields])
        if len(text) <= limit or not fields:
            break
        fields.pop()
    return text if len(text) <= limit else trim_words(text, limit)
