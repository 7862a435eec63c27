"""Discord's markup in a member's message, taken out so that what is asked is plain text.

Mentions ("<@123>", "<@&456>", "<#789>"), custom emoji ("<:thinking:123>"), timestamps and command
mentions are ids, not words: read as words they pull the keyword search and the question's vector
away from the articles, and "**who** opposed the ABM amendment? <:thinking:1234>" was refused.
Markdown's markers (bold, italics, underline, strike-through, spoilers, code, quotes, headings) go
and their text stays; a masked link keeps its text. discord.utils.remove_markdown does most of
this, but it drops a masked link's text and joins snake_case words.
"""

from __future__ import annotations

import re

_IDS = re.compile(r"<(?:@[!&]?\d+|#\d+|a?:\w+:\d+|t:-?\d+(?::[tTdDfFR])?|/[\w -]+:\d+)>")
_MASKED_LINK = re.compile(r"\[([^\]]*)\]\(<?https?://[^)\s]+>?\)")
_LINE_START = re.compile(r"^[ \t]*(?:>>>|>|-#|#{1,3})[ \t]+", re.MULTILINE)
# An underscore inside a word ("snake_case", a URL's path) is not markup.
_MARKERS = re.compile(r"\*+|~~|\|\||`+|(?<!\w)_+|_+(?!\w)")


def plain_text(content: str) -> str:
    """The message's words without Discord's markup, on one line."""
    text = _IDS.sub(" ", content)
    text = _MASKED_LINK.sub(r"\1", text)
    text = _LINE_START.sub("", text)
    return " ".join(_MARKERS.sub("", text).split())
