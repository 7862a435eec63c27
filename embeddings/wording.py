"""A question as people put it in chat, reduced to the question itself.

"hey newsbot, can you tell me who opposed the ABM amendment" asks "Who opposed the ABM amendment?".
The greeting and the request around it name nothing the articles hold, yet they add words to the
keyword query and to the question's vector, and they hide the question word that says what kind of
answer is wanted ("who": a name). Wrapped that way, BBC dev questions got a quote holding the
answer for 0.842-0.865 of them instead of 0.878, and up to three times as many were refused
(docs/quality.md).

Only wrappings that a question word follows are taken off, so "Do you know if the deal was
signed?" and "Tell me about the ABM treaty" stay as typed. A leading "and", "so", "but" or "plus"
stays, as it marks a follow-up (conversation.py): "and can you tell me who signed it" asks "And
who signed it?".
"""

from __future__ import annotations

import re

# The conjunctions a follow-up opens with ("and who signed it?"): conversation.py reads them as one.
FOLLOW_UP_LEADS = r"and|so|but|plus"
# A question word, or one after a preposition ("by what percentage", "in which year").
_QUESTION_WORD = (
    r"(?=(?:(?:by|in|on|at|for|from|to|of|with|since|during|after|before|until|under|over)\s+)?"
    r"(?:who|whom|whose|what|when|where|which|why|how)\b)"
)
# Atomic groups, so that a long run of spaces or greetings that no question follows fails at once
# instead of trying every way to share it out (1,000 characters of "hey " took seconds).
_BREAK = r"(?>\s*[,:;!.-]*\s*)"
# "hey newsbot,", "hi all:", "hello!", "ok,"
_GREETING = rf"(?>(?:hey|hi|hello|yo|ok|okay|um+|uh+)\b(?:\s+\w+\s*[,:!]\s*|{_BREAK}))"
_REQUEST = (
    r"(?:(?:can|could|would|will)\s+(?:you|u|someone|anyone|anybody)\s+(?:please\s+)?"
    r"(?:tell|remind|show)\s+(?:me|us)"
    r"|(?:do|does)\s+(?:you|u|anyone|anybody|someone)\s+(?:happen\s+to\s+)?know"
    r"|(?:does\s+)?(?:anyone|anybody)\s+know"
    r"|(?:please\s+)?(?:tell|remind)\s+(?:me|us)"
    r"|i\s+(?:want|wanted|need|would\s+like|['’]d\s+like)\s+to\s+know"
    r"|i\s+(?:wonder|wondered|was\s+wondering|am\s+wondering|['’]m\s+wondering)"
    r"|(?:any|no)\s+idea"
    r"|quick\s+question)"
)
_WRAPPED = re.compile(
    rf"^\s*(?>{_GREETING}*)(?:(?P<lead>{FOLLOW_UP_LEADS})\b{_BREAK})?(?>{_GREETING}*)"
    rf"(?:please{_BREAK})?(?:{_REQUEST}{_BREAK})?(?:please{_BREAK})?{_QUESTION_WORD}",
    re.IGNORECASE,
)
_THANKS = ("thank you", "thanks", "please", "cheers", "thx", "pls")


def _without_ending(text: str) -> str:
    """The text without the thanks, "please" and closing marks after it. A full stop stays when its
    word holds another one: it ends an abbreviation ("the U.S.", "S.T.A.L.K.E.R.")."""
    while True:
        before = text
        text = text.rstrip().rstrip("?!")
        if text.endswith(".") and "." not in text.rsplit(None, 1)[-1][:-1]:
            text = text[:-1]
        lowered = text.lower()
        for word in _THANKS:
            if lowered.endswith(word) and not lowered[: -len(word)][-1:].isalnum():
                text = text[: -len(word)].rstrip().rstrip(",;.?!")
                break
        if text == before:
            return text


def plain_question(text: str) -> str:
    """The question from its question word on, without a greeting or request before it or thanks
    after it, capitalised and ending in "?"; text that holds no such question, as typed."""
    found = _WRAPPED.match(text)
    if found is None:
        return text
    rest = _without_ending(text[found.end() :])
    if found["lead"]:
        return f"{found['lead'].capitalize()} {rest}?"
    return rest[:1].upper() + rest[1:] + "?"
