"""Follow-up questions: a question answered in the context of the conversation's last few turns.

"When was it signed?" names nothing a search can find. Each question is resolved against the turn
before it. A question naming something the conversation has not met (a name absent from the earlier
question, answer and cited articles) is a new subject and starts afresh, so it is never dragged back
to the old one; so is a long question that points back at nothing. Any other question, one that
points back ("it", "his", "the company", "And ...") or is too short to stand alone, is a follow-up:
the earlier turn's topic (its names and key words) is added to what is searched, the passages of
the articles just cited are preferred, and the answer sentence is picked by the follow-up's own
words. Turns live in memory only, a few per conversation, and a conversation left alone for ``ttl``
seconds is forgotten (see :class:`Conversations`). docs/quality.md has the measurements.

The Discord bot (a reply chain or a thread is one conversation) and ``newsbot chat`` (one
conversation per run) share this module; nothing here knows about Discord.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace

from embeddings.answer import AnswerOptions, answer
from embeddings.keyword import name_key, question_words
from embeddings.reader import Reader
from embeddings.records import Answer, Hit
from embeddings.retrieval import Searcher, SearchOptions
from embeddings.wording import FOLLOW_UP_LEADS

# Words that point back at something said before.
_REFERS = re.compile(
    r"\b(it|its|it's|he|him|his|she|her|hers|they|them|their|theirs|there|then|"
    r"the same|also|too|else|another|those|these|"
    r"(the|that|this)( [\w'’-]+)? (company|firm|group|club|team|side|band|bank|country|city|film|movie|"
    r"show|series|book|label|party|minister|man|woman|player|singer|star|actor|director|boss|chief|deal|"
    r"plan|bill|report|contest|competition|tournament|match|game|ruling|scheme|project|trial|tool|format|"
    r"device|musical|award|awards|prize|institute|investigation|probe|story|case|sale|concert|gig|"
    r"event|exchange|network|operator|airline|paper|papers|station|channel|programme|website|site|"
    r"service|product|album|song|record|index|economy|market|court|government|president|executive|"
    r"researcher|organisation|body|union|league|race|season|author|bloc|meeting|cheese|idea|condition|"
    r"contract|decision|mergers|row|poll|plans|rules|law|squad|coach|accounts|account|office|"
    r"agency|scandal|stake|offer|bid|launch|release|visit|speech|book|campaign|study|survey)('s|’s|')?)\b"
    rf"|^({FOLLOW_UP_LEADS}|what about|how about)\b",
    re.IGNORECASE,
)
# A word that opens a question is capitalised anyway; these never name anything.
_NOT_NAMES = frozenset(
    (  # noqa: SIM905 (a word list reads better as words)
        "i a an the and or but so what which who whom whose when where why how is are was were do does "
        "did has have had will would can could should may might in on at of for to by with from about "
        "after before since during mr mrs ms dr sir"
    ).split()
)
_NAME = re.compile(r"[A-Z][\w'’&.-]*[\w]|[A-Z]")
_TOKEN = re.compile(r"[\w'’&.-]+")


def names_in(text: str) -> list[str]:
    """Capitalised words and acronyms, the question's opening word only when a name follows it."""
    words = _TOKEN.findall(text)
    found = []
    for i, word in enumerate(words):
        if not _NAME.fullmatch(word) or word.lower().strip(".") in _NOT_NAMES:
            continue
        if i == 0 and not (len(words) > 1 and words[1][:1].isupper()):
            continue
        found.append(word.rstrip(".").removesuffix("'s").removesuffix("’s"))
    return list(dict.fromkeys(found))


def words_in(text: str) -> frozenset[str]:
    """The text's words, lower-cased, without possessive 's: what names are looked up in."""
    return frozenset(name_key(w) for w in _TOKEN.findall(text))


def refers_back(question: str) -> bool:
    """Whether the question points at something said before ("it", "his", "the company", "And ...")."""
    return bool(_REFERS.search(question))


@dataclass(frozen=True)
class Turn:
    """One question and its answer, and what the conversation was about at that point."""

    question: str
    answer: Answer
    topic: tuple[str, ...]  # names first, then key words: what a follow-up carries into its search
    articles: tuple[str, ...]  # the articles the answer cited, best first
    known: frozenset[str]  # the words (folded) of its question, answer and cited articles


@dataclass(frozen=True)
class Resolved:
    """A question as it is searched: its own words plus, for a follow-up, the earlier turn's topic."""

    question: str
    query: str
    follow_up: bool = False
    prefer: tuple[str, ...] = ()
    topic: tuple[str, ...] = ()

    @classmethod
    def alone(cls, question: str) -> Resolved:
        return cls(question, question, topic=_topic(question, ()))


def _topic(question: str, carried: Sequence[str], limit: int = 14) -> tuple[str, ...]:
    names = names_in(question)
    words = [w for w in question_words(question) if w not in {n.lower() for n in names}]
    merged: list[str] = []
    seen: set[str] = set()
    for word in (*names, *carried, *words):
        if word.lower() not in seen:
            seen.add(word.lower())
            merged.append(word)
    return tuple(merged[:limit])


def resolve(question: str, history: Sequence[Turn]) -> Resolved:
    """How to search for ``question`` after ``history`` (oldest first)."""
    if not history:
        return Resolved.alone(question)
    last = history[-1]
    # Two-letter names (US, UK, EU, AI) are everywhere: they mark no new subject.
    new = [n for n in names_in(question) if len(n) > 2 and name_key(n) not in last.known]
    if new:
        return Resolved.alone(question)  # a name the conversation has not met: a new subject
    if not refers_back(question) and len(question_words(question)) >= 6:
        return Resolved.alone(question)  # long enough to stand alone, and pointing at nothing
    asked = words_in(question)
    carried = [w for w in last.topic if name_key(w) not in asked]
    query = f"{question} {' '.join(carried)}".strip()
    return Resolved(
        question, query, follow_up=True, prefer=last.articles[:2], topic=_topic(question, carried)
    )


def respond(
    searcher: Searcher,
    resolved: Resolved,
    search: SearchOptions,
    options: AnswerOptions,
    *,
    top_k: int,
    guild: int | None = None,
    reader: Reader | None = None,
) -> tuple[Answer, list[Hit]]:
    """Search and answer a resolved question; the hits too (``search.k`` of them), for measuring.
    With a ``reader``, it helps choose the sentence and judges whether the articles answer."""
    query = searcher.embed_query(resolved.query)
    hits = searcher.search(resolved.query, search, query, prefer=resolved.prefer, guild=guild)[: search.k]
    leading = hits[:top_k]
    if not resolved.follow_up:
        result = answer(resolved.query, query, leading, searcher.idf(resolved.query), options, reader)
        return replace(result, question=resolved.question), hits
    # The sentence is picked by the follow-up's own words: the carried topic would favour sentences
    # about the topic over the one answering (measured: 0.38 of answer sentences vs 0.73). Whether
    # the articles answer at all is judged by the features on the whole resolved question, which a
    # short follow-up alone covers too thinly, and by the reader on the follow-up's own words: the
    # resolved question is a string of carried keywords, unlike any question it was trained on.
    own = searcher.embed_query(resolved.question)
    judged = answer(resolved.query, query, leading, searcher.idf(resolved.query), options)
    choose = replace(options, candidates=options.follow_up_passages)
    result = answer(
        resolved.question,
        own,
        leading,
        searcher.idf(resolved.question),
        choose,
        reader,
        judged=judged.confidence,
    )
    return replace(result, question=resolved.question), hits


def make_turn(resolved: Resolved, result: Answer) -> Turn:
    articles = tuple(dict.fromkeys(c.article.id for c in result.citations))
    cited = {c.article.id: c.article for c in result.citations}
    parts = [resolved.query, result.text if result.answered else ""]
    parts += [f"{a.title} {a.text}" for a in list(cited.values())[:2]]
    topic = resolved.topic
    if result.answered:
        topic = tuple(dict.fromkeys((*topic, *names_in(result.text))))[:16]
    return Turn(resolved.question, result, topic, articles, words_in(" ".join(parts)))


class Conversation:
    """The last ``max_turns`` turns of one conversation, oldest first."""

    def __init__(self, max_turns: int = 4) -> None:
        self.turns: deque[Turn] = deque(maxlen=max_turns)
        self.touched = time.monotonic()

    def resolve(self, question: str) -> Resolved:
        return resolve(question, list(self.turns))

    def add(self, resolved: Resolved, result: Answer) -> None:
        self.turns.append(make_turn(resolved, result))
        self.touched = time.monotonic()


class Conversations:
    """Conversations by key (a Discord thread or reply chain), forgotten ``ttl`` seconds after their
    last turn, and the least recently used ones first when more than ``limit`` are open."""

    def __init__(self, *, ttl: float = 1800.0, limit: int = 1000, max_turns: int = 4) -> None:
        self.ttl = ttl
        self.limit = limit
        self.max_turns = max_turns
        self._open: OrderedDict[Hashable, Conversation] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Conversation | None:
        with self._lock:
            self._expire()
            conversation = self._open.get(key)
            if conversation is not None:
                self._open.move_to_end(key)
            return conversation

    def start(self, key: Hashable) -> Conversation:
        """A new conversation under ``key`` (replacing any earlier one)."""
        with self._lock:
            self._expire()
            conversation = Conversation(self.max_turns)
            self._open[key] = conversation
            while len(self._open) > self.limit:
                self._open.popitem(last=False)
            return conversation

    def link(self, key: Hashable, conversation: Conversation) -> None:
        """File an existing conversation under another key too (the bot's reply continues it)."""
        with self._lock:
            self._open[key] = conversation
            self._open.move_to_end(key)
            while len(self._open) > self.limit:
                self._open.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len({id(c) for c in self._open.values()})

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.ttl
        for key in [k for k, c in self._open.items() if c.touched < cutoff]:
            del self._open[key]
